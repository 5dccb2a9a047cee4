"""Purpose-bound customer profile reads over HTTP: the 360° profile and the contact-history timeline.

Every read names a purpose (``?purpose=support``) and goes through the access gate
(:mod:`cdp.access.gate`): role policy, purpose and consent decide each field; only allowed fields are
decrypted; masked or omitted fields are listed in ``redactions`` with the rule that removed them.

* ``/v1/customers/{id}`` and ``/v1/customers/{id}/timeline`` — staff and department services
  (``profiles:read``).
* ``/v1/me`` and ``/v1/me/timeline`` — a signed-in customer's own data (``self:read``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import marshmallow as ma
import orjson
from flask import Response, current_app
from flask.typing import ResponseReturnValue

from api.context import current_platform
from api.errors import PROBLEM_JSON, VALIDATION_ERROR, Problem, ProblemSchema
from api.oauth import Principal, current_principal, require_scope
from api.smorest import Blueprint
from cdp.access.gate import AccessDenied, AccessGate, Actor, UnknownPurpose
from cdp.access.policy import PROFILE_FIELDS, FieldPolicy
from cdp.consent.ledger import ConsentLedger
from cdp.profiles.service import ProfileNotFound, ProfileService
from cdp.sources.interactions import InvalidCursor

blp = Blueprint(
    "profiles",
    __name__,
    url_prefix="/v1",
    description="Customer profiles and contact history, read for a named purpose through the access gate",
)

_SERVICE_KEY = "cdp_profile_service"
_STAFF = [{"oauth2": ["profiles:read"]}]
_SELF = [{"oauth2": ["self:read"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
MAX_PAGE = 200
SELF_PURPOSE = "self_service"


# -- schemas ------------------------------------------------------------------------------------------


def _purpose_field(**kwargs: Any) -> ma.fields.String:
    """The ``purpose`` query parameter. Its values are documented as an enum (the field policy's
    purposes), but an unknown one is still answered by the access gate (400 "Unknown purpose", audited as
    a refused read) rather than by schema validation."""
    return ma.fields.String(
        validate=[ma.validate.Length(1, 40), ma.validate.Regexp(r"^[a-z][a-z_]*$")],
        metadata={
            "description": "Why you read (the purposes your role allows); fields the purpose does not "
            "need are left out.",
            "enum": sorted(FieldPolicy.default().purposes),
        },
        **kwargs,
    )


class ProfileQuerySchema(ma.Schema):
    purpose = _purpose_field(required=True)


class SelfQuerySchema(ma.Schema):
    purpose = _purpose_field(load_default=SELF_PURPOSE)


class _Paging(ma.Schema):
    limit = ma.fields.Integer(
        load_default=50,
        validate=ma.validate.Range(1, MAX_PAGE),
        metadata={"description": f"At most this many interactions (1 to {MAX_PAGE})"},
    )
    cursor = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(1, 200),
        metadata={"description": "`next_cursor` of the previous page"},
    )


class TimelineQuerySchema(ProfileQuerySchema, _Paging):
    pass


class SelfTimelineQuerySchema(SelfQuerySchema, _Paging):
    pass


class RedactionSchema(ma.Schema):
    field = ma.fields.String(metadata={"description": "The attribute"})
    mode = ma.fields.String(metadata={"description": "`masked` or `omitted`"})
    reason = ma.fields.String(metadata={"description": "`role_policy`, `purpose` or `consent`"})
    rule = ma.fields.String(metadata={"description": "The rule that decided it, readable by a person"})


class DisclosedValueSchema(ma.Schema):
    value = ma.fields.Raw(metadata={"description": "The value, or its masked form"})
    mode = ma.fields.String(metadata={"description": "`clear` or `masked`"})
    source = ma.fields.String(metadata={"description": "Source whose record supplied the value"})
    record_id = ma.fields.String(metadata={"description": "That record's id"})
    strategy = ma.fields.String(metadata={"description": "Survivorship strategy that chose it"})
    support = ma.fields.Integer(metadata={"description": "How many member records hold the same value"})


class MemberSchema(ma.Schema):
    record_id = ma.fields.String()
    source = ma.fields.String()
    line_of_business = ma.fields.String()
    updated_at = ma.fields.String()


class ProfileSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "The customer (resolved entity) id"})
    purpose = ma.fields.String()
    policy_version = ma.fields.Integer(metadata={"description": "Version of the field policy applied"})
    attributes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(DisclosedValueSchema),
        metadata={"description": f"Disclosed attributes, among: {', '.join(PROFILE_FIELDS[:-2])}"},
    )
    records = ma.fields.List(ma.fields.Nested(MemberSchema))
    redactions = ma.fields.List(
        ma.fields.Nested(RedactionSchema), metadata={"description": "Every field masked or left out, and why"}
    )


class TimelineItemSchema(ma.Schema):
    id = ma.fields.String()
    occurred_at = ma.fields.String()
    channel = ma.fields.String()
    direction = ma.fields.String()
    kind = ma.fields.String()
    department = ma.fields.String()
    source = ma.fields.String()
    record_id = ma.fields.String()
    content = ma.fields.Dict(
        metadata={"description": "summary, content, outcome, amount, currency, attributes — when allowed"}
    )


class TimelineSchema(ma.Schema):
    id = ma.fields.String()
    purpose = ma.fields.String()
    policy_version = ma.fields.Integer()
    items = ma.fields.List(ma.fields.Nested(TimelineItemSchema))
    next_cursor = ma.fields.String(allow_none=True)
    redactions = ma.fields.List(ma.fields.Nested(RedactionSchema))


# -- helpers ------------------------------------------------------------------------------------------


def _service() -> ProfileService:
    """One service per app and platform: the policy and survivorship rules are parsed once."""
    platform = current_platform()
    cached = current_app.extensions.get(_SERVICE_KEY)
    if isinstance(cached, ProfileService) and cached.db is platform.db and cached.vault is platform.vault:
        return cached
    gate = AccessGate(FieldPolicy.default(), ConsentLedger(platform.db))
    service = ProfileService(platform.db, platform.vault, gate)
    current_app.extensions[_SERVICE_KEY] = service
    return service


def _json(body: dict[str, Any]) -> Response:
    """The view's own JSON (already in the documented shape, JSON types only): the schemas document the
    response, and re-serializing it through them on every read cost more than the policy decision.
    orjson writes it in a sixth of ``jsonify``'s time (5 against 29 µs for a profile), keys sorted
    and newline-terminated as ``jsonify`` does."""
    return current_app.response_class(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE),
        mimetype="application/json",
    )


def actor_of(principal: Principal) -> Actor:
    """The gate's view of the caller. A token must carry exactly one role: deny rather than guess."""
    if len(principal.roles) != 1:
        raise Problem(403, title="Forbidden", detail="The access token must carry exactly one role")
    customer_record: uuid.UUID | None = None
    kind, _, rest = principal.subject.partition(":")
    if kind == "customer":
        try:
            customer_record = uuid.UUID(rest)
        except ValueError:
            raise Problem(403, title="Forbidden", detail="The access token's subject is invalid") from None
    return Actor(principal.subject, principal.roles[0], principal.department, customer_record)


def _customer_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(
            422,
            title="Request validation failed",
            type=VALIDATION_ERROR,
            detail="One or more request fields are invalid; see errors.",
            extensions={"errors": {"path": {"customer_id": ["Not a valid UUID."]}}},
        ) from None


@contextmanager
def _read_problems() -> Iterator[None]:
    """Gate and service refusals as problems; their messages name roles, purposes and ids only."""
    try:
        yield
    except UnknownPurpose as exc:
        raise Problem(400, title="Unknown purpose", detail=str(exc)) from None
    except AccessDenied as exc:
        raise Problem(403, title="Forbidden", detail=str(exc)) from None
    except ProfileNotFound:
        raise Problem(404, title="Not Found", detail="No such customer") from None
    except InvalidCursor:
        raise Problem(400, title="Invalid cursor", detail="The cursor is not one this API issued") from None


_ID_PARAMETER = {
    "in": "path",
    "name": "customer_id",
    "required": True,
    "description": "The customer (resolved entity) id",
    "schema": {"type": "string", "format": "uuid"},
}
_REFUSALS = {
    400: "Unknown purpose or cursor",
    403: "Your role may not read for this purpose",
    404: "No such customer, or none you may read",
}


def _document_refusals(view: Any) -> Any:
    for status, description in _REFUSALS.items():
        view = blp.alt_response(status, description=description, **_PROBLEM)(view)
    return view


# -- views --------------------------------------------------------------------------------------------


@blp.route("/customers/<customer_id>", methods=["GET"], parameters=[_ID_PARAMETER])
@require_scope("profiles:read", "profile.read")
@blp.arguments(ProfileQuerySchema, location="query")
@blp.response(200, ProfileSchema)
@_document_refusals
@blp.doc(security=_STAFF)
def read_customer(query: dict[str, Any], customer_id: str) -> ResponseReturnValue:
    """A customer's 360° profile, filtered field by field for your role and the purpose you name."""
    actor = actor_of(current_principal())
    with _read_problems():
        return _json(_service().read(actor, _customer_id(customer_id), query["purpose"]).to_dict())


@blp.route("/customers/<customer_id>/timeline", methods=["GET"], parameters=[_ID_PARAMETER])
@require_scope("profiles:read", "timeline.read")
@blp.arguments(TimelineQuerySchema, location="query")
@blp.response(200, TimelineSchema)
@_document_refusals
@blp.doc(security=_STAFF)
def read_customer_timeline(query: dict[str, Any], customer_id: str) -> ResponseReturnValue:
    """A customer's contact history across every source, newest first, paginated by cursor."""
    actor = actor_of(current_principal())
    with _read_problems():
        view = _service().timeline(
            actor, _customer_id(customer_id), query["purpose"], limit=query["limit"], cursor=query["cursor"]
        )
        return _json(view.to_dict())


@blp.route("/me", methods=["GET"])
@require_scope("self:read", "profile.read")
@blp.arguments(SelfQuerySchema, location="query")
@blp.response(200, ProfileSchema)
@_document_refusals
@blp.doc(security=_SELF)
def read_self(query: dict[str, Any]) -> ResponseReturnValue:
    """Your own profile, as cdp holds it (customers)."""
    actor = actor_of(current_principal())
    service = _service()
    with _read_problems():
        return _json(service.read(actor, service.own_entity(actor), query["purpose"]).to_dict())


@blp.route("/me/timeline", methods=["GET"])
@require_scope("self:read", "timeline.read")
@blp.arguments(SelfTimelineQuerySchema, location="query")
@blp.response(200, TimelineSchema)
@_document_refusals
@blp.doc(security=_SELF)
def read_self_timeline(query: dict[str, Any]) -> ResponseReturnValue:
    """Your own contact history (customers)."""
    actor = actor_of(current_principal())
    service = _service()
    with _read_problems():
        entity_id = service.own_entity(actor)
        view = service.timeline(
            actor, entity_id, query["purpose"], limit=query["limit"], cursor=query["cursor"]
        )
        return _json(view.to_dict())
