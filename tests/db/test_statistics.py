"""Planner statistics are refreshed by the loader once a hot table changed enough (PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from cdp.db import statistics
from cdp.db.models import Entity
from cdp.db.types import utcnow
from cdp.demo.generator import FILES, MAPPINGS_DIR, generate
from cdp.platform import Platform
from cdp.sources.ingest import IngestService


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


def test_an_ingest_leaves_no_table_it_grew_without_statistics(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every table a load grows is covered — records, blind index, entities, consent events and the
    contact history alike — not a hand-kept list (one missed the interactions and consent events)."""
    if platform.db.is_sqlite:
        return
    monkeypatch.setattr(statistics, "MIN_CHANGED", 1)
    generate(tmp_path, people=25, seed=7)
    service = IngestService(platform.db, platform.vault)
    for source in ("crm", "newsletter"):
        service.register_source((MAPPINGS_DIR / f"{source}.toml").read_text(encoding="utf-8"))
        service.ingest_file(source, tmp_path / FILES[source][0])
        service.ingest_file(source, tmp_path / FILES[source][1], kind="interactions")

    grown = ("source_record", "blind_index", "entity_member", "consent_event", "interaction")
    deadline = time.monotonic() + 10  # counters reach pg_stat within about a second
    never: list[str] = list(grown)
    while never and time.monotonic() < deadline:
        statistics.refresh_if_stale(platform.db)
        with platform.db.engine.connect() as connection:
            never = [
                str(name)
                for (name,) in connection.execute(
                    text(
                        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                        "AND relname = ANY(:grown) AND last_analyze IS NULL"
                    ),
                    {"grown": list(grown)},
                )
            ]
        time.sleep(0.2)
    assert never == []
