"""Shared fixtures. Storage tests take the ``backend`` fixture and so run on SQLite and PostgreSQL.

PostgreSQL is the real server named by ``CDP_TEST_POSTGRES_URL``. Each test gets its own schema (chosen
through the URL's ``search_path`` option), so parallel workers and parallel runs never collide. Without
the variable the PostgreSQL cases are skipped — unless ``CI`` is set, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import make_url

from cdp.config import Settings
from cdp.platform import Platform

PG_ENV = "CDP_TEST_POSTGRES_URL"


def postgres_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set but CI is: PostgreSQL tests must run in CI")
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL case skipped")
    return url


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A database URL whose connections live in a fresh, private schema, dropped afterwards."""
    base = postgres_base_url()
    schema = f"cdp_test_{uuid.uuid4().hex[:16]}"
    dsn = _libpq_dsn(base)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    data_dir = tmp_path / "cdp"
    if backend == "postgres":
        url = request.getfixturevalue("postgres_schema_url")
        return Settings(data_dir=data_dir, database_url=url)
    return Settings(data_dir=data_dir)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    opened, _ = Platform.initialize(settings)
    try:
        yield opened
    finally:
        opened.close()
