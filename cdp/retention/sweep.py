"""The retention sweep: find records past their category's retention period, skip those under legal hold,
destroy the rest through the one destruction path, and sign a destruction certificate.

- **Fixed cut-off.** A sweep fixes its ``as_of`` time when it starts; a resumed sweep destroys exactly
  what that cut-off makes expired, so a crash and a re-run never widen or narrow what one sweep does.
- **Batches.** Each batch (``batch_size`` records) is one transaction: job row, destruction, progress.
  Killed mid-batch, the batch rolls back whole; the next run resumes with the next batch.
- **One at a time.** The running sweep's row carries a lease (``holder``, ``lease_until``) renewed by
  every batch. Another process finds the lease live and stands down; a lease left by a dead process
  expires and the next run takes the sweep over. Taking or creating the lease is serialized by the
  database (``BEGIN IMMEDIATE`` on SQLite, a transaction advisory lock on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, Outcome, record, record_now
from cdp.audit.canonical import timestamp
from cdp.db import Database
from cdp.db.models import (
    Interaction,
    LegalHold,
    OutboxMessage,
    QuarantinedRow,
    RetainedRecord,
    RetentionPolicyVersion,
    RetentionSweep,
    Source,
    SourceRecord,
)
from cdp.db.types import utcnow
from cdp.dsr.destruction import Destroyer, DestructionOutcome
from cdp.dsr.receipts import Receipts, SignedReceipt
from cdp.errors import CdpError
from cdp.retention.policy import Category, RetentionConfigError, RetentionPolicy
from cdp.vault import Vault
from cdp.vault.subjects import SubjectStore

_LOCK_KEY = 0x63647072  # "cdpr": the sweep's PostgreSQL advisory lock


class SweepBusy(CdpError):
    """Another process holds the sweep's lease."""


@dataclass
class SweepReport:
    sweep_id: uuid.UUID | None
    dry_run: bool
    as_of: datetime
    policy_version: int
    expired: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    destroyed: DestructionOutcome = field(default_factory=DestructionOutcome)
    retained_destroyed: int = 0
    operational_destroyed: dict[str, int] = field(default_factory=dict)
    """Quarantined rows and outbox messages past their keep period."""
    batches: int = 0
    resumed: bool = False
    seconds: float = 0.0
    certificate: SignedReceipt | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep_id": str(self.sweep_id) if self.sweep_id else None,
            "dry_run": self.dry_run,
            "as_of": self.as_of.isoformat(),
            "policy_version": self.policy_version,
            "expired_by_category": dict(sorted(self.expired.items())),
            "held_by_category": dict(sorted(self.held.items())),
            "destroyed": self.destroyed.to_dict(),
            "retained_documents_destroyed": self.retained_destroyed,
            "operational_destroyed": dict(sorted(self.operational_destroyed.items())),
            "batches": self.batches,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "certificate_id": str(self.certificate.id) if self.certificate else None,
        }


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RetentionSweeper:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        policy: RetentionPolicy,
        *,
        batch_size: int = 1000,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.db = db
        self.vault = vault
        self.policy = policy
        self.batch_size = batch_size
        self.lease = lease
        self.holder = _holder()
        self._scanned: dict[str, uuid.UUID] = {}
        """Per category, the last record id this run's batches have read (see :meth:`_next_batch`)."""

    # -- what has expired ----------------------------------------------------------------------------

    def _expired_query(self, category: Category, as_of: datetime, *, held: bool) -> Any:
        cutoff = category.keep.before(as_of)
        record = SourceRecord
        active_hold = exists().where(LegalHold.record_id == record.id, LegalHold.released_at.is_(None))
        if category.anchor == "ingested":
            expired = record.ingested_at < cutoff
        else:
            recent_contact = exists().where(
                Interaction.record_id == record.id, Interaction.occurred_at >= cutoff
            )
            any_contact = exists().where(Interaction.record_id == record.id)
            expired = and_(
                or_(record.last_activity_at.is_(None), record.last_activity_at < cutoff),
                ~recent_contact,
                or_(record.last_activity_at.is_not(None), any_contact, record.updated_at < cutoff),
            )
        return (
            select(record.id)
            .join(Source, Source.id == record.source_id)
            .where(Source.line_of_business == category.line_of_business, expired)
            .where(active_hold if held else ~active_hold)
        )

    def _count(self, session: Session, category: Category, as_of: datetime, *, held: bool) -> int:
        query = self._expired_query(category, as_of, held=held).subquery()
        return int(session.execute(select(func.count()).select_from(query)).scalar_one())

    def _next_batch(self, session: Session, as_of: datetime) -> tuple[list[uuid.UUID], dict[str, uuid.UUID]]:
        """Up to ``batch_size`` expired records, and where each category's scan got to.

        Each category is read in id order from where the previous batch of this run stopped (keyset):
        with the cut-off fixed, what was not expired then is not expired now, so no batch re-reads the
        records that stay — without it, a sweep that destroys 1% of a million records would scan the
        million once per batch."""
        batch: list[uuid.UUID] = []
        reached: dict[str, uuid.UUID] = {}
        for category in self.policy.categories:
            room = self.batch_size - len(batch)
            if room <= 0:
                break
            query = self._expired_query(category, as_of, held=False).order_by(SourceRecord.id).limit(room)
            after = self._scanned.get(category.name)
            if after is not None:
                query = query.where(SourceRecord.id > after)
            found = list(session.execute(query).scalars())
            if found:
                reached[category.name] = found[-1]
            batch += found
        return batch, reached

    # -- running -------------------------------------------------------------------------------------

    def run(
        self,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> SweepReport:
        started = time.perf_counter()
        at = now or utcnow()
        if dry_run:
            report = self._dry_run(at)
            report.seconds = time.perf_counter() - started
            record_now(
                self.db,
                AuditEvent(
                    "retention.sweep", details={"dry_run": True, "expired": sum(report.expired.values())}
                ),
            )
            return report
        sweep_id, as_of, resumed = self._acquire(at)
        report = SweepReport(sweep_id, False, as_of, self.policy.version, resumed=resumed)
        with self.db.read() as session:
            for category in self.policy.categories:
                report.held[category.name] = self._count(session, category, as_of, held=True)
        self._scanned = {}
        while True:
            selected, destroyed = self._batch(sweep_id, as_of, report)
            if selected == 0:
                break
            if progress:
                progress(destroyed)
        report.retained_destroyed = self._expire_retained(as_of)
        report.operational_destroyed = self._expire_operational(as_of)
        report.certificate = self._finish(sweep_id, as_of, report)
        report.expired = report.destroyed.by_category.copy()
        report.seconds = time.perf_counter() - started
        self.vault.keys.forget_unwrapped()
        return report

    def _dry_run(self, at: datetime) -> SweepReport:
        report = SweepReport(None, True, at, self.policy.version)
        with self.db.read() as session:
            for category in self.policy.categories:
                report.expired[category.name] = self._count(session, category, at, held=False)
                report.held[category.name] = self._count(session, category, at, held=True)
            report.retained_destroyed = int(
                session.execute(
                    select(func.count()).select_from(RetainedRecord).where(RetainedRecord.retain_until <= at)
                ).scalar_one()
            )
            cutoffs = self._operational_cutoffs(at)
            report.operational_destroyed = {
                "quarantined_rows": int(
                    session.execute(
                        select(func.count())
                        .select_from(QuarantinedRow)
                        .where(QuarantinedRow.created_at < cutoffs["quarantine"])
                    ).scalar_one()
                ),
                "outbox_messages": int(
                    session.execute(
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(OutboxMessage.created_at < cutoffs["outbox"])
                    ).scalar_one()
                ),
            }
        return report

    def _lock(self, session: Session) -> None:
        if not self.db.is_sqlite:  # SQLite writers are already serialized by BEGIN IMMEDIATE
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})

    def _acquire(self, at: datetime) -> tuple[uuid.UUID, datetime, bool]:
        """Take the running sweep's lease (resuming it) or start a new sweep; raise SweepBusy if a live
        lease belongs to someone else."""
        with self.db.transaction() as session:
            self._lock(session)
            self._activate_policy(session)
            running = (
                session.execute(
                    select(RetentionSweep)
                    .where(RetentionSweep.status == "running")
                    .order_by(RetentionSweep.started_at)
                )
                .scalars()
                .first()
            )
            clock = utcnow()  # leases run on the wall clock; ``at`` only fixes what counts as expired
            if running is not None:
                if running.lease_until > clock and running.holder != self.holder:
                    raise SweepBusy("a retention sweep is already running; try again when it has finished")
                if running.policy_version != self.policy.version:
                    raise RetentionConfigError(
                        f"an interrupted sweep under policy version {running.policy_version} must finish "
                        f"first; this process has version {self.policy.version}"
                    )
                running.holder = self.holder
                running.lease_until = clock + self.lease
                return running.id, running.as_of, True
            sweep = RetentionSweep(
                id=uuid.uuid4(),
                status="running",
                policy_version=self.policy.version,
                as_of=at,
                started_at=at,
                holder=self.holder,
                lease_until=clock + self.lease,
                counts="{}",
            )
            session.add(sweep)
            return sweep.id, at, False

    def _activate_policy(self, session: Session) -> None:
        """Keep every policy version ever applied; a changed file under an old version number is refused
        (certificates name versions, so a version must mean one text)."""
        stored = session.get(RetentionPolicyVersion, self.policy.version)
        if stored is None:
            session.add(
                RetentionPolicyVersion(
                    version=self.policy.version,
                    digest=self.policy.digest,
                    content=self.policy.content,
                    activated_at=utcnow(),
                )
            )
        elif stored.digest != self.policy.digest:
            raise RetentionConfigError(
                f"the retention policy changed but still says version {self.policy.version}; "
                "give the new text a new version"
            )

    def _batch(self, sweep_id: uuid.UUID, as_of: datetime, report: SweepReport) -> tuple[int, int]:
        """One batch in one transaction: (records selected, records destroyed)."""
        with self.db.transaction() as session:
            renewed = session.execute(
                update(RetentionSweep)
                .where(
                    RetentionSweep.id == sweep_id,
                    RetentionSweep.holder == self.holder,
                    RetentionSweep.status == "running",
                )
                .values(lease_until=utcnow() + self.lease)
            )
            if int(renewed.rowcount) != 1:  # type: ignore[attr-defined]
                raise SweepBusy("this sweep's lease was taken over by another process")
            records, reached = self._next_batch(session, as_of)
            if not records:
                return 0, 0
            destroyer = Destroyer(session, self.vault, self.policy)
            plan = destroyer.plan(records, reason="retention", suppress=False)
            job_id = destroyer.save(plan)
            outcome = destroyer.execute(job_id, plan)
            sweep = session.get(RetentionSweep, sweep_id)
            assert sweep is not None
            totals = json.loads(sweep.counts or "{}")
            for key, value in outcome.to_dict().items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
                else:
                    merged = Counter(totals.get(key, {}))
                    merged.update(value)
                    totals[key] = dict(sorted(merged.items()))
            totals["batches"] = totals.get("batches", 0) + 1
            sweep.counts = json.dumps(totals, sort_keys=True)
            record(
                session,
                AuditEvent(
                    "retention.sweep",
                    subjects=tuple(str(r) for r in records[:50]),
                    details={"sweep_id": str(sweep_id), "records": outcome.records, "job_id": str(job_id)},
                ),
            )
        self._scanned.update(reached)  # only once the batch is committed
        report.destroyed.add(outcome)
        report.batches += 1
        return len(records), outcome.records

    def _operational_cutoffs(self, as_of: datetime) -> dict[str, datetime]:
        return {name: period.before(as_of) for name, period in self.policy.operational.items()}

    def _expire_operational(self, as_of: datetime) -> dict[str, int]:
        """Quarantined rows (their raw row's key is shredded) and outbox messages past their period."""
        cutoffs = self._operational_cutoffs(as_of)
        with self.db.transaction() as session:
            holders = list(
                session.execute(
                    select(QuarantinedRow.subject_id).where(QuarantinedRow.created_at < cutoffs["quarantine"])
                ).scalars()
            )
            quarantined = session.execute(
                delete(QuarantinedRow).where(QuarantinedRow.created_at < cutoffs["quarantine"])
            )
            SubjectStore(session, self.vault.keys).shred(holders)
            outbox = session.execute(
                delete(OutboxMessage).where(OutboxMessage.created_at < cutoffs["outbox"])
            )
            return {
                "quarantined_rows": int(quarantined.rowcount),  # type: ignore[attr-defined]
                "outbox_messages": int(outbox.rowcount),  # type: ignore[attr-defined]
            }

    def _expire_retained(self, as_of: datetime) -> int:
        """Pseudonymized documents whose legal obligation has run out go too."""
        with self.db.transaction() as session:
            result = session.execute(delete(RetainedRecord).where(RetainedRecord.retain_until <= as_of))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _finish(self, sweep_id: uuid.UUID, as_of: datetime, report: SweepReport) -> SignedReceipt:
        with self.db.transaction() as session:
            sweep = session.get(RetentionSweep, sweep_id, with_for_update=True)
            assert sweep is not None
            finished = utcnow()
            totals = json.loads(sweep.counts or "{}")
            totals["retained_documents_destroyed"] = totals.get("retained_documents_destroyed", 0) + (
                report.retained_destroyed
            )
            for name, count in report.operational_destroyed.items():
                totals[name] = totals.get(name, 0) + count
            certificate = Receipts(session, self.vault).issue(
                "destruction_certificate",
                {
                    "sweep_id": str(sweep_id),
                    "retention_policy": {"version": self.policy.version, "sha256": self.policy.digest},
                    "as_of": timestamp(as_of),
                    "started_at": timestamp(sweep.started_at),
                    "finished_at": timestamp(finished),
                    "cutoffs": {
                        c.name: {
                            "keep": str(c.keep),
                            "anchor": c.anchor,
                            "before": timestamp(c.keep.before(as_of)),
                        }
                        for c in self.policy.categories
                    },
                    "destroyed": totals,
                    "held_by_category": dict(sorted((k, v) for k, v in report.held.items() if v)),
                    "method": "crypto-shredding of per-subject data keys (AES-256-GCM) and row deletion",
                },
                now=finished,
            )
            sweep.status = "completed"
            sweep.finished_at = finished
            sweep.counts = json.dumps(totals, sort_keys=True)
            sweep.certificate_id = certificate.id
            record(
                session,
                AuditEvent(
                    "retention.sweep",
                    Outcome.SUCCESS,
                    details={
                        "sweep_id": str(sweep_id),
                        "records": int(totals.get("records", 0)),
                        "certificate_id": str(certificate.id),
                        "completed": True,
                    },
                ),
            )
            return certificate

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.db.read() as session:
            rows = session.execute(
                select(RetentionSweep).order_by(RetentionSweep.started_at.desc()).limit(limit)
            ).scalars()
            return [
                {
                    "id": str(row.id),
                    "status": row.status,
                    "policy_version": row.policy_version,
                    "as_of": row.as_of.isoformat(),
                    "started_at": row.started_at.isoformat(),
                    "finished_at": row.finished_at.isoformat() if row.finished_at else None,
                    "counts": json.loads(row.counts or "{}"),
                    "certificate_id": str(row.certificate_id) if row.certificate_id else None,
                }
                for row in rows
            ]
