"""Alembic, driven from code so ``cdp init`` and the tests need no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from cdp.db import Database, _short, safe_url
from cdp.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(db: Database | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if db is not None:
        config.attributes["database"] = db
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    try:
        command.upgrade(_config(db), revision)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"migrating {safe_url(db.url)} failed: {_short(exc)}") from None


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
