"""Fixtures for the HTTP layer.

Behaviour that does not depend on storage (errors, headers, request ids, the spec) runs on one SQLite
platform; readiness takes the shared ``platform`` fixture and so runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from cdp.config import Settings
from cdp.platform import Platform


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Iterator[Platform]:
    opened, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def app(sqlite_platform: Platform) -> Flask:
    return create_app(platform=sqlite_platform)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
