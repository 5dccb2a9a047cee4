"""The gunicorn entry point opens the platform from the configuration by itself."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select

from cdp.config import Settings
from cdp.db.models import AuditEntry
from cdp.platform import Platform


def _configured_only_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An initialized platform that ``api.wsgi`` finds through ``CDP_DATA_DIR`` alone."""
    data_dir = tmp_path / "cdp"
    initialized, _ = Platform.initialize(Settings(data_dir=data_dir))
    initialized.close()
    for name in ("CDP_CONFIG", "CDP_DATABASE_URL", "CDP_KEYRING", "CDP_KEYRING_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDP_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)  # no stray ./cdp.toml
    monkeypatch.delitem(sys.modules, "api.wsgi", raising=False)


def test_wsgi_app_opens_the_configured_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _configured_only_by_env(tmp_path, monkeypatch)

    wsgi = importlib.import_module("api.wsgi")
    try:
        response = wsgi.app.test_client().get("/readyz")
        assert response.status_code == 200
        assert wsgi.scheduler.get_job("audit-sequencer") is not None
        with wsgi.app.extensions["cdp"].db.read() as session:
            actions = session.execute(select(AuditEntry.action, AuditEntry.actor)).all()
        assert ("policy.activate", "system:startup") in [tuple(row) for row in actions]
    finally:
        wsgi.scheduler.shutdown(wait=True)
        wsgi.app.extensions["cdp"].close()
        sys.modules.pop("api.wsgi", None)


@contextmanager
def _worker_without_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[ModuleType]:
    """``api.wsgi`` as a worker of ``cdp serve`` imports it (jobs left to their own process), with
    ``env`` set first; closed and forgotten afterwards."""
    _configured_only_by_env(tmp_path, monkeypatch)
    monkeypatch.setenv("CDP_BACKGROUND_JOBS_IN_WORKERS", "false")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wsgi = importlib.import_module("api.wsgi")
    try:
        yield wsgi
    finally:
        wsgi.app.extensions["cdp"].close()
        sys.modules.pop("api.wsgi", None)


def test_wsgi_workers_leave_the_jobs_to_cdp_serve_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cdp serve` runs the jobs in a process of their own and tells its workers not to run them."""
    with _worker_without_jobs(tmp_path, monkeypatch) as wsgi:
        assert wsgi.app.test_client().get("/readyz").status_code == 200
        assert wsgi.scheduler is None


def _pragma(wsgi: ModuleType, name: str) -> int:
    with wsgi.app.extensions["cdp"].db.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


@pytest.mark.parametrize(("server_mmap", "expected_bytes"), [(None, 0), ("64", 64 * 1024 * 1024)])
def test_wsgi_workers_open_sqlite_with_the_server_memory_map_not_the_batch_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_mmap: str | None, expected_bytes: int
) -> None:
    """Workers that append an audit entry on every read reset each other's page caches; a memory map
    makes each reset an unmap and a round of page faults, so theirs is off unless configured."""
    env = {"CDP_SQLITE_MMAP_MIB": "512"}
    if server_mmap is not None:
        env["CDP_SQLITE_SERVER_MMAP_MIB"] = server_mmap
    with _worker_without_jobs(tmp_path, monkeypatch, **env) as wsgi:
        assert _pragma(wsgi, "mmap_size") == expected_bytes


def test_wsgi_workers_leave_wal_checkpoints_to_the_sequencer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker checkpoints only past its own high threshold; the jobs process checkpoints every tick."""
    with _worker_without_jobs(tmp_path, monkeypatch) as wsgi:
        assert _pragma(wsgi, "wal_autocheckpoint") == Settings().sqlite_server_wal_autocheckpoint == 16384
