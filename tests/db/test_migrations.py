"""Alembic migrations, on SQLite and on the real PostgreSQL server (the ``platform`` fixture runs both)."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, inspect, select

from cdp.db import Database
from cdp.db.migrate import _config, current_revision, head_revision, upgrade
from cdp.db.models import Base, Source
from cdp.platform import Platform

VAULT_TABLES = {"subject", "source", "source_record", "blind_index", "alembic_version"}


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def _schema_diff(db: Database, metadata: MetaData) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_there_is_exactly_one_head_revision() -> None:
    assert head_revision() is not None


def test_initialize_migrates_to_head(platform: Platform) -> None:
    assert current_revision(platform.db) == head_revision()


def test_migrated_database_has_every_vault_table_and_only_model_tables(platform: Platform) -> None:
    tables = _tables(platform.db)

    assert tables >= VAULT_TABLES
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrading_an_up_to_date_database_is_a_no_op(platform: Platform) -> None:
    with platform.db.transaction() as session:
        session.add(Source(name="crm", line_of_business="sales"))
    before = _tables(platform.db)

    upgrade(platform.db)
    upgrade(platform.db)

    assert current_revision(platform.db) == head_revision()
    assert _tables(platform.db) == before
    with platform.db.read() as session:
        assert session.scalars(select(Source.name)).all() == ["crm"]


def test_downgrade_to_base_then_upgrade_again_recreates_the_schema(platform: Platform) -> None:
    command.downgrade(_config(platform.db), "base")

    assert current_revision(platform.db) is None
    assert _tables(platform.db) & (VAULT_TABLES - {"alembic_version"}) == set()

    upgrade(platform.db)

    assert current_revision(platform.db) == head_revision()
    assert _tables(platform.db) >= VAULT_TABLES
    assert _schema_diff(platform.db, Base.metadata) == []


def test_models_match_the_migrated_schema_so_no_migration_is_missing(platform: Platform) -> None:
    diff = _schema_diff(platform.db, Base.metadata)

    assert diff == [], f"models and migrations disagree; write a migration: {diff}"


def test_schema_comparison_detects_a_model_change_without_migration(platform: Platform) -> None:
    # Guards the test above: a model column with no migration must show up as a difference.
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["source"].append_column(Column("region", String(16), nullable=True))

    diff = _schema_diff(platform.db, changed)

    assert any(op[0] == "add_column" and op[3].name == "region" for op in diff if isinstance(op, tuple))
