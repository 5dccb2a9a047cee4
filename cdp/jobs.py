"""Background jobs of a serving process (APScheduler).

- **audit sequencer** (every ``audit_seal_interval_ms``): seals pending entries, signs checkpoints.
- **housekeeping** (every minute): carries out data-subject requests left in progress (after a crash or an
  approval given elsewhere), shreds export archives nobody downloaded in time, routes new complaints to
  department queues and escalates overdue work, prunes expired tokens, sign-in codes and web sessions.
- **segment schedules** (every ``analytics_check_seconds``): evaluates the saved segments whose own cron
  schedule is due and records their sizes (each due segment is claimed by one worker).
- **retention sweep** (``retention_sweep_cron``, UTC): in a *persistent* job store (the ``apscheduler_jobs``
  table), so its schedule survives restarts and a run missed while the server was down (within six hours)
  runs once when it comes back. Every worker schedules it; the sweep's own lease lets one run and the
  others stand down (:class:`~cdp.retention.sweep.SweepBusy`).

``cdp serve`` runs them in one process of their own (:func:`run_jobs`, the ``cdp jobs`` command) beside
the HTTP workers: the sequencer hashes in pure Python, and sharing a worker's interpreter with it made
every request thread of that worker wait for the GIL behind each batch (bench/http_reads on SQLite, same
day: 770 req/s and p99 66 ms with the jobs in every worker, 873 and 36 ms in a process of their own). A
bare ``gunicorn api.wsgi:app`` keeps the jobs in each worker (``background_jobs_in_workers``); the
sequencer serializes itself on the chain lock, so workers sealing at once take turns instead of forking
the chain. A job never raises: a failure is logged
(type only — entries and ids, never data) and retried on its next run.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import suppress
from datetime import UTC, timedelta

from apscheduler.jobstores.base import ConflictingIdError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from cdp.audit import AuditActor, AuditEvent, acting_as, record
from cdp.audit.service import AuditService
from cdp.config import Settings
from cdp.db.models import SCHEDULER_JOBS
from cdp.db.types import utcnow
from cdp.errors import ConfigurationError
from cdp.platform import Platform

logger = logging.getLogger(__name__)

RETENTION_JOB_ID = "retention-sweep"
COMPLAINT_LOOKBACK = timedelta(days=30)
"""How far back the complaint router looks: older complaints predate the queues and are not opened."""

_running: dict[str, Platform] = {}
"""The platform of this process, by name. The persistent job store keeps a reference to
:func:`retention_sweep_job` and its name argument — never settings or keys, which must not be pickled
into the database."""


def audit_tick(platform: Platform) -> None:
    """Seal what is pending, sign the head when a checkpoint is due, and checkpoint SQLite's write-ahead
    log (the HTTP workers leave that to this tick: see ``sqlite_server_wal_autocheckpoint``)."""
    service = AuditService(platform.db, platform.vault, platform.settings.issuer)
    interval = timedelta(seconds=platform.settings.audit_checkpoint_interval_seconds)
    try:
        with acting_as(AuditActor.system("sequencer")):
            service.seal()
            service.checkpoint(min_interval=interval)
        platform.db.checkpoint_wal()
    except Exception as exc:  # a background job must survive a database hiccup
        logger.warning("audit sequencer tick failed: %s", type(exc).__name__)


def housekeeping_tick(platform: Platform) -> None:
    """Each step runs on its own, so one failing does not stop the others."""
    for name, step in (
        ("dsr resume", _resume_requests),
        ("export expiry", _expire_exports),
        ("work routing", _route_work),
        ("token pruning", _prune_sign_ins),
    ):
        try:
            with acting_as(AuditActor.system("housekeeping")):
                step(platform)
        except Exception as exc:
            logger.warning("housekeeping step %s failed: %s", name, type(exc).__name__)


def _resume_requests(platform: Platform) -> None:
    from cdp.dsr.service import DsrService

    DsrService.for_platform(platform).resume()


def _expire_exports(platform: Platform) -> None:
    from cdp.dsr.archives import ArchiveStore

    with platform.db.transaction() as session:
        shredded = ArchiveStore(session, platform.vault).expire()
        if shredded:
            record(session, AuditEvent("dsr.export.expire", details={"archives": shredded}))


def _route_work(platform: Platform) -> None:
    from cdp.dsr.routing import RoutingRules, WorkQueue

    rules = RoutingRules.load()
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        queue.route_new_complaints(since=utcnow() - COMPLAINT_LOOKBACK)
        queue.escalate_overdue()


def _prune_sign_ins(platform: Platform) -> None:
    from cdp.access.customers import CustomerSignIn
    from cdp.access.tokens import TokenRegistry
    from cdp.access.websessions import WebSessions

    with platform.db.transaction() as session:
        TokenRegistry(session).prune()
        CustomerSignIn(session, platform.vault, platform.settings).prune()
        WebSessions(session, platform.vault).purge()


def analytics_tick(platform: Platform) -> None:
    from cdp.analytics.service import AnalyticsService

    try:
        with acting_as(AuditActor.system("analytics")):
            done = AnalyticsService.for_platform(platform).evaluate_due()
        if done:
            logger.info("evaluated %d scheduled segment(s)", len(done))
    except Exception as exc:
        logger.warning("scheduled segment evaluation failed: %s", type(exc).__name__)


def retention_sweep_job(name: str = "default") -> None:
    """The scheduled sweep: a module-level function, so the persistent store can name it."""
    from cdp.retention.policy import RetentionPolicy
    from cdp.retention.sweep import RetentionSweeper, SweepBusy

    platform = _running.get(name)
    if platform is None:
        logger.warning("retention sweep due, but no platform is running in this process")
        return
    try:
        with acting_as(AuditActor.system("retention")):
            policy = RetentionPolicy.load(platform.settings.retention_policy_file)
            report = RetentionSweeper(platform.db, platform.vault, policy).run()
        logger.info("retention sweep destroyed %d records", report.destroyed.records)
    except SweepBusy:
        logger.info("retention sweep skipped: another process is sweeping")
    except Exception as exc:
        logger.warning("retention sweep failed: %s", type(exc).__name__)


def check_jobs_can_start(settings: Settings) -> None:
    """Raise (a :class:`~cdp.errors.CdpError` naming the setting) if the jobs would refuse to start with
    these settings: ``cdp serve`` asks before it launches anything, so a bad configuration stops it with
    one clear error instead of a jobs process that dies and is restarted over and over."""
    from cdp.retention.policy import RetentionPolicy, check_audit_outlives_data

    check_audit_outlives_data(
        RetentionPolicy.load(settings.retention_policy_file), settings.audit_retention_days
    )
    try:
        CronTrigger.from_crontab(settings.retention_sweep_cron, timezone=UTC)
    except ValueError as exc:
        raise ConfigurationError(f"retention_sweep_cron is not a valid crontab: {exc}") from None


def start_background_jobs(platform: Platform, *, name: str = "default") -> BackgroundScheduler:
    settings = platform.settings
    check_jobs_can_start(settings)
    _running[name] = platform
    scheduler = BackgroundScheduler(
        daemon=True,
        timezone=UTC,
        jobstores={
            "default": MemoryJobStore(),
            "persistent": SQLAlchemyJobStore(engine=platform.db.engine, tablename=SCHEDULER_JOBS.name),
        },
    )
    scheduler.add_job(
        audit_tick,
        "interval",
        args=[platform],
        seconds=settings.audit_seal_interval_ms / 1000,
        id="audit-sequencer",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        housekeeping_tick,
        "interval",
        args=[platform],
        seconds=60,
        id="housekeeping",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        analytics_tick,
        "interval",
        args=[platform],
        seconds=settings.analytics_check_seconds,
        id="analytics-segments",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    schedule_retention_sweep(scheduler, settings.retention_sweep_cron, name=name)
    return scheduler


def schedule_retention_sweep(scheduler: BackgroundScheduler, cron: str, *, name: str = "default") -> None:
    """Add the sweep to the persistent store unless it is there already — keeping its next run time, so
    a restart neither skips nor repeats a run — and follow a changed ``retention_sweep_cron``."""
    trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    existing = scheduler.get_job(RETENTION_JOB_ID, jobstore="persistent")
    if existing is not None:
        if str(existing.trigger) != str(trigger):
            scheduler.reschedule_job(RETENTION_JOB_ID, jobstore="persistent", trigger=trigger)
        return
    with suppress(ConflictingIdError):  # another worker scheduled it first
        scheduler.add_job(
            "cdp.jobs:retention_sweep_job",
            trigger,
            kwargs={"name": name},
            id=RETENTION_JOB_ID,
            jobstore="persistent",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=6 * 3600,
        )


def run_jobs(
    platform: Platform,
    stop: threading.Event,
    *,
    parent_pid: int | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Run the background jobs until ``stop`` is set — or, with ``parent_pid``, until that process is
    gone (``cdp serve`` killed outright must not leave an orphan sealing and sweeping on its own).
    Running jobs finish before this returns."""
    scheduler = start_background_jobs(platform)
    try:
        while not stop.wait(poll_seconds):
            if parent_pid is not None and os.getppid() != parent_pid:
                logger.warning("the serving process is gone; background jobs stop")
                return
    finally:
        scheduler.shutdown(wait=True)
