"""The serving process's background jobs: the audit sequencer seals what requests appended."""

from __future__ import annotations

import time
from dataclasses import replace

from sqlalchemy import func, select

from cdp.audit import AuditEvent, record_now
from cdp.db.models import AuditCheckpoint, AuditEntry
from cdp.jobs import audit_tick, start_background_jobs
from cdp.platform import Platform


def _sealed(platform: Platform) -> int:
    with platform.db.read() as session:
        return session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.seq.is_not(None))
        ).scalar_one()


def test_a_tick_seals_pending_entries_and_signs_the_head(platform: Platform) -> None:
    for _ in range(3):
        record_now(platform.db, AuditEvent("sources.read"))

    audit_tick(platform)

    assert _sealed(platform) == 3
    with platform.db.read() as session:
        assert session.execute(select(AuditCheckpoint.seq)).scalars().all() == [3]


def test_a_tick_with_nothing_new_signs_no_second_checkpoint(platform: Platform) -> None:
    record_now(platform.db, AuditEvent("sources.read"))
    audit_tick(platform)
    audit_tick(platform)
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one() == 1


def test_the_scheduler_seals_entries_shortly_after_they_are_appended(platform: Platform) -> None:
    platform.settings = replace(platform.settings, audit_seal_interval_ms=50)
    scheduler = start_background_jobs(platform)
    try:
        record_now(platform.db, AuditEvent("sources.read"))
        deadline = time.monotonic() + 10
        while _sealed(platform) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    assert _sealed(platform) == 1
