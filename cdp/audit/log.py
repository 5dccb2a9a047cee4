"""Appending to the audit log: one row per operation, inserted by the operation's own transaction.

Appends never touch the chain head, so concurrent requests do not queue on it; the sequencer
(:mod:`cdp.audit.sequencer`) links entries into the hash chain shortly after. An append that fails
raises, and with it the operation: nothing is done unaudited.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from cdp.audit.canonical import canonical_json
from cdp.audit.context import current_scope
from cdp.audit.events import AuditActor, AuditError, AuditEvent
from cdp.db import Database
from cdp.db.models import AuditEntry, AuditSubject, table_of
from cdp.db.types import utcnow

_ENTRIES = table_of(AuditEntry)
_SUBJECTS = table_of(AuditSubject)
_INSERT_ENTRY = insert(_ENTRIES)
_INSERT_SUBJECT = insert(_SUBJECTS)


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise AuditError("audit details must not hold floats (their text form is not canonical)")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


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
    scope = current_scope()
    who = actor or (scope.actor if scope is not None else AuditActor.system())
    entry_id = uuid.uuid4()
    subjects = sorted(set(event.subjects))
    _reject_floats(dict(event.details))
    try:
        details = canonical_json(dict(event.details))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details of {event.action} are not canonical JSON: {exc}") from None
    target.execute(
        _INSERT_ENTRY,
        {
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
        },
    )
    if subjects:
        target.execute(_INSERT_SUBJECT, [{"entry_id": entry_id, "subject_id": s} for s in subjects])
    if scope is not None:
        scope.recorded.append(event.action)
    return entry_id


def record_now(db: Database, event: AuditEvent, *, actor: AuditActor | None = None) -> uuid.UUID:
    """Record in a transaction of its own, committed before this returns.

    For reads (the data is only handed out after this succeeds) and for refusals and failures, whose
    own transaction was rolled back but which must still leave a trace."""
    with db.transaction() as session:
        return record(session, event, actor=actor)
