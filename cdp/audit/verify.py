"""``cdp audit verify``: recompute the whole chain and check every checkpoint, naming the first bad entry.

What it catches, each at the entry where it happens: a changed column (the entry's hash no longer
matches its content), a deleted entry (a gap in ``seq``, or a checkpoint beyond the head when the tail
was cut), an inserted or reordered entry (``seq`` or ``prev_hash`` no longer follow), a doctored search
index (``audit_subject`` disagrees with the hashed subjects), a forged or altered checkpoint (the
signature or the head it names). Pending entries are reported, not judged: they are not chained yet.

A log whose oldest entries were pruned (:mod:`cdp.audit.retention`) starts after the pruned prefix; the
chain itself must then hold the ``audit.prune`` entry that vouches for exactly that prefix.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.audit.canonical import GENESIS_HASH, document_hash
from cdp.audit.checkpoints import Checkpoint, all_checkpoints
from cdp.audit.sequencer import document_of
from cdp.db import Database
from cdp.db.models import AuditEntry, AuditSubject
from cdp.vault.audit_keys import verify_signature

BATCH = 5000


@dataclass(frozen=True)
class ChainProblem:
    seq: int | None
    entry_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"entry seq {self.seq}" if self.seq is not None else "the log"
        if self.entry_id:
            where += f" (id {self.entry_id})"
        return f"{where}: {self.reason}"


@dataclass
class VerifyReport:
    entries: int = 0
    first_seq: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints: int = 0
    latest_checkpoint: int | None = None
    pending: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries_verified": self.entries,
            "first_seq": self.first_seq,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "checkpoints_verified": self.checkpoints,
            "latest_checkpoint_seq": self.latest_checkpoint,
            "pending": self.pending,
            "first_problem": str(self.first_problem) if self.problems else None,
        }


def _subject_index(session: Session, ids: list[Any]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = defaultdict(list)
    for entry_id, subject_id in session.execute(
        select(AuditSubject.entry_id, AuditSubject.subject_id).where(AuditSubject.entry_id.in_(ids))
    ):
        index[str(entry_id)].append(subject_id)
    return index


def verify_chain(db: Database, public_keys: dict[str, str]) -> VerifyReport:
    """Check every sealed entry and checkpoint. ``public_keys``: key id → hex Ed25519 public key."""
    report = VerifyReport()
    with db.read() as session:
        report.pending = session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.seq.is_(None))
        ).scalar_one()
        checkpoints = {c.seq: c for c in all_checkpoints(session)}
        first_prev: str | None = None
        prev_hash = GENESIS_HASH
        expected_seq: int | None = None
        prune_anchors: set[tuple[int, str]] = set()
        last_seq = 0
        while not report.problems:
            batch = (
                session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.seq.is_not(None), AuditEntry.seq > last_seq)
                    .order_by(AuditEntry.seq)
                    .limit(BATCH)
                )
                .scalars()
                .all()
            )
            if not batch:
                break
            index = _subject_index(session, [entry.id for entry in batch])
            for entry in batch:
                assert entry.seq is not None
                problem = _check_entry(entry, expected_seq, prev_hash, index.get(str(entry.id), []))
                if expected_seq is None:  # the oldest entry kept: genesis, or vouched for by a prune
                    report.first_seq = entry.seq
                    first_prev = entry.prev_hash
                    if problem is None and entry.seq == 1 and entry.prev_hash != GENESIS_HASH:
                        problem = "the first entry does not start from the genesis hash"
                if problem is not None:
                    report.problems.append(ChainProblem(entry.seq, str(entry.id), problem))
                    break
                if entry.action == "audit.prune":
                    anchor = _prune_anchor(entry.details)
                    if anchor is not None:
                        prune_anchors.add(anchor)
                checkpoint = checkpoints.get(entry.seq)
                if checkpoint is not None and checkpoint.head_hash != entry.hash:
                    report.problems.append(
                        ChainProblem(entry.seq, str(entry.id), "a checkpoint names another head hash here")
                    )
                    break
                report.entries += 1
                prev_hash = entry.hash or ""
                expected_seq = entry.seq + 1
                last_seq = entry.seq
        report.head_seq = last_seq
        report.head_hash = prev_hash
        if (
            not report.problems
            and report.first_seq > 1
            and (report.first_seq - 1, first_prev) not in prune_anchors
        ):
            report.problems.append(
                ChainProblem(
                    report.first_seq,
                    None,
                    f"entries before seq {report.first_seq} are missing and no audit.prune entry "
                    "accounts for them",
                )
            )
        if not report.problems:
            _check_checkpoints(report, checkpoints, public_keys)
    return report


def _prune_anchor(details: str) -> tuple[int, str] | None:
    """The (through_seq, head_hash) an ``audit.prune`` entry vouches for. Its details are hashed but not
    necessarily written by :mod:`cdp.audit.retention` (a row inserted straight into the database gets
    sealed too), so anything but an integer seq and a string hash vouches for nothing."""
    anchor = json.loads(details)
    if not isinstance(anchor, dict):
        return None
    through, head = anchor.get("through_seq"), anchor.get("head_hash")
    if type(through) is not int or not isinstance(head, str):
        return None
    return through, head


def _check_entry(
    entry: AuditEntry, expected_seq: int | None, prev_hash: str, indexed: list[str]
) -> str | None:
    assert entry.seq is not None
    if expected_seq is not None and entry.seq != expected_seq:
        return f"sequence gap: expected seq {expected_seq} (entries deleted or renumbered)"
    if expected_seq is not None and entry.prev_hash != prev_hash:
        return "prev_hash does not match the previous entry's hash (entries inserted, removed or reordered)"
    if entry.prev_hash is None or entry.hash is None:
        return "sealed entry without hashes"
    try:
        recomputed = document_hash(document_of(entry, entry.seq, entry.prev_hash))
    except (ValueError, TypeError):
        return "entry content is not valid canonical JSON"
    if recomputed != entry.hash:
        return "content does not match its hash (entry modified)"
    if sorted(indexed) != sorted(json.loads(entry.subjects)):
        return "the subject search index disagrees with the entry's subjects"
    return None


def _check_checkpoints(
    report: VerifyReport, checkpoints: dict[int, Checkpoint], keys: dict[str, str]
) -> None:
    for seq in sorted(checkpoints):
        checkpoint = checkpoints[seq]
        if seq > report.head_seq:
            report.problems.append(
                ChainProblem(
                    report.head_seq + 1,
                    None,
                    f"a checkpoint covers entries up to seq {seq} but the chain ends at seq "
                    f"{report.head_seq} (entries deleted from the end)",
                )
            )
            return
        key = keys.get(checkpoint.key_id)
        if key is None or not verify_signature(key, checkpoint.message, checkpoint.signature):
            report.problems.append(
                ChainProblem(seq, None, f"checkpoint at seq {seq} has no valid signature by a known key")
            )
            return
        if seq >= report.first_seq:
            report.checkpoints += 1
        report.latest_checkpoint = seq
