"""Background jobs of a serving process (APScheduler): today the audit sequencer.

Each server worker runs its own scheduler. The sequencer serializes itself on the chain lock, so two
workers sealing at once take turns instead of forking the chain; a worker that finds nothing pending,
or no checkpoint due, does not take the lock at all. Later capabilities (retention sweeps, token
pruning) add their jobs here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from cdp.audit import AuditActor, acting_as
from cdp.audit.service import AuditService
from cdp.platform import Platform

logger = logging.getLogger(__name__)


def audit_tick(platform: Platform) -> None:
    """Seal what is pending and sign the head when a checkpoint is due. Never raises: a failed tick is
    logged (without data: entries hold none) and retried on the next one, and nothing is lost, because
    pending entries stay pending until sealed."""
    service = AuditService(platform.db, platform.vault, platform.settings.issuer)
    interval = timedelta(seconds=platform.settings.audit_checkpoint_interval_seconds)
    try:
        with acting_as(AuditActor.system("sequencer")):
            service.seal()
            service.checkpoint(min_interval=interval)
    except Exception as exc:  # a background job must survive a database hiccup
        logger.warning("audit sequencer tick failed: %s", type(exc).__name__)


def start_background_jobs(platform: Platform) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        audit_tick,
        "interval",
        args=[platform],
        seconds=platform.settings.audit_seal_interval_ms / 1000,
        id="audit-sequencer",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    return scheduler
