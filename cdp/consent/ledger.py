"""The consent ledger: append-only events, the current state derived from them, and the gate's consent say.

Rules (documented in README "Consent"):

* An event belongs to the source record it arrived through. A customer's state is derived from the events
  of the records their profile (entity) is made of, so a merge combines two records' histories and a split
  gives each side back only its own — consent never travels to another person.
* Per purpose and channel, the most recent event wins (by when it happened; on a tie a withdrawal wins over
  a grant), whichever source it came from. A grant past its ``expires_at``, or followed by an ``expire``,
  is no longer current.
* A purpose on the basis of consent needs a current grant on any of its channels; one on legitimate
  interest holds unless the latest event is a withdrawal (an objection); contract and legal obligation do
  not depend on the customer's say (their events are history only).
* Reads: for a read purpose governed by consent purposes (``read_purposes`` in the catalog), only the
  attributes of governing purposes that currently hold are disclosed; everything else is withheld with the
  rule that withheld it. Withdrawal takes effect on the next read: nothing is cached.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, record
from cdp.audit.canonical import canonical_json, timestamp
from cdp.audit.context import current_scope
from cdp.consent.catalog import ConsentCatalog, ConsentPurpose, LawfulBasis
from cdp.db import Database
from cdp.db.models import ConsentEvent, ConsentPurposeText, EntityMember, SourceRecord, table_of
from cdp.db.types import utcnow
from cdp.errors import CdpError


class InvalidConsent(CdpError):
    """A consent request names an unknown purpose, channel, source or action, or an impossible time; the
    message names the allowed values and never echoes personal data."""


class UnknownSubject(CdpError):
    """The record or customer a consent event is for does not exist."""


class ConsentAction(StrEnum):
    GRANT = "grant"
    WITHDRAW = "withdraw"
    EXPIRE = "expire"


class Status(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    NONE = "none"
    """No event yet."""


_ACTION_RANK = {ConsentAction.GRANT.value: 0, ConsentAction.EXPIRE.value: 1, ConsentAction.WITHDRAW.value: 2}
_EVENTS = table_of(ConsentEvent)
_TEXTS_SYNCED = "cdp_consent_texts_synced"


@dataclass(frozen=True)
class RecordedEvent:
    id: uuid.UUID
    record_id: uuid.UUID
    purpose: str
    channel: str
    action: str
    purpose_version: int
    source: str
    occurred_at: datetime
    recorded_at: datetime
    expires_at: datetime | None
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "record_id": str(self.record_id),
            "purpose": self.purpose,
            "channel": self.channel,
            "action": self.action,
            "purpose_version": self.purpose_version,
            "source": self.source,
            "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "actor": self.actor,
        }


@dataclass(frozen=True)
class ChannelState:
    channel: str
    status: Status
    since: datetime | None
    expires_at: datetime | None
    purpose_version: int | None
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "status": self.status.value,
            "since": self.since.isoformat() if self.since else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "purpose_version": self.purpose_version,
            "source": self.source,
        }


@dataclass(frozen=True)
class PurposeState:
    purpose: str
    lawful_basis: LawfulBasis
    holds: bool
    """Whether the purpose may be used for this customer now."""
    channels: tuple[ChannelState, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "lawful_basis": self.lawful_basis.value,
            "holds": self.holds,
            "channels": [channel.to_dict() for channel in self.channels],
        }


@dataclass(frozen=True)
class PurposeStanding:
    """Whether a purpose holds, for all customers: ``listed`` are the holders of a purpose that needs a
    grant, or the objectors to one that does not."""

    purpose: str
    needs_grant: bool
    listed: frozenset[uuid.UUID]

    def holds(self, entity_id: uuid.UUID) -> bool:
        return (entity_id in self.listed) == self.needs_grant


def event_of(row: Any) -> RecordedEvent:
    """A :class:`RecordedEvent` from a ``consent_event`` row (ORM object or Core row)."""
    return RecordedEvent(
        row.id,
        row.record_id,
        row.purpose,
        row.channel,
        row.action,
        row.purpose_version,
        row.source,
        row.occurred_at,
        row.recorded_at,
        row.expires_at,
        row.actor,
    )


def derive(
    catalog: ConsentCatalog, events: Iterable[RecordedEvent], now: datetime
) -> dict[str, PurposeState]:
    """The current state of every catalog purpose from a customer's events (see the module rules)."""
    latest: dict[tuple[str, str], RecordedEvent] = {}
    for event in events:
        key = (event.purpose, event.channel)
        current = latest.get(key)
        if current is None or (event.occurred_at, _ACTION_RANK[event.action]) > (
            current.occurred_at,
            _ACTION_RANK[current.action],
        ):
            latest[key] = event
    states: dict[str, PurposeState] = {}
    for purpose in catalog.purposes.values():
        channels = []
        for channel in purpose.channels:
            channels.append(_channel_state(channel, latest.get((purpose.name, channel)), now))
        states[purpose.name] = PurposeState(
            purpose.name, purpose.lawful_basis, _holds(purpose, channels), tuple(channels)
        )
    return states


def _channel_state(channel: str, event: RecordedEvent | None, now: datetime) -> ChannelState:
    if event is None:
        return ChannelState(channel, Status.NONE, None, None, None, None)
    if event.action == ConsentAction.GRANT.value:
        if event.expires_at is not None and event.expires_at <= now:
            status = Status.EXPIRED
        else:
            status = Status.GRANTED
    elif event.action == ConsentAction.EXPIRE.value:
        status = Status.EXPIRED
    else:
        status = Status.WITHDRAWN
    return ChannelState(
        channel, status, event.occurred_at, event.expires_at, event.purpose_version, event.source
    )


def _holds(purpose: ConsentPurpose, channels: list[ChannelState]) -> bool:
    if purpose.lawful_basis is LawfulBasis.CONSENT:
        return any(channel.status is Status.GRANTED for channel in channels)
    if purpose.lawful_basis is LawfulBasis.LEGITIMATE_INTEREST:
        return not any(channel.status is Status.WITHDRAWN for channel in channels)
    return True


class ConsentLedger:
    """Records consent events and answers what holds now. Also the access gate's consent check."""

    def __init__(self, db: Database, catalog: ConsentCatalog | None = None) -> None:
        self.db = db
        self.catalog = catalog or ConsentCatalog.default()

    # -- texts ----------------------------------------------------------------------------------------

    def sync_texts(self, session: Session) -> None:
        """Keep every version of every text: insert the catalog's current ones that are not stored yet.
        The same version with another text is refused — the customer would have agreed to words that
        can no longer be shown."""
        stored = {
            (row.purpose, row.version): row.text_hash
            for row in session.execute(
                select(ConsentPurposeText.purpose, ConsentPurposeText.version, ConsentPurposeText.text_hash)
            )
        }
        for purpose in self.catalog.purposes.values():
            key = (purpose.name, purpose.text_version)
            if key not in stored:
                session.add(
                    ConsentPurposeText(
                        purpose=purpose.name,
                        version=purpose.text_version,
                        lawful_basis=purpose.lawful_basis.value,
                        text=purpose.text,
                        text_hash=purpose.text_hash,
                        created_at=utcnow(),
                    )
                )
            elif stored[key] != purpose.text_hash:
                raise InvalidConsent(
                    f"purposes.{purpose.name}: its text changed but text_version is still "
                    f"{purpose.text_version}; give the new text a new version"
                )
        session.flush()

    # -- writing --------------------------------------------------------------------------------------

    def validate(self, purpose: str, channel: str, action: str, source: str) -> ConsentPurpose:
        found = self.catalog.purpose(purpose)
        if found is None:
            raise InvalidConsent(f"unknown purpose; purposes: {', '.join(sorted(self.catalog.purposes))}")
        if channel not in found.channels:
            raise InvalidConsent(f"purpose {purpose} takes channel(s): {', '.join(found.channels)}")
        if action not in {a.value for a in ConsentAction}:
            raise InvalidConsent(f"unknown action; actions: {', '.join(a.value for a in ConsentAction)}")
        if source not in self.catalog.sources:
            raise InvalidConsent(f"unknown source; sources: {', '.join(self.catalog.sources)}")
        return found

    def record(
        self,
        session: Session,
        record_id: uuid.UUID,
        purpose: str,
        channel: str,
        action: str,
        source: str,
        *,
        occurred_at: datetime | None = None,
        expires_at: datetime | None = None,
        actor: str = "system:cdp",
    ) -> RecordedEvent:
        """Append one event in ``session``'s transaction, audited in the same transaction."""
        found = self.validate(purpose, channel, action, source)
        now = utcnow()
        occurred = occurred_at or now
        if occurred.tzinfo is None or (expires_at is not None and expires_at.tzinfo is None):
            raise InvalidConsent("times must carry a time zone")
        if occurred > now:
            raise InvalidConsent("occurred_at is in the future")
        if expires_at is not None and (action != ConsentAction.GRANT.value or expires_at <= occurred):
            raise InvalidConsent("expires_at applies to a grant and must be after occurred_at")
        if session.get(SourceRecord, record_id) is None:
            raise UnknownSubject("no such record")
        if not session.info.get(_TEXTS_SYNCED):  # once per unit of work (an ingest chunk records many)
            self.sync_texts(session)
            session.info[_TEXTS_SYNCED] = True
        scope = current_scope()
        request_id = scope.request_id if scope is not None else None
        evidence = canonical_json(
            {
                "record_id": str(record_id),
                "purpose": purpose,
                "channel": channel,
                "action": action,
                "source": source,
                "occurred_at": timestamp(occurred),
                "expires_at": timestamp(expires_at) if expires_at else None,
                "text_hash": found.text_hash,
                "request_id": request_id,
            }
        )
        event = RecordedEvent(
            uuid.uuid4(),
            record_id,
            purpose,
            channel,
            action,
            found.text_version,
            source,
            occurred,
            now,
            expires_at,
            actor,
        )
        session.execute(
            insert(_EVENTS),
            {
                "id": event.id,
                "record_id": record_id,
                "purpose": purpose,
                "channel": channel,
                "action": action,
                "purpose_version": found.text_version,
                "source": source,
                "occurred_at": occurred,
                "recorded_at": now,
                "expires_at": expires_at,
                "evidence_hash": hashlib.sha256(evidence.encode("ascii")).hexdigest(),
                "policy_version": self.catalog.version,
                "actor": actor,
            },
        )
        entity = _entity_of(session, record_id)
        record(
            session,
            AuditEvent(
                "consent.record",
                subjects=(str(record_id), *((str(entity),) if entity else ())),
                details={
                    "event_id": str(event.id),
                    "purpose": purpose,
                    "channel": channel,
                    "action": action,
                    "source": source,
                    "purpose_version": found.text_version,
                },
            ),
        )
        return event

    # -- reading --------------------------------------------------------------------------------------

    def events_of_entity(self, target: Session | Connection, entity_id: uuid.UUID) -> list[RecordedEvent]:
        rows = target.execute(
            select(ConsentEvent)
            .join(EntityMember, EntityMember.record_id == ConsentEvent.record_id)
            .where(EntityMember.entity_id == entity_id)
            .order_by(ConsentEvent.occurred_at, ConsentEvent.recorded_at)
        )
        return [event_of(row) for row in (rows.scalars() if isinstance(target, Session) else rows)]

    def state(self, entity_id: uuid.UUID, *, now: datetime | None = None) -> dict[str, PurposeState]:
        with self.db.connect() as connection:
            return derive(self.catalog, self.events_of_entity(connection, entity_id), now or utcnow())

    def history(self, entity_id: uuid.UUID) -> list[RecordedEvent]:
        with self.db.connect() as connection:
            return self.events_of_entity(connection, entity_id)

    def counts(self, *, now: datetime | None = None) -> dict[str, dict[str, int]]:
        """Per purpose: how many customers it holds for, and how many have granted, withdrawn or let it
        expire on at least one channel. Customers without any event count only where the purpose needs
        no grant."""
        moment = now or utcnow()
        with self.db.connect() as connection:
            rows = connection.execute(
                select(EntityMember.entity_id.label("entity_id"), _EVENTS).join(
                    EntityMember, EntityMember.record_id == _EVENTS.c.record_id
                )
            ).all()
            customers = connection.execute(
                select(func.count(func.distinct(EntityMember.entity_id)))
            ).scalar_one()
        by_entity: dict[uuid.UUID, list[RecordedEvent]] = {}
        for row in rows:
            by_entity.setdefault(row.entity_id, []).append(event_of(row))
        out = {
            name: {"holds": 0, "granted": 0, "withdrawn": 0, "expired": 0} for name in self.catalog.purposes
        }
        for events in by_entity.values():
            for name, state in derive(self.catalog, events, moment).items():
                statuses = {channel.status for channel in state.channels}
                out[name]["holds"] += int(state.holds)
                for status in (Status.GRANTED, Status.WITHDRAWN, Status.EXPIRED):
                    out[name][status.value] += int(status in statuses)
        silent = customers - len(by_entity)
        for name, purpose in self.catalog.purposes.items():
            if not purpose.needs_grant:
                out[name]["holds"] += silent
        return out

    def standing(self, target: Connection, purpose: str, *, now: datetime | None = None) -> PurposeStanding:
        """Who the purpose holds for now, for every customer at once (analytics asks this of millions).

        Only this purpose's events are read. A purpose that needs a grant holds for the customers listed
        (everyone else has never granted it); any other purpose holds for everyone but the customers
        listed (those who objected)."""
        found = self.catalog.purposes.get(purpose)
        if found is None:
            raise InvalidConsent(f"unknown purpose {purpose!r}")
        moment = now or utcnow()
        rows = target.execute(
            select(EntityMember.entity_id.label("entity_id"), _EVENTS)
            .join(EntityMember, EntityMember.record_id == _EVENTS.c.record_id)
            .where(_EVENTS.c.purpose == purpose)
        ).all()
        by_entity: dict[uuid.UUID, list[RecordedEvent]] = {}
        for row in rows:
            by_entity.setdefault(row.entity_id, []).append(event_of(row))
        listed: set[uuid.UUID] = set()
        for entity_id, events in by_entity.items():
            latest: dict[str, RecordedEvent] = {}
            for event in events:
                current = latest.get(event.channel)
                if current is None or (event.occurred_at, _ACTION_RANK[event.action]) > (
                    current.occurred_at,
                    _ACTION_RANK[current.action],
                ):
                    latest[event.channel] = event
            channels = [_channel_state(c, latest.get(c), moment) for c in found.channels]
            if _holds(found, channels) == found.needs_grant:
                listed.add(entity_id)
        return PurposeStanding(purpose, found.needs_grant, frozenset(listed))

    # -- the gate's consent check ---------------------------------------------------------------------

    def withheld(self, entity_id: uuid.UUID, purpose: str, fields: Collection[str]) -> Mapping[str, str]:
        governing = self.catalog.governing(purpose)
        if not governing:
            return {}
        with self.db.connect() as connection:
            states = derive(self.catalog, self.events_of_entity(connection, entity_id), utcnow())
        allowed: set[str] = set()
        refused: list[str] = []
        for consent in governing:
            if states[consent.name].holds:
                allowed.update(consent.attributes)
            else:
                refused.append(consent.name)
        if refused:
            rule = "no current consent for " + ", ".join(refused)
        else:
            rule = f"not needed by the consented purposes of {purpose}"
        return {field: rule for field in fields if field not in allowed}


def _entity_of(session: Session, record_id: uuid.UUID) -> uuid.UUID | None:
    return session.execute(
        select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
    ).scalar_one_or_none()


def entity_records(target: Session | Connection, entity_id: uuid.UUID) -> list[uuid.UUID]:
    """The customer's member records, most recently updated first (the default record a consent given
    to staff is attached to); empty for an unknown customer."""
    return list(
        target.execute(
            select(SourceRecord.id)
            .join(EntityMember, EntityMember.record_id == SourceRecord.id)
            .where(EntityMember.entity_id == entity_id)
            .order_by(SourceRecord.updated_at.desc(), SourceRecord.id)
        ).scalars()
    )
