"""The sequencer: links pending entries into the hash chain, in batches, one sequencer at a time.

Requests only insert entries (``seq`` NULL). Sealing takes the chain lock — ``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL — reads the head once, and assigns
``seq``/``prev_hash``/``hash`` to a batch of pending entries in arrival order. It also writes the subject
search index (``audit_subject``) from the hashed subject lists, so a request inserts one row only and
search by subject covers sealed entries (within ``audit_seal_interval_ms`` of their append). Any number
of processes may run it: they take turns, so the chain stays linear however many writers append.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from cdp.audit.canonical import GENESIS_HASH, document_hash, entry_document
from cdp.db import Database
from cdp.db.models import AuditEntry, AuditSubject
from cdp.db.types import utcnow

CHAIN_LOCK_ID = 0x63647061756474  # "cdpaudt": the advisory lock that serializes sealing on PostgreSQL


@dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: str


@dataclass(frozen=True)
class SealResult:
    sealed: int
    head: ChainHead


def lock_chain(session: Session) -> None:
    """Serialize chain writers. SQLite's writer transactions are already exclusive (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": CHAIN_LOCK_ID})


def chain_head(session: Session) -> ChainHead:
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash)
        .where(AuditEntry.seq.is_not(None))
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    if row is None or row.seq is None or row.hash is None:
        return ChainHead(0, GENESIS_HASH)
    return ChainHead(row.seq, row.hash)


def document_of(entry: AuditEntry, seq: int, prev_hash: str) -> dict[str, Any]:
    return entry_document(
        seq=seq,
        prev_hash=prev_hash,
        entry_id=str(entry.id),
        recorded_at=entry.recorded_at,
        action=entry.action,
        outcome=entry.outcome,
        actor=entry.actor,
        actor_kind=entry.actor_kind,
        role=entry.role,
        department=entry.department,
        purpose=entry.purpose,
        request_id=entry.request_id,
        subjects=entry.subjects,
        fields=entry.fields,
        details=entry.details,
    )


def _seal_batch(session: Session, batch_size: int, now: datetime) -> tuple[int, ChainHead]:
    lock_chain(session)
    head = chain_head(session)
    pending = (
        session.execute(
            select(AuditEntry)
            .where(AuditEntry.seq.is_(None))
            .order_by(AuditEntry.recorded_at, AuditEntry.id)
            .limit(batch_size)
        )
        .scalars()
        .all()
    )
    updates = []
    index: list[dict[str, Any]] = []
    seq, prev = head.seq, head.hash
    for entry in pending:
        seq += 1
        document = document_of(entry, seq, prev)
        digest = document_hash(document)
        updates.append({"id": entry.id, "seq": seq, "prev_hash": prev, "hash": digest, "sealed_at": now})
        index.extend({"entry_id": entry.id, "subject_id": subject} for subject in document["subjects"])
        prev = digest
    if updates:
        session.execute(update(AuditEntry), updates)
    if index:
        session.execute(insert(AuditSubject), index)
    return len(updates), ChainHead(seq, prev)


def seal(db: Database, *, batch_size: int = 2000, max_batches: int | None = None) -> SealResult:
    """Seal pending entries until none are left (or ``max_batches``); one transaction per batch."""
    total = 0
    batches = 0
    while True:
        with db.transaction() as session:
            sealed, head = _seal_batch(session, batch_size, utcnow())
        total += sealed
        batches += 1
        if sealed < batch_size or (max_batches is not None and batches >= max_batches):
            return SealResult(total, head)
