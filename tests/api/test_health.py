"""The index and the probes, with readiness checked against both database back ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

import cdp
from api import create_app
from cdp.config import Settings
from cdp.db import Database
from cdp.db.migrate import head_revision
from cdp.errors import DatabaseUnavailable
from cdp.platform import Platform
from cdp.vault.keyring import FileKeyring

PROBLEM_JSON = "application/problem+json"


def test_index_links_to_the_spec_the_probes_and_the_web_apps(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json == {
        "service": "cdp",
        "version": cdp.__version__,
        "links": {
            "openapi": "/openapi.json",
            "health": "/healthz",
            "ready": "/readyz",
            "privacy_center": "/privacy/",
            "department_view": "/staff/",
            "compliance_console": "/console/",
            "api_reference": "/docs/",
        },
    }
    for link in response.json["links"].values():
        assert client.get(link).status_code == 200


def test_healthz_answers_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_healthz_stays_ok_while_the_database_is_down(
    sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise DatabaseUnavailable("cannot connect")

    monkeypatch.setattr(sqlite_platform.db, "ping", down)
    response = create_app(platform=sqlite_platform).test_client().get("/healthz")
    assert response.status_code == 200


def test_readyz_is_ready_on_a_migrated_database(platform: Platform) -> None:
    response = create_app(platform=platform).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ready",
        "database": "ok",
        "schema": head_revision(),
        "keyring": "ok",
    }


def test_readyz_names_the_database_when_it_is_unreachable_without_revealing_its_url(
    sqlite_platform: Platform,
) -> None:
    unreachable = Database("postgresql+psycopg://nobody:hunter2@127.0.0.1:1/x")
    broken = Platform(sqlite_platform.settings, unreachable, sqlite_platform.vault)
    try:
        response = create_app(platform=broken).test_client().get("/readyz")
    finally:
        unreachable.dispose()
    assert response.status_code == 503
    assert response.mimetype == PROBLEM_JSON
    body = response.json
    assert body is not None
    assert body["type"] == "https://cdp.example/problems/not-ready"
    assert body["status"] == 503
    assert body["checks"] == {"database": "failed", "schema": "skipped", "keyring": "ok"}
    assert "database" in body["detail"]
    text = response.get_data(as_text=True)
    for secret in ("hunter2", "nobody", "127.0.0.1", "postgresql"):
        assert secret not in text


def test_readyz_names_the_schema_when_migrations_are_not_at_head(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "cdp")
    FileKeyring.create(settings.keyring_path)
    unmigrated = Platform.open(settings, require_migrated=False)
    try:
        response = create_app(platform=unmigrated).test_client().get("/readyz")
    finally:
        unmigrated.close()
    assert response.status_code == 503
    body = response.json
    assert body is not None
    assert body["checks"] == {"database": "ok", "schema": "failed", "keyring": "ok"}
    assert "schema" in body["detail"]
    assert str(settings.data_dir) not in response.get_data(as_text=True)


def test_readyz_names_the_keyring_when_the_key_file_disappears(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    keks = platform.vault.keks
    assert isinstance(keks, FileKeyring)
    monkeypatch.setattr(keks, "RELOAD_INTERVAL", 0.0)  # notice the change now, not within a second
    keks.path.unlink()
    response = create_app(platform=platform).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.json
    assert body is not None
    assert body["checks"] == {"database": "ok", "schema": "ok", "keyring": "failed"}
    assert str(keks.path) not in response.get_data(as_text=True)
