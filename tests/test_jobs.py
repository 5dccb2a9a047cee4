"""The serving process's background jobs: the audit sequencer seals what requests appended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.audit import AuditEvent, record_now
from cdp.config import Settings
from cdp.db.models import AuditCheckpoint, AuditEntry
from cdp.jobs import audit_tick, run_jobs, start_background_jobs
from cdp.platform import Platform


def sealed_entries(platform: Platform) -> int:
    with platform.db.read() as session:
        return session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.seq.is_not(None))
        ).scalar_one()


def test_a_tick_seals_pending_entries_and_signs_the_head(platform: Platform) -> None:
    for _ in range(3):
        record_now(platform.db, AuditEvent("sources.read"))

    audit_tick(platform)

    assert sealed_entries(platform) == 3
    with platform.db.read() as session:
        assert session.execute(select(AuditCheckpoint.seq)).scalars().all() == [3]


def _database_file_bytes(platform: Platform) -> int:
    """The SQLite database file alone: what a WAL checkpoint writes into (the log is a file beside it)."""
    database = platform.db.url.database
    assert database is not None
    return Path(database).stat().st_size


def test_a_tick_checkpoints_the_sqlite_write_ahead_log(platform: Platform) -> None:
    """HTTP workers leave WAL checkpoints to the sequencer: after a tick the database file holds what the
    tick sealed, not only the log (a few entries are far below SQLite's own 1,000-page threshold)."""
    if not platform.db.is_sqlite:
        pytest.skip("PostgreSQL checkpoints by itself: there is no log file beside a database file")
    platform.db.checkpoint_wal()
    for n in range(200):
        record_now(platform.db, AuditEvent("sources.read", subjects=(f"subject-{n}",)))
    before = _database_file_bytes(platform)

    audit_tick(platform)

    assert sealed_entries(platform) == 200
    assert _database_file_bytes(platform) > before


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
        while sealed_entries(platform) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    assert sealed_entries(platform) == 1


def _scheduled_sweeps(platform: Platform) -> list[tuple[str, float | None]]:
    from cdp.db.models import SCHEDULER_JOBS

    with platform.db.read() as session:
        return [
            (row.id, row.next_run_time)
            for row in session.execute(select(SCHEDULER_JOBS.c.id, SCHEDULER_JOBS.c.next_run_time))
        ]


def test_the_retention_sweep_schedule_is_persisted_and_a_restart_keeps_its_next_run(
    platform: Platform,
) -> None:
    first = start_background_jobs(platform)
    first.shutdown(wait=True)
    stored = _scheduled_sweeps(platform)
    assert [job_id for job_id, _ in stored] == ["retention-sweep"]
    assert stored[0][1] is not None

    second = start_background_jobs(platform)  # a restart (or a second worker) finds it and leaves it be
    second.shutdown(wait=True)
    assert _scheduled_sweeps(platform) == stored


def _pretend_the_sweep_was_due(platform: Platform, seconds_ago: int) -> None:
    """Move the stored job's next run into the past through APScheduler itself (its pickled state holds
    the time too, so editing the column alone would not do)."""
    from datetime import UTC, datetime, timedelta

    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    store = SQLAlchemyJobStore(engine=platform.db.engine)
    store.start(BackgroundScheduler(timezone=UTC), "persistent")
    job = store.lookup_job("retention-sweep")
    assert job is not None
    job.next_run_time = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    store.update_job(job)


def test_a_sweep_missed_while_the_server_was_down_runs_once_when_it_comes_back(platform: Platform) -> None:
    from cdp.db.models import RetentionSweep

    start_background_jobs(platform).shutdown(wait=True)
    _pretend_the_sweep_was_due(platform, seconds_ago=3600)  # the server was down at the scheduled time
    scheduler = start_background_jobs(platform)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with platform.db.read() as session:
                done = session.execute(
                    select(func.count())
                    .select_from(RetentionSweep)
                    .where(RetentionSweep.status == "completed")
                ).scalar_one()
            if done:
                break
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    assert done == 1
    assert _scheduled_sweeps(platform)[0][1] > time.time()  # and the next run is in the future again


def test_a_changed_sweep_schedule_replaces_the_stored_one(platform: Platform) -> None:
    start_background_jobs(platform).shutdown(wait=True)
    before = _scheduled_sweeps(platform)
    platform.settings = replace(platform.settings, retention_sweep_cron="30 1 * * 0")
    start_background_jobs(platform).shutdown(wait=True)
    after = _scheduled_sweeps(platform)
    assert [j for j, _ in after] == ["retention-sweep"] and after != before


def test_jobs_refuse_to_start_when_the_audit_log_would_forget_before_the_data_goes(
    platform: Platform,
) -> None:
    import pytest

    from cdp.retention.policy import RetentionConfigError

    platform.settings = replace(platform.settings, audit_retention_days=3000)
    with pytest.raises(RetentionConfigError, match="longest data retention"):
        start_background_jobs(platform)


def test_housekeeping_carries_out_requests_left_in_progress(platform: Platform, tmp_path: object) -> None:
    from pathlib import Path

    from cdp.access.gate import Actor
    from cdp.dsr.service import DsrService
    from cdp.jobs import housekeeping_tick
    from tests.dsr.world import seed_world

    assert isinstance(tmp_path, Path)
    world = seed_world(platform, tmp_path)
    platform.settings = replace(platform.settings, dsr_erasure_requires_approval=False)
    record = world.customers.maria_crm_record
    request = DsrService.for_platform(platform).open_self_service(
        Actor(f"customer:{record}", "customer", None, record), "erasure"
    )
    assert request.status == "in_progress"  # the process that opened it died before carrying it out
    housekeeping_tick(platform)
    assert DsrService.for_platform(platform).get(request.id).status == "completed"


def test_the_analytics_tick_evaluates_due_segments_as_the_system(platform: Platform) -> None:
    from datetime import timedelta

    from cdp.analytics.service import AnalyticsService
    from cdp.db.models import AnalyticsSegment, AnalyticsSegmentSnapshot
    from cdp.db.types import utcnow
    from cdp.jobs import analytics_tick

    service = AnalyticsService.for_platform(platform)
    view = service.create_segment(
        {"name": "everyone", "schedule": "0 4 * * *", "match": {"not": {"department": "nowhere"}}},
        actor="user:analyst",
    )
    analytics_tick(platform)  # not due yet
    with platform.db.transaction() as session:
        assert session.execute(select(func.count()).select_from(AnalyticsSegmentSnapshot)).scalar_one() == 0
        row = session.get(AnalyticsSegment, view.id)
        assert row is not None
        row.next_run_at = utcnow() - timedelta(minutes=1)
    analytics_tick(platform)
    with platform.db.read() as session:
        snapshots = list(session.execute(select(AnalyticsSegmentSnapshot)).scalars())
        row = session.get(AnalyticsSegment, view.id)
        assert row is not None and row.next_run_at is not None and row.next_run_at > utcnow()
    assert [(s.trigger, s.actor) for s in snapshots] == [("schedule", "system:analytics")]
    runs = [e for e in _entries(platform) if e.action == "analytics.run"]
    assert [(e.actor, e.outcome) for e in runs] == [("system:analytics", "success")]


def _entries(platform: Platform) -> list[AuditEntry]:
    with platform.db.read() as session:
        return list(session.execute(select(AuditEntry).order_by(AuditEntry.recorded_at)).scalars())


def test_housekeeping_purges_ended_web_sessions(platform: Platform) -> None:
    from datetime import timedelta

    from cdp.access.websessions import PENDING_TTL, WebSessions
    from cdp.db.models import WebSession
    from cdp.db.types import utcnow
    from cdp.jobs import housekeeping_tick

    with platform.db.transaction() as session:
        sessions = WebSessions(session, platform.vault)
        sessions.start("privacy", {}, now=utcnow() - PENDING_TTL - timedelta(seconds=1))
        sessions.start("privacy", {})
    housekeeping_tick(platform)
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(WebSession)).scalar_one() == 1


def test_run_jobs_seals_until_stopped(platform: Platform) -> None:
    platform.settings = replace(platform.settings, audit_seal_interval_ms=50)
    stop = threading.Event()
    runner = threading.Thread(target=run_jobs, args=(platform, stop), kwargs={"poll_seconds": 0.05})
    runner.start()
    try:
        record_now(platform.db, AuditEvent("sources.read"))
        deadline = time.monotonic() + 10
        while sealed_entries(platform) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sealed_entries(platform) == 1
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()


def test_run_jobs_stops_when_its_parent_is_gone(platform: Platform) -> None:
    """Started by `cdp serve` with its pid: a supervisor killed outright leaves no orphan sequencer."""
    not_my_parent = os.getppid() + 1
    started = time.monotonic()
    run_jobs(platform, threading.Event(), parent_pid=not_my_parent, poll_seconds=0.05)
    assert time.monotonic() - started < 5


def test_the_jobs_command_seals_what_was_appended_and_stops_on_sigterm(tmp_path: Path) -> None:
    from tests.cli.test_cli import _env, cdp, ok

    ok(cdp(tmp_path, "init"))
    settings = Settings(data_dir=tmp_path / "var")
    opened = Platform.open(settings)
    try:
        record_now(opened.db, AuditEvent("sources.read"))
        assert sealed_entries(opened) == 0
        jobs = subprocess.Popen(
            [sys.executable, "-m", "cdp", "jobs"],
            cwd=tmp_path,
            env=_env(CDP_AUDIT_SEAL_INTERVAL_MS="100"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while sealed_entries(opened) < 1 and time.monotonic() < deadline and jobs.poll() is None:
                time.sleep(0.1)
            assert sealed_entries(opened) == 1
        finally:
            jobs.send_signal(signal.SIGTERM)
            _, stderr = jobs.communicate(timeout=30)
        assert jobs.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        opened.close()
