"""Appending to the audit log: one row per operation, inserted by the operation's own transaction.

Appends never touch the chain head, so concurrent requests do not queue on it; the sequencer
(:mod:`cdp.audit.sequencer`) links entries into the hash chain shortly after. An append that fails
raises, and with it the operation: nothing is done unaudited.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session
from uuid6 import uuid7

from cdp.audit.canonical import canonical_json
from cdp.audit.context import current_scope
from cdp.audit.events import AuditActor, AuditError, AuditEvent
from cdp.db import UNAVAILABLE_ERRORS, Database
from cdp.db.driver import DriverStatements
from cdp.db.models import AuditEntry, table_of
from cdp.db.types import utcnow
from cdp.errors import DatabaseUnavailable

_ENTRIES = table_of(AuditEntry)
_INSERT_ENTRY = insert(_ENTRIES)
_APPENDED_COLUMNS = (
    *("id", "seq", "recorded_at", "action", "outcome", "actor", "actor_kind", "role", "department"),
    *("purpose", "request_id", "subjects", "fields", "details"),
)
"""What an append writes; the chain columns (prev_hash, hash, sealed_at) are the sequencer's."""


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise AuditError("audit details must not hold floats (their text form is not canonical)")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def _entry_row(event: AuditEvent, actor: AuditActor | None, at: datetime | None) -> dict[str, Any]:
    scope = current_scope()
    who = actor or (scope.actor if scope is not None else AuditActor.system())
    # Time-ordered: a random (v4) id put every append on a random leaf of the primary-key index, a page
    # that a log kept for eleven years will mostly not have in cache; v7 ids append at its right edge.
    entry_id = uuid7()
    subjects = sorted(set(event.subjects))
    _reject_floats(dict(event.details))
    try:
        details = canonical_json(dict(event.details))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details of {event.action} are not canonical JSON: {exc}") from None
    entry = {
        "id": entry_id,
        "seq": None,
        "recorded_at": at or utcnow(),
        "action": event.action,
        "outcome": event.outcome.value,
        "actor": who.principal,
        "actor_kind": who.kind.value,
        "role": who.role,
        "department": who.department,
        "purpose": event.purpose,
        "request_id": scope.request_id if scope is not None else None,
        "subjects": canonical_json(subjects),
        "fields": canonical_json(sorted(set(event.fields))),
        "details": details,
    }
    return entry


_DRIVER_INSERT = DriverStatements(_INSERT_ENTRY, _APPENDED_COLUMNS)
"""The entry insert for the hot path: compiled once per dialect, run on the DBAPI cursor."""


def _mark_recorded(event: AuditEvent, *, committed: bool) -> None:
    scope = current_scope()
    if scope is not None:
        scope.recorded.append(event.action)
        if committed:
            scope.committed.append(event.action)


def record(
    target: Session | Connection,
    event: AuditEvent,
    *,
    actor: AuditActor | None = None,
    at: datetime | None = None,
) -> uuid.UUID:
    """Insert ``event`` in ``target``'s transaction (it commits or rolls back with the operation).

    The actor and request id come from the current :func:`~cdp.audit.context.acting_as` scope unless
    ``actor`` is given; outside any scope the system is accountable."""
    entry = _entry_row(event, actor, at)
    target.execute(_INSERT_ENTRY, entry)
    _mark_recorded(event, committed=False)
    entry_id: uuid.UUID = entry["id"]
    return entry_id


@dataclass
class _Pending:
    entry: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    lead: bool = False
    """Set (with ``done``) when this waiter is promoted to flush the next batch."""


class GroupCommit:
    """Commits concurrent :func:`record_now` calls of one process together, one transaction per batch.

    Every caller still returns only after its own entry is committed — a read is never answered on an
    entry that could be lost — but callers that arrive while a commit is in flight share the next one,
    so under load the cost of a transaction (and of its fsync on PostgreSQL) is paid once per batch.
    There is no background thread: the first caller leads and flushes; when it is done it hands the
    lead to the oldest waiter, so no caller's latency grows with others' load by more than one batch.
    """

    MAX_BATCH = 256

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._leading = False

    def submit(self, entry: dict[str, Any]) -> None:
        pending = _Pending(entry)
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.done.wait()
            if not pending.lead:
                self._raise_if_failed(pending)
                return
        self._flush_one_batch()
        self._raise_if_failed(pending)

    @staticmethod
    def _raise_if_failed(pending: _Pending) -> None:
        if isinstance(pending.error, UNAVAILABLE_ERRORS):
            # The database went away (a restart, a failover): transient, so the caller may retry.
            raise DatabaseUnavailable(
                "the audit entry could not be recorded (database unavailable); the operation is refused"
            ) from pending.error
        if pending.error is not None:
            raise AuditError("the audit entry could not be recorded; the operation is refused") from (
                pending.error
            )

    def _flush_one_batch(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.MAX_BATCH))]
        try:
            statement = _DRIVER_INSERT.for_dialect(self.db.engine.dialect)
            with self.db.raw_write(single_statement=len(batch) == 1) as cursor:
                if len(batch) == 1:
                    cursor.execute(statement.sql, statement.parameters(batch[0].entry))
                else:
                    cursor.executemany(statement.sql, [statement.parameters(p.entry) for p in batch])
        except BaseException as exc:  # every waiter of the batch must learn it failed, then re-raise
            for pending in batch:
                pending.error = exc
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
            for pending in batch[1:]:
                pending.done.set()


_WRITERS: dict[tuple[int, int], GroupCommit] = {}
_WRITERS_LOCK = threading.Lock()


def _writer(db: Database) -> GroupCommit:
    """One group committer per database per process (a forked worker gets its own)."""
    key = (id(db), os.getpid())
    writer = _WRITERS.get(key)
    if writer is None or writer.db is not db:
        with _WRITERS_LOCK:
            writer = _WRITERS.get(key)
            if writer is None or writer.db is not db:
                writer = _WRITERS[key] = GroupCommit(db)
    return writer


def record_now(db: Database, event: AuditEvent, *, actor: AuditActor | None = None) -> uuid.UUID:
    """Record in a transaction of its own, committed before this returns (shared with concurrent
    callers: see :class:`GroupCommit`).

    For reads (the data is only handed out after this succeeds) and for refusals and failures, whose
    own transaction was rolled back but which must still leave a trace."""
    entry = _entry_row(event, actor, None)
    _writer(db).submit(entry)
    _mark_recorded(event, committed=True)
    entry_id: uuid.UUID = entry["id"]
    return entry_id
