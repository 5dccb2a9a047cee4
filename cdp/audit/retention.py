"""``cdp audit prune``: delete the oldest audit entries once they are past retention, without breaking the
chain's proof.

Only a prefix of the sealed chain is ever deleted, and only entries that are all older than the cutoff
and covered by a signed checkpoint. Before deleting, the chain records (and seals, and signs) an
``audit.prune`` entry naming the last pruned seq and its hash: the kept chain then starts at an entry
whose ``prev_hash`` the chain itself vouches for, which is what :func:`cdp.audit.verify.verify_chain`
requires of a log that does not start at seq 1. Deleting a prefix any other way fails verification.

Pruning refuses to run on a chain that does not verify: deleting entries would destroy the evidence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cdp.audit.checkpoints import latest_checkpoint, sign_checkpoint
from cdp.audit.events import AuditError, AuditEvent
from cdp.audit.log import record_now
from cdp.audit.sequencer import lock_chain, seal
from cdp.audit.verify import verify_chain
from cdp.db import Database
from cdp.db.models import AuditEntry, AuditSigningKey, AuditSubject
from cdp.db.types import utcnow
from cdp.vault import Vault


@dataclass(frozen=True)
class PrunePlan:
    first_seq: int
    through_seq: int
    head_hash: str
    """Hash of entry ``through_seq``: the ``prev_hash`` the first kept entry must have."""

    @property
    def entries(self) -> int:
        return self.through_seq - self.first_seq + 1


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    plan: PrunePlan | None
    """None when nothing is both past retention and under a checkpoint."""
    dry_run: bool
    deleted: int = 0
    prune_entry: uuid.UUID | None = None


def plan_prune(session: Session, cutoff: datetime) -> PrunePlan | None:
    """The longest prefix of the sealed chain whose entries are all recorded before ``cutoff`` and that
    ends at or before the latest checkpoint."""
    checkpoint = latest_checkpoint(session)
    first = session.execute(select(func.min(AuditEntry.seq))).scalar_one()
    if checkpoint is None or first is None:
        return None
    first_young = session.execute(
        select(func.min(AuditEntry.seq)).where(AuditEntry.seq.is_not(None), AuditEntry.recorded_at >= cutoff)
    ).scalar_one()
    through = checkpoint.seq if first_young is None else min(checkpoint.seq, first_young - 1)
    if through < first:
        return None
    head_hash = session.execute(select(AuditEntry.hash).where(AuditEntry.seq == through)).scalar_one_or_none()
    if head_hash is None:
        raise AuditError(f"the sealed log has no entry at seq {through}; run `cdp audit verify`")
    return PrunePlan(first, through, head_hash)


def prune(
    db: Database,
    vault: Vault,
    origin: str,
    retention_days: int,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Delete the entries :func:`plan_prune` selects for ``now - retention_days``.

    Order matters for crash safety: the ``audit.prune`` entry is committed, sealed and signed before any
    entry is deleted, and the deletion (entries and their subject index rows) is one transaction. A crash
    in between leaves a chain that still verifies and a prune that can simply be run again."""
    if retention_days < 1:
        raise AuditError("retention_days must be at least 1")
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with db.read() as session:
        plan = plan_prune(session, cutoff)
        keys = {
            key_id: public_key
            for key_id, public_key in session.execute(
                select(AuditSigningKey.key_id, AuditSigningKey.public_key)
            )
        }
    if plan is None:
        return PruneResult(cutoff, None, dry_run)
    report = verify_chain(db, keys)
    if not report.ok:
        raise AuditError(
            f"the audit chain does not verify ({report.first_problem}); refusing to prune, "
            "deleting entries would destroy the evidence"
        )
    if dry_run:
        return PruneResult(cutoff, plan, dry_run)
    entry_id = record_now(
        db,
        AuditEvent(
            "audit.prune",
            details={
                "through_seq": plan.through_seq,
                "head_hash": plan.head_hash,
                "entries": plan.entries,
                "retention_days": retention_days,
            },
        ),
    )
    seal(db)
    sign_checkpoint(db, vault, origin)
    with db.transaction() as session:
        lock_chain(session)
        doomed = select(AuditEntry.id).where(AuditEntry.seq <= plan.through_seq)
        session.execute(
            delete(AuditSubject).where(AuditSubject.entry_id.in_(doomed)),
            execution_options={"synchronize_session": False},
        )
        result = session.execute(
            delete(AuditEntry).where(AuditEntry.seq <= plan.through_seq),
            execution_options={"synchronize_session": False},
        )
        deleted = int(result.rowcount)  # type: ignore[attr-defined]
    return PruneResult(cutoff, plan, dry_run, deleted, entry_id)
