"""Identity resolution over HTTP: who-is-who lookups, match explanations, the review queue, and the
manual merges and splits a data steward makes.

Protected by OAuth: ``identity:read`` to look, ``identity:manage`` to merge and split. Everything here is
free of personal data by construction — record ids, entity ids, match weights, comparison level labels
and source names only, never a value from a record. That is why ``identity:read`` can go to roles that
may not read profiles (``admin``, ``data_steward``).

There is deliberately no golden-profile endpoint here: a golden profile is plaintext customer data, and
profile reads must go through the access gate (purpose, consent, field-level policy and audit) that is
built separately. ``IdentityService.golden`` stays reachable only from the CLI, whose operator already
holds the keys.

Reads are audited once their answer is computed and before it is returned, naming the record and entity
ids the answer reveals; merges and splits are audited by the service in the transaction that makes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.typing import ResponseReturnValue

from api.context import current_platform
from api.errors import PROBLEM_JSON, Problem, ProblemSchema
from api.oauth import current_principal, require_scope
from api.paths import invalid, path_id, uuid_parameter
from api.smorest import Blueprint
from cdp.audit import AuditEvent, record_now
from cdp.identity.service import EntityNotFound, IdentityError, IdentityService

blp = Blueprint(
    "identity",
    __name__,
    url_prefix="/v1/identity",
    description="Identity resolution: entities, explanations, review, merges and splits (no values)",
)

_SERVICE_KEY = "cdp_identity_service"
MAX_REVIEW = 500
MAX_SPLIT = 1000
MAX_REASON = 300
_READ = [{"oauth2": ["identity:read"]}]
_MANAGE = [{"oauth2": ["identity:manage"]}]


# -- schemas ------------------------------------------------------------------------------------------


class RecordEntitySchema(ma.Schema):
    entity_id = ma.fields.UUID(metadata={"description": "The entity (person) the record resolves to"})
    records = ma.fields.List(
        ma.fields.UUID(), metadata={"description": "Ids of all the entity's records, this one included"}
    )


class LinkSchema(ma.Schema):
    record_a = ma.fields.UUID()
    record_b = ma.fields.UUID()
    match_weight = ma.fields.Float(metadata={"description": "Match weight in bits (log2 odds)"})
    refused = ma.fields.String(
        allow_none=True,
        metadata={"description": "Why clustering refused this link (e.g. `contradiction`), or null"},
    )


class DecisionSchema(ma.Schema):
    record_a = ma.fields.UUID()
    record_b = ma.fields.UUID()
    kind = ma.fields.String(metadata={"description": "`merge` or `split`"})
    actor = ma.fields.String(metadata={"description": "Who decided, e.g. `client:<client id>`"})


class EntityExplanationSchema(ma.Schema):
    entity_id = ma.fields.UUID()
    records = ma.fields.List(ma.fields.UUID(), metadata={"description": "Member record ids"})
    sources = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "Each member record's source system (a system name, never a value)"},
    )
    links = ma.fields.List(
        ma.fields.Nested(LinkSchema),
        metadata={"description": "Stored scored pairs between members (links, review band, contradictions)"},
    )
    decisions = ma.fields.List(
        ma.fields.Nested(DecisionSchema), metadata={"description": "Manual decisions involving members"}
    )


class _TwoRecords(ma.Schema):
    @ma.validates_schema
    def _distinct(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("record_a") is not None and data.get("record_a") == data.get("record_b"):
            raise ma.ValidationError("Must differ from record_a.", field_name="record_b")


class PairQuerySchema(_TwoRecords):
    record_a = ma.fields.UUID(required=True, metadata={"description": "Id of one record"})
    record_b = ma.fields.UUID(required=True, metadata={"description": "Id of the other record"})


class TermSchema(ma.Schema):
    comparison = ma.fields.String(metadata={"description": "`prior`, or the comparison's name"})
    level = ma.fields.String(metadata={"description": "Label of the comparison level the pair fell in"})
    bits = ma.fields.Float(metadata={"description": "Evidence this term adds (negative: against)"})
    m = ma.fields.Float(allow_none=True, metadata={"description": "P(level | same person)"})
    u = ma.fields.Float(allow_none=True, metadata={"description": "P(level | different people)"})
    tf_adjustment_bits = ma.fields.Float(
        metadata={"description": "Term-frequency adjustment included in `bits` (rare values weigh more)"}
    )


class PairExplanationSchema(ma.Schema):
    match_weight = ma.fields.Float(metadata={"description": "Sum of the terms' bits"})
    match_probability = ma.fields.Float()
    threshold = ma.fields.Float(metadata={"description": "Weight needed to link"})
    decision = ma.fields.String(metadata={"description": "`match` or `non-match` by weight alone"})
    terms = ma.fields.List(
        ma.fields.Nested(TermSchema), metadata={"description": "The prior, then one term per comparison"}
    )


class ReviewQuerySchema(ma.Schema):
    limit = ma.fields.Integer(
        load_default=50,
        validate=ma.validate.Range(1, MAX_REVIEW),
        metadata={"description": f"At most this many pairs (1 to {MAX_REVIEW})"},
    )


class ReviewItemSchema(ma.Schema):
    record_a = ma.fields.UUID()
    record_b = ma.fields.UUID()
    match_weight = ma.fields.Float(metadata={"description": "Match weight in bits"})
    linked = ma.fields.Boolean(metadata={"description": "Whether the two records are one entity now"})
    refused = ma.fields.String(allow_none=True, metadata={"description": "Why a link was refused, or null"})


class ReviewSchema(ma.Schema):
    items = ma.fields.List(
        ma.fields.Nested(ReviewItemSchema),
        metadata={"description": "Undecided pairs nearest the threshold first, refused links included"},
    )


def _reason_field() -> ma.fields.String:
    return ma.fields.String(
        required=True,
        validate=ma.validate.Length(1, MAX_REASON),
        metadata={
            "description": f"Why (1 to {MAX_REASON} characters), kept with the decision. "
            "Write the grounds, not customer data."
        },
    )


class MergeSchema(_TwoRecords):
    record_a = ma.fields.UUID(required=True)
    record_b = ma.fields.UUID(required=True)
    reason = _reason_field()


class MergeResultSchema(ma.Schema):
    entity_id = ma.fields.UUID(metadata={"description": "The entity both records now belong to"})


class SplitSchema(ma.Schema):
    record_ids = ma.fields.List(
        ma.fields.UUID(),
        required=True,
        validate=ma.validate.Length(1, MAX_SPLIT),
        metadata={
            "description": f"1 to {MAX_SPLIT} record ids to separate from the rest of the entity "
            "(some, but not all, of its records)"
        },
    )
    reason = _reason_field()


class SplitResultSchema(ma.Schema):
    entity_ids = ma.fields.List(
        ma.fields.UUID(), metadata={"description": "Entities the former members belong to now"}
    )


# -- helpers ------------------------------------------------------------------------------------------


def _service() -> IdentityService:
    """One service per app and platform: it caches the active match model between requests (and
    notices a new one, so a `cdp resolve --retrain` elsewhere takes effect)."""
    platform = current_platform()
    cached = current_app.extensions.get(_SERVICE_KEY)
    if isinstance(cached, IdentityService) and cached.db is platform.db and cached.vault is platform.vault:
        return cached
    service = IdentityService(platform.db, platform.vault)
    current_app.extensions[_SERVICE_KEY] = service
    return service


@contextmanager
def _identity_problems() -> Iterator[None]:
    """Service errors as problems; their messages name ids only, never values."""
    try:
        yield
    except EntityNotFound as exc:
        raise Problem(404, title="Not Found", detail=str(exc)) from None
    except IdentityError as exc:
        raise Problem(409, title="Conflict", detail=str(exc)) from None


def _audit_read(action: str, subjects: Iterable[object], **counts: int) -> None:
    """Record a read (committed before the answer leaves), replacing require_scope's bare entry."""
    record_now(
        current_platform().db, AuditEvent(action, subjects=tuple(str(s) for s in subjects), details=counts)
    )


def _actor() -> str:
    # Users (authorization code flow) will be "user:<subject>" once they exist.
    return f"client:{current_principal().client_id}"


_NOT_FOUND = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}


# -- views --------------------------------------------------------------------------------------------


@blp.route(
    "/records/<record_id>/entity",
    methods=["GET"],
    parameters=[uuid_parameter("record_id", "Id of a source record")],
)
@require_scope("identity:read", "identity.read")
@blp.response(200, RecordEntitySchema)
@blp.alt_response(404, description="No such record, or it is not resolved yet", **_NOT_FOUND)
@blp.doc(security=_READ)
def record_entity(record_id: str) -> ResponseReturnValue:
    """The entity a record resolves to, with the ids of all its records."""
    service = _service()
    record = path_id("record_id", record_id)
    with _identity_problems():
        entity_id = service.entity_of(record)
        members = service.members(entity_id)
    _audit_read("identity.read", (record, entity_id, *members), records=len(members))
    return {"entity_id": entity_id, "records": members}


@blp.route(
    "/entities/<entity_id>/explanation",
    methods=["GET"],
    parameters=[uuid_parameter("entity_id", "Id of an entity")],
)
@require_scope("identity:read", "identity.explain")
@blp.response(200, EntityExplanationSchema)
@blp.alt_response(404, description="No such entity", **_NOT_FOUND)
@blp.doc(security=_READ)
def entity_explanation(entity_id: str) -> ResponseReturnValue:
    """Why an entity holds its records: the scored links between members and any manual decisions."""
    entity = path_id("entity_id", entity_id)
    with _identity_problems():
        explanation = _service().explain_entity(entity)
    _audit_read(
        "identity.explain",
        (entity, *explanation["records"]),
        records=len(explanation["records"]),
        links=len(explanation["links"]),
        decisions=len(explanation["decisions"]),
    )
    return explanation


@blp.route("/explanations", methods=["GET"])
@require_scope("identity:read", "identity.explain")
@blp.arguments(PairQuerySchema, location="query")
@blp.response(200, PairExplanationSchema)
@blp.alt_response(404, description="A record does not exist (or is not resolved yet)", **_NOT_FOUND)
@blp.alt_response(409, description="No match model yet: run `cdp resolve` first", **_NOT_FOUND)
@blp.doc(security=_READ)
def pair_explanation(query: dict[str, Any]) -> ResponseReturnValue:
    """The waterfall of evidence for one pair of records under the active model, in bits.

    Each term names a comparison and the level the pair fell in; the terms sum to the match weight.
    """
    service = _service()
    with _identity_problems():
        service.entity_of(query["record_a"])
        service.entity_of(query["record_b"])
        explanation = service.explain(query["record_a"], query["record_b"]).to_dict()
    _audit_read("identity.explain", (query["record_a"], query["record_b"]), terms=len(explanation["terms"]))
    return explanation


@blp.route("/review", methods=["GET"])
@require_scope("identity:read", "identity.review")
@blp.arguments(ReviewQuerySchema, location="query")
@blp.response(200, ReviewSchema)
@blp.doc(security=_READ)
def review_queue(query: dict[str, Any]) -> ResponseReturnValue:
    """Pairs a person should decide: refused links and weights near the threshold, undecided ones only."""
    items = [item.to_dict() for item in _service().review_queue(query["limit"])]
    _audit_read("identity.review", (), items=len(items))
    return {"items": items}


@blp.route("/merges", methods=["POST"])
@require_scope("identity:manage", "identity.merge")
@blp.arguments(MergeSchema)
@blp.response(201, MergeResultSchema)
@blp.alt_response(404, description="A record does not exist", **_NOT_FOUND)
@blp.alt_response(409, description="The merge cannot be done as asked", **_NOT_FOUND)
@blp.doc(security=_MANAGE)
def merge(body: dict[str, Any]) -> ResponseReturnValue:
    """Decide by hand that two records are the same person (kept through later batch runs)."""
    service = _service()
    with _identity_problems():
        service.entity_of(body["record_a"])
        service.entity_of(body["record_b"])
        entity_id = service.merge(body["record_a"], body["record_b"], actor=_actor(), reason=body["reason"])
    return {"entity_id": entity_id}


@blp.route(
    "/entities/<entity_id>/splits",
    methods=["POST"],
    parameters=[uuid_parameter("entity_id", "Id of the entity to split")],
)
@require_scope("identity:manage", "identity.split")
@blp.arguments(SplitSchema)
@blp.response(201, SplitResultSchema)
@blp.alt_response(404, description="No such entity", **_NOT_FOUND)
@blp.alt_response(409, description="The split cannot be done as asked", **_NOT_FOUND)
@blp.doc(security=_MANAGE)
def split(body: dict[str, Any], entity_id: str) -> ResponseReturnValue:
    """Decide by hand that some records are not the same person as the rest of the entity."""
    entity = path_id("entity_id", entity_id)
    service = _service()
    with _identity_problems():
        members = set(service.members(entity))
        moving = set(body["record_ids"])
        if not moving < members:
            raise invalid("json", "record_ids", "Must be some, but not all, of the entity's records.")
        entity_ids = service.split(entity, sorted(moving, key=str), actor=_actor(), reason=body["reason"])
    return {"entity_ids": entity_ids}
