"""Reading the audit log: compliance search, the access report, streaming export, a customer's own
access log and the chain's status.

Nothing here records: the callers (the HTTP views, the CLI) record what they looked at, with the
filters they used. Every query is bounded by an index: time ranges by ``recorded_at``, subjects through
``audit_subject`` (a join on the search index, never ``LIKE`` over the JSON text, which would scan the
whole log and could match one id inside another), actions and actors by their own indexes.

Pages are newest first with a keyset cursor over ``(recorded_at, id)``, so paging stays cheap however
deep it goes and an entry appended meanwhile never shifts a page. Exports run oldest first in chain order,
in short read transactions, so a slow download holds no snapshot open on the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Row, Select, and_, func, or_, select

from cdp.audit.canonical import GENESIS_HASH, document_hash, timestamp
from cdp.audit.checkpoints import Checkpoint, latest_checkpoint
from cdp.audit.events import READ_ACTIONS, ActorKind, Outcome
from cdp.audit.sequencer import document_of
from cdp.db import Database
from cdp.db.models import AuditCheckpoint, AuditEntry, AuditSubject, EntityMember
from cdp.errors import CdpError
from cdp.vault import Vault
from cdp.vault.audit_keys import AuditSigningKeys, verify_signature

Ts = TypeVarTuple("Ts")

MAX_PAGE = 1000
EXPORT_BATCH = 1000
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_CURSOR_MAX = 200

REPORT_OUTCOMES_OF_ANY_ACTION = frozenset({Outcome.DENIED.value})
"""The access report counts reads of personal data (:data:`~cdp.audit.events.READ_ACTIONS`) whatever
their outcome, plus refused attempts of any action: a refusal (wrong scope, rejected token, a purpose the
role may not use) is what a compliance officer looks for, while successful writes and administration are
operations, not accesses, and stay in the search and export."""


class InvalidCursor(CdpError):
    """A pagination cursor this module did not issue, or one damaged in transit."""


# -- entries ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """An audit entry with its JSON columns parsed; ``seq``, hashes and ``sealed_at`` are None while the
    entry is pending (recorded, not yet linked into the chain)."""

    id: uuid.UUID
    seq: int | None
    recorded_at: datetime
    action: str
    outcome: str
    actor: str
    actor_kind: str
    role: str | None
    department: str | None
    purpose: str | None
    request_id: str | None
    subjects: tuple[str, ...]
    fields: tuple[str, ...]
    details: dict[str, Any]
    prev_hash: str | None
    hash: str | None
    sealed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, ``recorded_at`` in the canonical spelling the hash covers, so an exported entry
        carries exactly what an offline verifier needs to recompute its hash."""
        return {
            "id": str(self.id),
            "seq": self.seq,
            "recorded_at": timestamp(self.recorded_at),
            "action": self.action,
            "outcome": self.outcome,
            "actor": self.actor,
            "actor_kind": self.actor_kind,
            "role": self.role,
            "department": self.department,
            "purpose": self.purpose,
            "request_id": self.request_id,
            "subjects": list(self.subjects),
            "fields": list(self.fields),
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "sealed_at": timestamp(self.sealed_at) if self.sealed_at is not None else None,
        }


_COLUMNS = (
    AuditEntry.id,
    AuditEntry.seq,
    AuditEntry.recorded_at,
    AuditEntry.action,
    AuditEntry.outcome,
    AuditEntry.actor,
    AuditEntry.actor_kind,
    AuditEntry.role,
    AuditEntry.department,
    AuditEntry.purpose,
    AuditEntry.request_id,
    AuditEntry.subjects,
    AuditEntry.fields,
    AuditEntry.details,
    AuditEntry.prev_hash,
    AuditEntry.hash,
    AuditEntry.sealed_at,
)


def _entry(row: Row[*tuple[Any, ...]]) -> Entry:
    return Entry(
        id=row.id,
        seq=row.seq,
        recorded_at=row.recorded_at,
        action=row.action,
        outcome=row.outcome,
        actor=row.actor,
        actor_kind=row.actor_kind,
        role=row.role,
        department=row.department,
        purpose=row.purpose,
        request_id=row.request_id,
        subjects=tuple(json.loads(row.subjects)),
        fields=tuple(json.loads(row.fields)),
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
        sealed_at=row.sealed_at,
    )


@dataclass(frozen=True)
class EntryPage:
    items: list[Entry]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [entry.to_dict() for entry in self.items], "next_cursor": self.next_cursor}


def _aware(name: str, moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment


@dataclass(frozen=True)
class EntryFilter:
    """What a search or export narrows to; every given criterion must hold. ``since`` is inclusive,
    ``until`` exclusive, so consecutive ranges neither overlap nor leave gaps."""

    subject: str | None = None
    actor: str | None = None
    action: str | None = None
    outcome: Outcome | str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        _aware("since", self.since)
        _aware("until", self.until)
        if self.outcome is not None:
            object.__setattr__(self, "outcome", Outcome(self.outcome))

    def apply(self, statement: Select[*Ts]) -> Select[*Ts]:
        conditions: list[ColumnElement[bool]] = []
        if self.subject is not None:
            conditions.append(about_subjects([self.subject]))
        if self.actor is not None:
            conditions.append(AuditEntry.actor == self.actor)
        if self.action is not None:
            conditions.append(AuditEntry.action == self.action)
        if self.outcome is not None:
            conditions.append(AuditEntry.outcome == Outcome(self.outcome).value)
        if self.since is not None:
            conditions.append(AuditEntry.recorded_at >= self.since)
        if self.until is not None:
            conditions.append(AuditEntry.recorded_at < self.until)
        return statement.where(*conditions) if conditions else statement


# -- cursors ------------------------------------------------------------------------------------------


def _checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:12]


def encode_cursor(recorded_at: datetime, entry_id: uuid.UUID) -> str:
    """The position after an entry, opaque to clients. The checksum catches a cursor damaged in transit
    or edited by hand; it is not a signature, and need not be: a cursor only positions a page within a
    query its holder may run anyway, so a forged one reveals nothing more."""
    payload = f"{timestamp(recorded_at)}|{entry_id}"
    raw = f"{payload}|{_checksum(payload)}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if not cursor or len(cursor) > _CURSOR_MAX:
        raise InvalidCursor("the pagination cursor is not valid")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        at, entry_id, check = raw.split("|")
        if check != _checksum(f"{at}|{entry_id}"):
            raise ValueError("checksum")
        return datetime.strptime(at, _TIMESTAMP_FORMAT).replace(tzinfo=UTC), uuid.UUID(entry_id)
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidCursor("the pagination cursor is not valid") from None


def _newest_first(statement: Select[*Ts], cursor: str | None, limit: int) -> Select[*Ts]:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        statement = statement.where(
            or_(
                AuditEntry.recorded_at < at,
                and_(AuditEntry.recorded_at == at, AuditEntry.id < last_id),
            )
        )
    return statement.order_by(AuditEntry.recorded_at.desc(), AuditEntry.id.desc()).limit(limit + 1)


def _next_cursor(rows: Sequence[Row[*tuple[Any, ...]]], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last.recorded_at, last.id)


# -- search and export --------------------------------------------------------------------------------


def search(
    db: Database,
    *,
    subject: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: Outcome | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> EntryPage:
    """Entries matching every given filter, newest first; ``next_cursor`` continues, None at the end.
    Pending entries are included (``seq`` None): a compliance officer must see an access that happened
    a moment ago, sealed or not."""
    where = EntryFilter(subject, actor, action, outcome, since, until)
    statement = _newest_first(where.apply(select(*_COLUMNS)), cursor, limit)
    with db.read() as session:
        rows = session.execute(statement).all()
    return EntryPage([_entry(row) for row in rows[:limit]], _next_cursor(rows, limit))


def count(
    db: Database,
    *,
    subject: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: Outcome | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    where = EntryFilter(subject, actor, action, outcome, since, until)
    statement = where.apply(select(func.count()).select_from(AuditEntry))
    with db.read() as session:
        return int(session.execute(statement).scalar_one())


def iter_export(
    db: Database,
    *,
    subject: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: Outcome | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    batch_size: int = EXPORT_BATCH,
) -> Iterator[Entry]:
    """Matching entries oldest first: sealed entries in chain order (``seq``), then those still pending
    by ``recorded_at``, at most ``limit``.

    Each batch is its own short read transaction. The chain head is fixed when the export starts;
    entries sealed while it runs come in the second part (pending, or sealed since), so an entry is
    neither skipped nor repeated when the sequencer seals it half-way through a download."""
    where = EntryFilter(subject, actor, action, outcome, since, until)
    remaining = limit
    with db.read() as session:
        head = session.execute(select(func.max(AuditEntry.seq))).scalar_one() or 0
    last_seq = 0
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        statement = (
            where.apply(select(*_COLUMNS))
            .where(AuditEntry.seq > last_seq, AuditEntry.seq <= head)
            .order_by(AuditEntry.seq)
            .limit(size)
        )
        with db.read() as session:
            rows = session.execute(statement).all()
        for row in rows:
            yield _entry(row)
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            break
        last_seq = rows[-1].seq
    position: tuple[datetime, uuid.UUID] | None = None
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        statement = where.apply(select(*_COLUMNS)).where(or_(AuditEntry.seq.is_(None), AuditEntry.seq > head))
        if position is not None:
            at, last_id = position
            statement = statement.where(
                or_(
                    AuditEntry.recorded_at > at,
                    and_(AuditEntry.recorded_at == at, AuditEntry.id > last_id),
                )
            )
        statement = statement.order_by(AuditEntry.recorded_at, AuditEntry.id).limit(size)
        with db.read() as session:
            rows = session.execute(statement).all()
        for row in rows:
            yield _entry(row)
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            break
        position = (rows[-1].recorded_at, rows[-1].id)


# -- the access report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessCount:
    department: str | None
    role: str | None
    purpose: str | None
    action: str
    outcome: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "department": self.department,
            "role": self.role,
            "purpose": self.purpose,
            "action": self.action,
            "outcome": self.outcome,
            "count": self.count,
        }


@dataclass(frozen=True)
class AccessReport:
    since: datetime
    until: datetime
    rows: list[AccessCount]

    @property
    def total(self) -> int:
        return sum(row.count for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": timestamp(self.since),
            "until": timestamp(self.until),
            "read_actions": sorted(READ_ACTIONS),
            "total": self.total,
            "rows": [row.to_dict() for row in self.rows],
        }


def access_report(db: Database, since: datetime, until: datetime) -> AccessReport:
    """Who accessed personal data in ``[since, until)``: counts by department, role, purpose, action
    and outcome, largest first. What counts is :data:`REPORT_OUTCOMES_OF_ANY_ACTION` explains."""
    _aware("since", since)
    _aware("until", until)
    keys = (
        AuditEntry.department,
        AuditEntry.role,
        AuditEntry.purpose,
        AuditEntry.action,
        AuditEntry.outcome,
    )
    statement = (
        select(*keys, func.count().label("n"))
        .where(
            AuditEntry.recorded_at >= since,
            AuditEntry.recorded_at < until,
            or_(
                AuditEntry.action.in_(sorted(READ_ACTIONS)),
                AuditEntry.outcome.in_(sorted(REPORT_OUTCOMES_OF_ANY_ACTION)),
            ),
        )
        .group_by(*keys)
    )
    with db.read() as session:
        rows = [
            AccessCount(row.department, row.role, row.purpose, row.action, row.outcome, int(row.n))
            for row in session.execute(statement)
        ]
    # Sorted here: the back ends order NULLs differently, and the report must read the same on both.
    rows.sort(
        key=lambda r: (-r.count, r.department or "", r.role or "", r.purpose or "", r.action, r.outcome)
    )
    return AccessReport(since, until, rows)


# -- a customer's access log --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessEvent:
    """One access to a customer's data as the customer sees it: when, what, and who by department,
    role and purpose — never the member of staff's or the client's id (issue 5: "not staff names")."""

    at: datetime
    action: str
    department: str | None
    role: str | None
    purpose: str | None
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": timestamp(self.at),
            "action": self.action,
            "department": self.department,
            "role": self.role,
            "purpose": self.purpose,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class AccessLogPage:
    items: list[AccessEvent]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [item.to_dict() for item in self.items], "next_cursor": self.next_cursor}


def customer_subjects(db: Database, record_id: uuid.UUID) -> tuple[str, ...]:
    """The subject ids that stand for a signed-in customer: the record they signed in as, the entity
    (customer) it belongs to and every record of that entity. Record ids matter as much as the entity's:
    a read names the records it disclosed, and records outlive an entity that is later merged away."""
    with db.read() as session:
        entity_id = session.execute(
            select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
        ).scalar_one_or_none()
        if entity_id is None:
            return (str(record_id),)
        members = session.execute(
            select(EntityMember.record_id).where(EntityMember.entity_id == entity_id)
        ).scalars()
        return tuple(sorted({str(record_id), str(entity_id), *(str(member) for member in members)}))


def _like_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def about_subjects(subject_ids: Sequence[str]) -> ColumnElement[bool]:
    """Entries naming any of ``subject_ids``: sealed ones through the ``audit_subject`` index (the
    sequencer writes it), pending ones — at most a few hundred milliseconds old — by their subject list,
    matched as whole quoted JSON strings so ``cust-1`` never matches ``cust-10``."""
    ids = sorted(set(subject_ids))
    indexed = AuditEntry.id.in_(select(AuditSubject.entry_id).where(AuditSubject.subject_id.in_(ids)))
    pending = and_(
        AuditEntry.seq.is_(None),
        or_(*(AuditEntry.subjects.like(f'%"{_like_literal(s)}"%', escape="\\") for s in ids)),
    )
    return or_(indexed, pending)


def transparency(
    db: Database, subject_ids: Sequence[str], *, limit: int = 50, cursor: str | None = None
) -> AccessLogPage:
    """Reads of a customer's data by anyone but customers (their own reads they know of), newest first,
    whatever the outcome: a refused attempt on their profile is theirs to see too. The actor's id is not
    even selected, so it cannot leak through a later change to the response."""
    if not subject_ids:
        return AccessLogPage([], None)
    statement = select(
        AuditEntry.id,
        AuditEntry.recorded_at,
        AuditEntry.action,
        AuditEntry.department,
        AuditEntry.role,
        AuditEntry.purpose,
        AuditEntry.outcome,
    ).where(
        about_subjects(subject_ids),
        AuditEntry.action.in_(sorted(READ_ACTIONS)),
        AuditEntry.actor_kind != ActorKind.CUSTOMER.value,
    )
    with db.read() as session:
        rows = session.execute(_newest_first(statement, cursor, limit)).all()
    items = [
        AccessEvent(row.recorded_at, row.action, row.department, row.role, row.purpose, row.outcome)
        for row in rows[:limit]
    ]
    return AccessLogPage(items, _next_cursor(rows, limit))


# -- chain status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointStatus:
    checkpoint: Checkpoint
    signature_valid: bool
    """Signed by a known checkpoint key, over exactly this origin, size, head and time."""
    matches_chain: bool
    """The entry at the checkpoint's ``seq`` still carries the hash the checkpoint signed."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.checkpoint.to_dict(),
            "signed_at": timestamp(self.checkpoint.signed_at),
            "signature_valid": self.signature_valid,
            "matches_chain": self.matches_chain,
        }


@dataclass(frozen=True)
class ChainStatus:
    origin: str
    head_seq: int
    head_hash: str
    head_intact: bool | None
    """The head entry's content still hashes to its stored hash (None: the chain is empty)."""
    pending: int
    oldest_pending_at: datetime | None
    latest_checkpoint: CheckpointStatus | None
    public_keys: dict[str, str] = field(default_factory=dict)

    @property
    def unsigned(self) -> int:
        """Sealed entries after the latest checkpoint: not yet fixed by a signature."""
        signed = self.latest_checkpoint.checkpoint.seq if self.latest_checkpoint is not None else 0
        return max(self.head_seq - signed, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "head_intact": self.head_intact,
            "pending": self.pending,
            "oldest_pending_at": timestamp(self.oldest_pending_at) if self.oldest_pending_at else None,
            "unsigned": self.unsigned,
            "latest_checkpoint": self.latest_checkpoint.to_dict() if self.latest_checkpoint else None,
            "public_keys": dict(self.public_keys),
        }


def _head_intact(head: AuditEntry | None) -> bool | None:
    if head is None:
        return None
    if head.seq is None or head.prev_hash is None or head.hash is None:
        return False
    try:
        return document_hash(document_of(head, head.seq, head.prev_hash)) == head.hash
    except (ValueError, TypeError):
        return False


def chain_status(db: Database, vault: Vault, origin: str) -> ChainStatus:
    """The chain at a glance, in a handful of indexed lookups: head, pending entries, the latest
    checkpoint with its signature checked and its head compared with the chain, and the public keys.
    It re-hashes the head entry only; :func:`cdp.audit.verify.verify_chain` walks everything."""
    with db.read() as session:
        head = session.execute(
            select(AuditEntry).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq.desc()).limit(1)
        ).scalar_one_or_none()
        pending, oldest = session.execute(
            select(func.count(), func.min(AuditEntry.recorded_at)).where(AuditEntry.seq.is_(None))
        ).one()
        keys = AuditSigningKeys(session, vault).public_keys()
        checkpoint = latest_checkpoint(session)
        checkpoint_status: CheckpointStatus | None = None
        if checkpoint is not None:
            key = keys.get(checkpoint.key_id)
            signed_hash = session.execute(
                select(AuditEntry.hash).where(AuditEntry.seq == checkpoint.seq)
            ).scalar_one_or_none()
            checkpoint_status = CheckpointStatus(
                checkpoint,
                signature_valid=key is not None
                and verify_signature(key, checkpoint.message, checkpoint.signature),
                matches_chain=signed_hash == checkpoint.head_hash,
            )
        intact = _head_intact(head)
    return ChainStatus(
        origin=origin,
        head_seq=head.seq if head is not None and head.seq is not None else 0,
        head_hash=head.hash if head is not None and head.hash is not None else GENESIS_HASH,
        head_intact=intact,
        pending=int(pending),
        oldest_pending_at=oldest,
        latest_checkpoint=checkpoint_status,
        public_keys=keys,
    )


@dataclass(frozen=True)
class CheckpointPage:
    checkpoints: list[Checkpoint]
    next_after: int | None
    public_keys: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoints": [{**c.to_dict(), "signed_at": timestamp(c.signed_at)} for c in self.checkpoints],
            "next_after": self.next_after,
            "public_keys": dict(self.public_keys),
        }


def checkpoints(db: Database, vault: Vault, *, after: int = 0, limit: int = 100) -> CheckpointPage:
    """Signed checkpoints with ``seq`` above ``after``, oldest first, and every checkpoint public key
    (retired keys included: their checkpoints stay verifiable)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    with db.read() as session:
        rows = (
            session.execute(
                select(AuditCheckpoint)
                .where(AuditCheckpoint.seq > after)
                .order_by(AuditCheckpoint.seq)
                .limit(limit + 1)
            )
            .scalars()
            .all()
        )
        found = [
            Checkpoint(row.origin, row.seq, row.head_hash, row.signed_at, row.key_id, row.signature)
            for row in rows[:limit]
        ]
        keys = AuditSigningKeys(session, vault).public_keys()
    return CheckpointPage(found, found[-1].seq if len(rows) > limit else None, keys)
