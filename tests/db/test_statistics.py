"""Planner statistics are refreshed by the loader once a hot table changed enough (PostgreSQL)."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import insert, text

from cdp.db import statistics
from cdp.db.models import Entity
from cdp.db.types import utcnow
from cdp.platform import Platform


def test_a_grown_table_is_analyzed_and_a_quiet_one_is_not(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    if platform.db.is_sqlite:
        assert statistics.refresh_if_stale(platform.db) == []  # SQLite's planner needs none
        return
    monkeypatch.setattr(statistics, "MIN_CHANGED", 20)
    assert statistics.refresh_if_stale(platform.db) == []
    with platform.db.transaction() as session:
        now = utcnow()
        rows = [{"id": uuid.uuid4(), "created_at": now, "updated_at": now} for _ in range(50)]
        session.execute(insert(Entity), rows)

    analyzed: list[str] = []
    deadline = time.monotonic() + 10  # the server publishes its change counters within about a second
    while not analyzed and time.monotonic() < deadline:
        analyzed = statistics.refresh_if_stale(platform.db)
        time.sleep(0.2)

    assert analyzed == ["entity"]
    with platform.db.engine.connect() as connection:
        last = connection.execute(
            text(
                "SELECT last_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = 'entity'"
            )
        ).scalar_one()
    assert last is not None
    assert statistics.refresh_if_stale(platform.db) == []
