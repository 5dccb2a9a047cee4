"""Purpose-bound reads of the 360° profile and the contact-history timeline.

``read`` is the read path of the design: the access gate decides every field first, only the fields it
allows are decrypted, the golden profile is composed from them (survivorship with provenance), masked
fields are masked, and the response lists every field that was masked or left out with the rule that
did it. No caller decrypts or queries customer data any other way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from cdp.access.gate import AccessDenied, AccessGate, Actor, Disclosure, UnknownPurpose
from cdp.access.masking import mask
from cdp.access.policy import FieldDecision, Mode, RolePolicy
from cdp.audit import AuditEvent, Outcome, record_now
from cdp.canonical import CANONICAL_FIELDS
from cdp.db import Database
from cdp.db.models import EntityMember, Source, SourceRecord
from cdp.errors import CdpError
from cdp.identity.golden import MemberRecord, SurvivorshipRules, golden_profile
from cdp.sources.interactions import InteractionRepository
from cdp.sources.records import DisclosedRecord, disclose_members
from cdp.vault import Vault

CONTENT_KEYS = ("summary", "content", "outcome", "amount", "currency", "attributes")


class ProfileNotFound(CdpError):
    """No such customer — or none this reader may know of (another customer's profile, another
    department's customer): the two are indistinguishable on purpose."""


@dataclass(frozen=True)
class DisclosedValue:
    value: Any
    mode: Mode
    source: str | None = None
    record_id: str | None = None
    strategy: str | None = None
    support: int = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _jsonable(self.value), "mode": self.mode.value}
        if self.source is not None:
            out.update(
                source=self.source, record_id=self.record_id, strategy=self.strategy, support=self.support
            )
        return out


@dataclass(frozen=True)
class MemberSummary:
    record_id: uuid.UUID
    source: str
    line_of_business: str
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_id": str(self.record_id),
            "source": self.source,
            "line_of_business": self.line_of_business,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class ProfileView:
    entity_id: uuid.UUID
    purpose: str
    policy_version: int
    attributes: dict[str, DisclosedValue]
    records: list[MemberSummary]
    redactions: list[FieldDecision]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.entity_id),
            "purpose": self.purpose,
            "policy_version": self.policy_version,
            "attributes": {name: value.to_dict() for name, value in self.attributes.items()},
            "records": [record.to_dict() for record in self.records],
            "redactions": [decision.to_dict() for decision in self.redactions],
        }


@dataclass(frozen=True)
class TimelineItem:
    id: uuid.UUID
    occurred_at: datetime
    channel: str
    direction: str
    kind: str
    department: str
    source: str
    record_id: uuid.UUID
    content: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "occurred_at": self.occurred_at.isoformat(),
            "channel": self.channel,
            "direction": self.direction,
            "kind": self.kind,
            "department": self.department,
            "source": self.source,
            "record_id": str(self.record_id),
        }
        if self.content is not None:
            out["content"] = self.content
        return out


@dataclass(frozen=True)
class TimelineView:
    entity_id: uuid.UUID
    purpose: str
    policy_version: int
    items: list[TimelineItem]
    next_cursor: str | None
    redactions: list[FieldDecision] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.entity_id),
            "purpose": self.purpose,
            "policy_version": self.policy_version,
            "items": [item.to_dict() for item in self.items],
            "next_cursor": self.next_cursor,
            "redactions": [decision.to_dict() for decision in self.redactions],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


Recorder = Callable[[AuditEvent], object]


class ProfileService:
    """Reads are audited: the entry (who, why, which customer and records, which fields) is committed
    before the data is returned, and a refused read is recorded as refused. ``recorder`` exists for the
    benchmark that measures what auditing costs; production code never passes it."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        gate: AccessGate,
        rules: SurvivorshipRules | None = None,
        *,
        recorder: Recorder | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.gate = gate
        self.rules = rules or SurvivorshipRules.default()
        self._record: Recorder = recorder or (lambda event: record_now(db, event))

    @contextmanager
    def _audited_refusals(self, action: str, entity_id: uuid.UUID, purpose: str) -> Iterator[None]:
        try:
            yield
        except UnknownPurpose:
            self._record(
                AuditEvent(
                    action, Outcome.DENIED, None, (str(entity_id),), details={"reason": "unknown_purpose"}
                )
            )
            raise
        except AccessDenied:
            self._record(AuditEvent(action, Outcome.DENIED, purpose, (str(entity_id),)))
            raise
        except ProfileNotFound:
            self._record(AuditEvent(action, Outcome.NOT_FOUND, purpose, (str(entity_id),)))
            raise

    # -- whose profile --------------------------------------------------------------------------------

    def own_entity(self, actor: Actor) -> uuid.UUID:
        """A customer's own profile: the entity their sign-in record belongs to."""
        if actor.customer_record_id is None:
            raise ProfileNotFound("only a signed-in customer has an own profile")
        with self.db.connect() as connection:
            entity_id = self._entity_of(connection, actor.customer_record_id)
        if entity_id is None:
            raise ProfileNotFound("your profile is not available yet")
        return entity_id

    @staticmethod
    def _entity_of(session: Session | Connection, record_id: uuid.UUID) -> uuid.UUID | None:
        return session.execute(
            select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
        ).scalar_one_or_none()

    def _check_scope(
        self, session: Session | Connection, actor: Actor, role: RolePolicy, entity_id: uuid.UUID
    ) -> None:
        if role.self_only:
            assert actor.customer_record_id is not None  # admit() guarantees it
            if self._entity_of(session, actor.customer_record_id) != entity_id:
                raise ProfileNotFound(f"customer {entity_id} does not exist")

    # -- reads ----------------------------------------------------------------------------------------

    def read(self, actor: Actor, entity_id: uuid.UUID, purpose: str) -> ProfileView:
        with self._audited_refusals("profile.read", entity_id, purpose):
            view = self._read(actor, entity_id, purpose)
        self._record(
            AuditEvent(
                "profile.read",
                Outcome.SUCCESS,
                purpose,
                (str(entity_id), *(str(record.record_id) for record in view.records)),
                tuple(view.attributes),
                {"policy_version": view.policy_version, "redacted": len(view.redactions)},
            )
        )
        return view

    def _read(self, actor: Actor, entity_id: uuid.UUID, purpose: str) -> ProfileView:
        disclosure = self.gate.disclose(actor, purpose, entity_id)
        role = disclosure.role
        readable = [name for name in disclosure.disclosed if name in (*CANONICAL_FIELDS, "attributes")]
        with self.db.connect() as connection:
            self._check_scope(connection, actor, role, entity_id)
            members = disclose_members(
                connection,
                self.vault,
                entity_id,
                readable,
                line_of_business=actor.department if role.department_scoped else None,
            )
        if not members:
            raise ProfileNotFound(f"customer {entity_id} does not exist")
        return ProfileView(
            entity_id=entity_id,
            purpose=purpose,
            policy_version=self.gate.policy.version,
            attributes=self._compose(members, disclosure),
            records=[
                MemberSummary(m.id, m.source, m.line_of_business, m.updated_at)
                for m in sorted(members, key=lambda m: (m.source, str(m.id)))
            ],
            redactions=disclosure.redactions,
        )

    def _compose(self, members: list[DisclosedRecord], disclosure: Disclosure) -> dict[str, DisclosedValue]:
        golden = golden_profile(
            [
                MemberRecord(
                    record_id=str(m.id),
                    source=m.source,
                    source_record_id=m.source_record_id,
                    updated_at=m.updated_at,
                    last_activity_at=m.last_activity_at,
                    values={name: value for name, value in m.values.items() if name != "attributes"},
                    quality=m.quality,
                )
                for m in members
            ],
            self.rules,
            alternatives=False,  # only the surviving values are disclosed
        )
        out: dict[str, DisclosedValue] = {}
        for name in CANONICAL_FIELDS:
            chosen = golden.attributes.get(name)
            mode = disclosure.mode(name)
            if chosen is None or mode is Mode.DENIED:
                continue
            value = chosen.value if mode is Mode.CLEAR else mask(name, chosen.value)
            out[name] = DisclosedValue(
                value, mode, chosen.source, chosen.record_id, chosen.strategy, chosen.support
            )
        mode = disclosure.mode("attributes")
        if mode is not Mode.DENIED:
            extra = _extra_attributes(members)
            if extra:
                out["attributes"] = DisclosedValue(
                    extra if mode is Mode.CLEAR else mask("attributes", extra), mode
                )
        return out

    def timeline(
        self,
        actor: Actor,
        entity_id: uuid.UUID,
        purpose: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TimelineView:
        """The customer's contact history across every source, newest first, paginated by cursor."""
        with self._audited_refusals("timeline.read", entity_id, purpose):
            view, records, fields = self._timeline(actor, entity_id, purpose, limit, cursor)
        self._record(
            AuditEvent(
                "timeline.read",
                Outcome.SUCCESS,
                purpose,
                (str(entity_id), *records),
                fields,
                {"policy_version": view.policy_version, "items": len(view.items)},
            )
        )
        return view

    def _timeline(
        self, actor: Actor, entity_id: uuid.UUID, purpose: str, limit: int, cursor: str | None
    ) -> tuple[TimelineView, list[str], tuple[str, ...]]:
        disclosure = self.gate.disclose(actor, purpose, entity_id, ("interactions", "interaction_content"))
        if disclosure.mode("interactions") is Mode.DENIED:
            rule = disclosure.decisions["interactions"].rule
            raise AccessDenied(f"the contact history is not available to this read ({rule})")
        role = disclosure.role
        with_content = disclosure.mode("interaction_content") is Mode.CLEAR
        department = actor.department if role.department_scoped else None
        with self.db.read() as session:
            self._check_scope(session, actor, role, entity_id)
            subjects = _member_subjects(session, entity_id)
            if not subjects or (department is not None and department not in subjects.values()):
                raise ProfileNotFound(f"customer {entity_id} does not exist")
            page = InteractionRepository(session, self.vault).timeline(
                list(subjects), limit=limit, cursor=cursor, with_details=with_content, department=department
            )
            names = {row.id: row.name for row in session.execute(select(Source.id, Source.name))}
        items = [
            TimelineItem(
                id=entry.id,
                occurred_at=entry.occurred_at,
                channel=entry.channel,
                direction=entry.direction,
                kind=entry.kind,
                department=entry.department,
                source=names.get(entry.source_id, "unknown"),
                record_id=entry.record_id,
                content={key: entry.details.get(key) for key in CONTENT_KEYS} if with_content else None,
            )
            for entry in page.entries
        ]
        view = TimelineView(
            entity_id, purpose, self.gate.policy.version, items, page.next_cursor, disclosure.redactions
        )
        fields = ("interactions", "interaction_content") if with_content else ("interactions",)
        return view, sorted({str(item.record_id) for item in items}), fields


def _extra_attributes(members: Iterable[DisclosedRecord]) -> dict[str, dict[str, Any]]:
    """Free-form attributes by source: they mean what each source meant, so they are not merged."""
    extra: dict[str, dict[str, Any]] = {}
    for member in members:
        attributes = member.values.get("attributes")
        if isinstance(attributes, dict) and attributes:
            extra.setdefault(member.source, {}).update(attributes)
    return extra


def _member_subjects(session: Session, entity_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """The entity's subjects (whose interactions make its timeline) and each one's line of business."""
    rows = session.execute(
        select(SourceRecord.subject_id, Source.line_of_business)
        .join(EntityMember, EntityMember.record_id == SourceRecord.id)
        .join(Source, Source.id == SourceRecord.source_id)
        .where(EntityMember.entity_id == entity_id)
    )
    return {row.subject_id: row.line_of_business for row in rows}
