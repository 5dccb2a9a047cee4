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
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from cdp.audit.canonical import GENESIS_HASH, document_hash, entry_document
from cdp.db import Database
from cdp.db.driver import DriverStatements
from cdp.db.models import AuditEntry, AuditSubject, table_of
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


_LOCK_CHAIN = text("SELECT pg_advisory_xact_lock(:lock)")
_HEAD = (
    select(AuditEntry.seq, AuditEntry.hash)
    .where(AuditEntry.seq.is_not(None))
    .order_by(AuditEntry.seq.desc())
    .limit(1)
)


def lock_chain(session: Session) -> None:
    """Serialize chain writers. SQLite's writer transactions are already exclusive (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_CHAIN, {"lock": CHAIN_LOCK_ID})


def _head_of(row: Any) -> ChainHead:
    if row is None or row[0] is None or row[1] is None:
        return ChainHead(0, GENESIS_HASH)
    return ChainHead(int(row[0]), str(row[1]))


def chain_head(session: Session | Connection) -> ChainHead:
    return _head_of(session.execute(_HEAD).first())


def document_of(entry: Any, seq: int, prev_hash: str) -> dict[str, Any]:
    """The hashed document of ``entry`` (an :class:`AuditEntry` or a row of the same columns)."""
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


_PENDING_COLUMNS = (
    *(AuditEntry.id, AuditEntry.recorded_at, AuditEntry.action, AuditEntry.outcome, AuditEntry.actor),
    *(AuditEntry.actor_kind, AuditEntry.role, AuditEntry.department, AuditEntry.purpose),
    *(AuditEntry.request_id, AuditEntry.subjects, AuditEntry.fields, AuditEntry.details),
)
_SEAL = (
    update(table_of(AuditEntry))
    .where(table_of(AuditEntry).c.id == bindparam("entry_id"), table_of(AuditEntry).c.seq.is_(None))
    .values(
        seq=bindparam("new_seq"),
        prev_hash=bindparam("new_prev_hash"),
        hash=bindparam("new_hash"),
        sealed_at=bindparam("new_sealed_at"),
    )
)


_INDEX_SUBJECT = insert(table_of(AuditSubject))
_SEAL_ON_DRIVER = DriverStatements(_SEAL)
_INDEX_ON_DRIVER = DriverStatements(_INDEX_SUBJECT, ("entry_id", "subject_id"))
_LOCK_CHAIN_ON_DRIVER = DriverStatements(_LOCK_CHAIN)
_HEAD_ON_DRIVER = DriverStatements(_HEAD)


class _HeadMoved(Exception):
    """Another sequencer sealed entries between our read and our lock: chain from the new head."""


def _seal_batch(db: Database, batch_size: int) -> tuple[int, ChainHead]:
    """Hash a batch outside any lock, then apply it under the chain lock only if the head is still the
    one it was chained from. Readers and appenders never wait for the hashing; the lock is held for the
    updates alone, written on the DBAPI cursor (statements compiled once) because every appender in
    every process waits while it is held."""
    with db.connect() as connection:
        head = chain_head(connection)
        pending = connection.execute(
            select(*_PENDING_COLUMNS)
            .where(AuditEntry.seq.is_(None))
            .order_by(AuditEntry.recorded_at, AuditEntry.id)
            .limit(batch_size)
        ).all()
    if not pending:
        return 0, head
    now = utcnow()
    updates: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    seq, prev = head.seq, head.hash
    for entry in pending:
        seq += 1
        document = document_of(entry, seq, prev)
        digest = document_hash(document)
        updates.append(
            {
                "entry_id": entry.id,
                "new_seq": seq,
                "new_prev_hash": prev,
                "new_hash": digest,
                "new_sealed_at": now,
            }
        )
        index.extend({"entry_id": entry.id, "subject_id": subject} for subject in document["subjects"])
        prev = digest
    dialect = db.engine.dialect
    seal_statement = _SEAL_ON_DRIVER.for_dialect(dialect)
    index_statement = _INDEX_ON_DRIVER.for_dialect(dialect)
    seal_rows = [seal_statement.parameters(update) for update in updates]
    index_rows = [index_statement.parameters(row) for row in index]
    with db.raw_write() as cursor:
        if dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already holds the lock
            _LOCK_CHAIN_ON_DRIVER.for_dialect(dialect).first(cursor, {"lock": CHAIN_LOCK_ID})
        if _head_of(_HEAD_ON_DRIVER.for_dialect(dialect).first(cursor, {})) != head:
            raise _HeadMoved
        cursor.executemany(seal_statement.sql, seal_rows)
        if index_rows:
            cursor.executemany(index_statement.sql, index_rows)
    return len(updates), ChainHead(seq, prev)


def seal(db: Database, *, batch_size: int = 2000, max_batches: int | None = None) -> SealResult:
    """Seal pending entries until none are left (or ``max_batches``); one transaction per batch."""
    total = 0
    batches = 0
    while True:
        try:
            sealed, head = _seal_batch(db, batch_size)
        except _HeadMoved:
            continue
        total += sealed
        batches += 1
        if sealed < batch_size or (max_batches is not None and batches >= max_batches):
            return SealResult(total, head)
