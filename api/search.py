"""Customer search over HTTP: find customers by an exact email, phone number or name.

``POST /v1/customers/search`` takes the lookup in a JSON body (never in the URL, where it would reach
access logs, browser history and Referer headers) and answers with customer ids, which kinds of key
matched, and the sources holding each customer's records — no values. Opening a customer is a separate,
purpose-bound profile read (:mod:`api.profiles`).

The lookup goes through the blind indexes only (:mod:`cdp.profiles.search`). A department agent finds
only customers their own department holds, as in profile reads. The audit entry names the customers found
and which kinds of key were searched, never what was searched for.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import marshmallow as ma
from flask.typing import ResponseReturnValue

from api.context import current_platform
from api.errors import PROBLEM_JSON, Problem, ProblemSchema
from api.oauth import current_principal, require_scope
from api.paths import invalid
from api.profiles import actor_of
from api.smorest import Blueprint
from cdp.access.policy import FieldPolicy
from cdp.audit import AuditEvent, record_now
from cdp.profiles.search import MAX_INPUT, MAX_RESULTS, CustomerSearch, InvalidSearch, SearchQuery

blp = Blueprint(
    "search",
    __name__,
    url_prefix="/v1",
    description="Find customers by exact email, phone or name through blind indexes (ids only, no values)",
)

_STAFF = [{"oauth2": ["profiles:read"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}


def _text(description: str, maximum: int = MAX_INPUT) -> ma.fields.String:
    return ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(1, maximum),
        metadata={"description": description},
    )


class SearchSchema(ma.Schema):
    """Exactly one kind of lookup: ``email``, ``phone`` (with ``region``), or ``last_name`` (with an
    optional ``first_name``)."""

    email = _text("An email address, matched as ingestion matches it (case, plus tags and Gmail dots)")
    phone = _text("A phone number in any format; national formats are read in `region`", 64)
    region = _text("Two-letter country code for a national phone number (default `GB`)", 2)
    first_name = _text("First name (with `last_name`), matched on its folded forms", 120)
    last_name = _text("Last name, matched on its folded and transliterated forms", 120)

    @ma.validates_schema
    def _one_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        kinds = [
            kind
            for kind, present in (
                ("email", data.get("email")),
                ("phone", data.get("phone")),
                ("name", data.get("first_name") or data.get("last_name")),
            )
            if present
        ]
        if not kinds:
            raise ma.ValidationError("Give an email, a phone number or a last name.", field_name="_schema")
        if len(kinds) > 1:
            raise ma.ValidationError("Search by one kind of key at a time.", field_name="_schema")
        if data.get("region") and not data.get("phone"):
            raise ma.ValidationError("A region goes with a phone number.", field_name="region")
        if data.get("first_name") and not data.get("last_name"):
            raise ma.ValidationError(
                "A first name alone is too broad: add the last name.", field_name="last_name"
            )


class SearchHitSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "The customer (resolved entity) id"})
    matched = ma.fields.List(
        ma.fields.String(), metadata={"description": "Kinds of key that matched: email, phone, first_name…"}
    )
    records = ma.fields.Integer(metadata={"description": "Number of the customer's records"})
    sources = ma.fields.List(ma.fields.String(), metadata={"description": "Sources holding those records"})
    lines_of_business = ma.fields.List(ma.fields.String())


class SearchResultSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SearchHitSchema))
    searched = ma.fields.List(ma.fields.String(), metadata={"description": "Kinds of key searched"})
    count = ma.fields.Integer()
    capped = ma.fields.Boolean(metadata={"description": f"More than {MAX_RESULTS} customers matched"})
    limit = ma.fields.Integer()


@lru_cache(maxsize=1)
def _policy() -> FieldPolicy:
    return FieldPolicy.default()


@blp.route("/customers/search", methods=["POST"])
@require_scope("profiles:read", "profile.search")
@blp.arguments(SearchSchema)
@blp.response(200, SearchResultSchema)
@blp.alt_response(403, description="The token must carry exactly one role", **_PROBLEM)
@blp.doc(security=_STAFF)
def search_customers(body: dict[str, Any]) -> ResponseReturnValue:
    """Customers whose records match an exact email, phone number or name; ids and sources only.

    At most 25 customers are returned (`capped` says when more matched): narrow the search instead.
    """
    actor = actor_of(current_principal())
    role = _policy().role(actor.role)
    department = actor.department if role is not None and role.department_scoped else None
    if role is not None and role.department_scoped and not department:
        raise Problem(403, title="Forbidden", detail=f"role {actor.role} needs a department")
    platform = current_platform()
    query = SearchQuery(
        email=body.get("email"),
        phone=body.get("phone"),
        region=body.get("region"),
        first_name=body.get("first_name"),
        last_name=body.get("last_name"),
    )
    try:
        result = CustomerSearch(platform.db, platform.vault).search(query, line_of_business=department)
    except InvalidSearch as exc:
        raise invalid("json", exc.field, str(exc)) from None
    record_now(
        platform.db,
        AuditEvent(
            "profile.search",
            subjects=tuple(str(hit.entity_id) for hit in result.hits),
            details={"kinds": "+".join(result.searched), "count": len(result.hits), "capped": result.capped},
        ),
    )
    return result.to_dict()
