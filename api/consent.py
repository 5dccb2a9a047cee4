"""Consent over HTTP: staff record what a customer said, customers manage their own say.

* ``/v1/consent/purposes``, ``/v1/customers/{id}/consents`` and ``/v1/consents/counts``
  (``consent:manage``: the DPO) — the catalog, one customer's state and history, recording an event on a
  customer's behalf (a call, a letter, a paper form), and per-purpose counts.
* ``/v1/me/consents`` (``self:read`` to look, ``self:write`` to change) — the privacy center: a customer's
  own state and history with the texts they agree to, and their grants and withdrawals.

The ledger is append-only: an event is never updated or deleted, so these paths take GET and POST only
(anything else is 405). A change of mind is a new event; the state is derived from all of them. Each event
is audited (``consent.record``) in the transaction that appends it; reads record ``consent.read`` with the
customer and record ids they reveal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.context import current_platform
from api.errors import PROBLEM_JSON, VALIDATION_ERROR, Problem, ProblemSchema
from api.oauth import current_principal, require_scope
from api.smorest import Blueprint
from cdp.audit import AuditEvent, record_now
from cdp.consent.catalog import ConsentCatalog
from cdp.consent.ledger import (
    ConsentAction,
    ConsentLedger,
    InvalidConsent,
    RecordedEvent,
    UnknownSubject,
    entity_records,
)
from cdp.db.models import EntityMember
from cdp.db.types import utcnow

blp = Blueprint(
    "consent",
    __name__,
    url_prefix="/v1",
    description="Consent: the purposes catalog, customers' append-only consent events and what holds now",
)

CATALOG = ConsentCatalog.default()
STAFF_SOURCE = "call_centre"
SELF_SOURCE = "privacy_center"
_LEDGER_KEY = "cdp_consent_ledger"
_MANAGE = [{"oauth2": ["consent:manage"]}]
_SELF_READ = [{"oauth2": ["self:read"]}]
_SELF_WRITE = [{"oauth2": ["self:write"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
_TIME = {"format": "date-time"}


# -- schemas ------------------------------------------------------------------------------------------


class _EventRequest(ma.Schema):
    """What every consent event names; the channel is checked against the purpose's own channels."""

    purpose = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(sorted(CATALOG.purposes)),
        metadata={"description": f"A purpose of the catalog: {', '.join(sorted(CATALOG.purposes))}"},
    )
    channel = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(CATALOG.channels),
        metadata={"description": "One of the purpose's channels (see `/v1/consent/purposes`)"},
    )

    @ma.validates_schema
    def _channel_of_purpose(self, data: dict[str, Any], **kwargs: Any) -> None:
        purpose = CATALOG.purpose(data.get("purpose", ""))
        if purpose is not None and data.get("channel") not in purpose.channels:
            raise ma.ValidationError(
                f"Purpose {purpose.name} takes channel(s): {', '.join(purpose.channels)}.",
                field_name="channel",
            )


class StaffEventSchema(_EventRequest):
    action = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf([a.value for a in ConsentAction]),
        metadata={"description": "`grant`, `withdraw` or `expire`"},
    )
    source = ma.fields.String(
        load_default=STAFF_SOURCE,
        validate=ma.validate.OneOf(CATALOG.sources),
        metadata={"description": f"How the customer said it: {', '.join(CATALOG.sources)}"},
    )
    occurred_at = ma.fields.AwareDateTime(
        load_default=None,
        metadata={"description": "When the customer said it (ISO-8601 with a time zone; default: now)"},
    )
    expires_at = ma.fields.AwareDateTime(
        load_default=None,
        metadata={"description": "A grant's end (ISO-8601 with a time zone), after `occurred_at`"},
    )
    record_id = ma.fields.UUID(
        load_default=None,
        metadata={
            "description": "The member record the customer spoke through (default: the customer's most "
            "recently updated record); the event stays with that record through merges and splits"
        },
    )

    @ma.validates_schema
    def _times(self, data: dict[str, Any], **kwargs: Any) -> None:
        now = utcnow()
        occurred: datetime | None = data.get("occurred_at")
        expires: datetime | None = data.get("expires_at")
        if occurred is not None and occurred > now:
            raise ma.ValidationError("Must not be in the future.", field_name="occurred_at")
        if expires is None:
            return
        if data.get("action") != ConsentAction.GRANT.value:
            raise ma.ValidationError("Applies to a grant only.", field_name="expires_at")
        if expires <= (occurred or now):
            raise ma.ValidationError("Must be later than occurred_at.", field_name="expires_at")


class SelfEventSchema(_EventRequest):
    action = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf([ConsentAction.GRANT.value, ConsentAction.WITHDRAW.value]),
        metadata={"description": "`grant` or `withdraw`; it takes effect now"},
    )


class ConsentEventSchema(ma.Schema):
    id = ma.fields.String()
    record_id = ma.fields.String(metadata={"description": "The member record the event came through"})
    purpose = ma.fields.String()
    channel = ma.fields.String()
    action = ma.fields.String(metadata={"description": "`grant`, `withdraw` or `expire`"})
    purpose_version = ma.fields.Integer(metadata={"description": "Version of the text the customer saw"})
    source = ma.fields.String()
    occurred_at = ma.fields.String(metadata=_TIME)
    recorded_at = ma.fields.String(metadata=_TIME)
    expires_at = ma.fields.String(allow_none=True, metadata=_TIME)
    actor = ma.fields.String(
        metadata={"description": "Who recorded it: a client id, `user:<id>` or `customer:<record id>`"}
    )


class OwnEventSchema(ConsentEventSchema):
    class Meta:
        exclude = ("actor",)


class ChannelStateSchema(ma.Schema):
    channel = ma.fields.String()
    status = ma.fields.String(metadata={"description": "`granted`, `withdrawn`, `expired` or `none`"})
    since = ma.fields.String(allow_none=True, metadata=_TIME)
    expires_at = ma.fields.String(allow_none=True, metadata=_TIME)
    purpose_version = ma.fields.Integer(allow_none=True)
    source = ma.fields.String(allow_none=True)


class PurposeStateSchema(ma.Schema):
    purpose = ma.fields.String()
    lawful_basis = ma.fields.String()
    holds = ma.fields.Boolean(
        metadata={"description": "Whether the purpose may be used for the customer now"}
    )
    channels = ma.fields.List(ma.fields.Nested(ChannelStateSchema))


class PurposeSchema(ma.Schema):
    name = ma.fields.String()
    lawful_basis = ma.fields.String(
        metadata={"description": "`consent`, `contract`, `legal_obligation` or `legitimate_interest`"}
    )
    description = ma.fields.String()
    text_version = ma.fields.Integer()
    text = ma.fields.String(metadata={"description": "What the customer is shown and agrees to"})
    channels = ma.fields.List(ma.fields.String())
    read_purposes = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "Access-policy purposes whose reads this consent governs"},
    )
    attributes = ma.fields.List(
        ma.fields.String(), metadata={"description": "Profile attributes a holding consent discloses"}
    )


class CatalogSchema(ma.Schema):
    version = ma.fields.Integer()
    channels = ma.fields.List(ma.fields.String())
    sources = ma.fields.List(ma.fields.String())
    purposes = ma.fields.List(ma.fields.Nested(PurposeSchema))


class CustomerConsentsSchema(ma.Schema):
    customer_id = ma.fields.String()
    state = ma.fields.List(ma.fields.Nested(PurposeStateSchema), metadata={"description": "Every purpose"})
    history = ma.fields.List(ma.fields.Nested(ConsentEventSchema), metadata={"description": "Oldest first"})


class OwnConsentsSchema(ma.Schema):
    state = ma.fields.List(ma.fields.Nested(PurposeStateSchema))
    history = ma.fields.List(ma.fields.Nested(OwnEventSchema), metadata={"description": "Oldest first"})
    purposes = ma.fields.List(ma.fields.Nested(PurposeSchema), metadata={"description": "What each means"})


class PurposeCountSchema(ma.Schema):
    purpose = ma.fields.String()
    lawful_basis = ma.fields.String()
    holds = ma.fields.Integer(metadata={"description": "Customers the purpose may be used for now"})
    granted = ma.fields.Integer(metadata={"description": "Customers with a current grant on a channel"})
    withdrawn = ma.fields.Integer(metadata={"description": "Customers who withdrew on a channel"})
    expired = ma.fields.Integer(metadata={"description": "Customers whose grant expired on a channel"})


class CountsSchema(ma.Schema):
    purposes = ma.fields.List(ma.fields.Nested(PurposeCountSchema))


# -- helpers ------------------------------------------------------------------------------------------


def _ledger() -> ConsentLedger:
    """One ledger per app and platform: the catalog is parsed once."""
    platform = current_platform()
    cached = current_app.extensions.get(_LEDGER_KEY)
    if isinstance(cached, ConsentLedger) and cached.db is platform.db:
        return cached
    ledger = ConsentLedger(platform.db, CATALOG)
    current_app.extensions[_LEDGER_KEY] = ledger
    return ledger


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        title="Request validation failed",
        type=VALIDATION_ERROR,
        detail="One or more request fields are invalid; see errors.",
        extensions={"errors": {field.partition(".")[0]: {field.partition(".")[2]: [message]}}},
    )


def _customer_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _invalid("path.customer_id", "Not a valid UUID.") from None


def _not_found() -> Problem:
    return Problem(404, title="Not Found", detail="No such customer")


@contextmanager
def _ledger_problems() -> Iterator[None]:
    """The ledger's refusals as problems; its messages name purposes, channels and sources only."""
    try:
        yield
    except InvalidConsent as exc:
        raise _invalid("json._schema", str(exc)) from None
    except UnknownSubject:
        raise _not_found() from None


def _members(session: Session, customer_id: uuid.UUID) -> list[uuid.UUID]:
    """The customer's member records, most recently updated first; 404 when there is no such customer."""
    members = entity_records(session, customer_id)
    if not members:
        raise _not_found()
    return members


def _own_record() -> uuid.UUID:
    record_id = current_principal().customer_record_id
    if record_id is None:
        raise Problem(403, title="Forbidden", detail="Only a signed-in customer has own consents")
    return record_id


def _own_entity(record_id: uuid.UUID) -> uuid.UUID:
    with current_platform().db.read() as session:
        entity_id = session.execute(
            select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
        ).scalar_one_or_none()
    if entity_id is None:
        raise Problem(404, title="Not Found", detail="Your profile is not available yet")
    return entity_id


def _view(ledger: ConsentLedger, entity_id: uuid.UUID) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    state = [purpose.to_dict() for purpose in ledger.state(entity_id).values()]
    history = [event.to_dict() for event in ledger.history(entity_id)]
    return state, history


def _audit_read(entity_id: uuid.UUID, events: int) -> None:
    """Record the read with the ids it reveals, replacing require_scope's bare entry."""
    platform = current_platform()
    with platform.db.read() as session:
        records = entity_records(session, entity_id)
    record_now(
        platform.db,
        AuditEvent(
            "consent.read",
            subjects=(str(entity_id), *(str(r) for r in records)),
            details={"events": events},
        ),
    )


def _append(
    record_id: uuid.UUID | None, body: dict[str, Any], source: str, *, customer_id: uuid.UUID | None = None
) -> RecordedEvent:
    """Append one event through ``record_id``; for a customer, it must be one of their records, and
    without one it is their most recently updated record (the likeliest to be the one they spoke to)."""
    ledger = _ledger()
    with _ledger_problems(), current_platform().db.transaction() as session:
        if customer_id is not None:
            members = _members(session, customer_id)
            if record_id is None:
                record_id = members[0]
            elif record_id not in members:
                raise _invalid("json.record_id", "Must be one of the customer's records.")
        if record_id is None:
            raise _not_found()
        return ledger.record(
            session,
            record_id,
            body["purpose"],
            body["channel"],
            body["action"],
            source,
            occurred_at=body.get("occurred_at"),
            expires_at=body.get("expires_at"),
            actor=current_principal().subject,
        )


_ID_PARAMETER = {
    "in": "path",
    "name": "customer_id",
    "required": True,
    "description": "The customer (resolved entity) id",
    "schema": {"type": "string", "format": "uuid"},
}


# -- staff views --------------------------------------------------------------------------------------


@blp.route("/consent/purposes", methods=["GET"])
@require_scope("consent:manage", "consent.read")
@blp.response(200, CatalogSchema)
@blp.doc(security=_MANAGE)
def purposes() -> ResponseReturnValue:
    """The consent purposes catalog: lawful basis, the text customers see, channels and what each governs."""
    return {
        "version": CATALOG.version,
        "channels": list(CATALOG.channels),
        "sources": list(CATALOG.sources),
        "purposes": [purpose.to_dict() for purpose in CATALOG.purposes.values()],
    }


@blp.route("/customers/<customer_id>/consents", methods=["POST"], parameters=[_ID_PARAMETER])
@require_scope("consent:manage", "consent.record")
@blp.arguments(StaffEventSchema)
@blp.response(201, ConsentEventSchema)
@blp.alt_response(404, description="No such customer", **_PROBLEM)
@blp.doc(security=_MANAGE)
def record_consent(body: dict[str, Any], customer_id: str) -> ResponseReturnValue:
    """Record what a customer said (a grant, a withdrawal or an expiry) on their behalf.

    The event is appended, never replacing an earlier one, and takes effect on the next read.
    """
    customer = _customer_id(customer_id)
    return _append(body["record_id"], body, body["source"], customer_id=customer).to_dict()


@blp.route("/customers/<customer_id>/consents", methods=["GET"], parameters=[_ID_PARAMETER])
@require_scope("consent:manage", "consent.read")
@blp.response(200, CustomerConsentsSchema)
@blp.alt_response(404, description="No such customer", **_PROBLEM)
@blp.doc(security=_MANAGE)
def customer_consents(customer_id: str) -> ResponseReturnValue:
    """A customer's consent state for every purpose, and every event it derives from."""
    customer = _customer_id(customer_id)
    with current_platform().db.read() as session:
        _members(session, customer)
    state, history = _view(_ledger(), customer)
    _audit_read(customer, len(history))
    return {"customer_id": str(customer), "state": state, "history": history}


@blp.route("/consents/counts", methods=["GET"])
@require_scope("consent:manage", "consent.counts")
@blp.response(200, CountsSchema)
@blp.doc(security=_MANAGE)
def consent_counts() -> ResponseReturnValue:
    """Per purpose: how many customers it holds for, and how many granted, withdrew or let it expire."""
    counts = _ledger().counts()
    return {
        "purposes": [
            {"purpose": name, "lawful_basis": CATALOG.purposes[name].lawful_basis.value, **values}
            for name, values in counts.items()
        ]
    }


# -- self-service views -------------------------------------------------------------------------------


@blp.route("/me/consents", methods=["GET"])
@require_scope("self:read", "consent.read")
@blp.response(200, OwnConsentsSchema)
@blp.alt_response(403, description="Only a signed-in customer has own consents", **_PROBLEM)
@blp.alt_response(404, description="Your profile is not available yet", **_PROBLEM)
@blp.doc(security=_SELF_READ)
def own_consents() -> ResponseReturnValue:
    """Your consents (customers): what holds now, every change you or we recorded, and what each means."""
    entity_id = _own_entity(_own_record())
    state, history = _view(_ledger(), entity_id)
    _audit_read(entity_id, len(history))
    return {
        "state": state,
        "history": history,
        "purposes": [purpose.to_dict() for purpose in CATALOG.purposes.values()],
    }


@blp.route("/me/consents", methods=["POST"])
@require_scope("self:write", "consent.record")
@blp.arguments(SelfEventSchema)
@blp.response(201, OwnEventSchema)
@blp.alt_response(403, description="Only a signed-in customer has own consents", **_PROBLEM)
@blp.alt_response(404, description="Your profile is not available yet", **_PROBLEM)
@blp.doc(security=_SELF_WRITE)
def change_own_consent(body: dict[str, Any]) -> ResponseReturnValue:
    """Grant or withdraw a consent of yours (customers); it takes effect now."""
    return _append(_own_record(), body, SELF_SOURCE).to_dict()
