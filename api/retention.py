"""Retention over HTTP (``retention:manage``: the DPO): the policy in force, sweeps and legal holds.

* ``/v1/retention/policy`` — the categories (how long each line of business keeps a customer, from
  which anchor) and the legal obligations that keep pseudonymized documents after an erasure, with the
  policy's version and SHA-256 (what certificates and receipts name).
* ``/v1/retention/sweeps`` — run a sweep now (``dry_run`` counts what it would destroy and destroys
  nothing) and list past sweeps. A real sweep runs synchronously and answers with its report and the
  signed destruction certificate; while another process holds the sweep's lease the answer is ``409``.
* ``/v1/retention/holds`` — place a legal hold on a customer (each of its records) or on one record,
  list holds, release one. Nothing under an active hold is destroyed, by a sweep or by an erasure.

The services audit their own changes (``retention.sweep``, ``retention.hold``, ``retention.release``) in
the transactions that make them; reads record ``retention.read``. A hold's reason is a case reference
entered by the DPO: it is stored, never written to the audit log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import marshmallow as ma
from flask.typing import ResponseReturnValue

from api.context import current_platform
from api.dsr import ReceiptSchema, audit_read, dsr_service
from api.errors import PROBLEM_JSON, Problem, ProblemSchema
from api.oauth import current_principal, require_scope
from api.paths import invalid, path_id, uuid_parameter
from api.smorest import Blueprint
from cdp.retention.holds import HoldError, HoldNotFound, HoldView, LegalHolds
from cdp.retention.policy import RetentionConfigError, RetentionPolicy
from cdp.retention.sweep import RetentionSweeper, SweepBusy

blp = Blueprint(
    "retention",
    __name__,
    url_prefix="/v1/retention",
    description="Retention: the policy in force, sweeps with signed destruction certificates, legal holds",
)

_MANAGE = [{"oauth2": ["retention:manage"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
_TIME = {"format": "date-time"}
MAX_HOLDS_PAGE = 500


# -- schemas ------------------------------------------------------------------------------------------


class CategorySchema(ma.Schema):
    name = ma.fields.String()
    line_of_business = ma.fields.String()
    keep = ma.fields.String(metadata={"description": "Calendar period: `3y`, `18m` or `90d`"})
    anchor = ma.fields.String(metadata={"description": "`last_activity` or `ingested`: counted from"})
    description = ma.fields.String()


class ObligationSchema(ma.Schema):
    name = ma.fields.String()
    line_of_business = ma.fields.String()
    interaction_kinds = ma.fields.List(ma.fields.String())
    keep = ma.fields.String()
    basis = ma.fields.String(metadata={"description": "The law that requires keeping them"})


class PolicySchema(ma.Schema):
    version = ma.fields.Integer()
    sha256 = ma.fields.String(metadata={"description": "Of the policy file's text"})
    categories = ma.fields.List(ma.fields.Nested(CategorySchema))
    obligations = ma.fields.List(ma.fields.Nested(ObligationSchema))
    operational = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "Keep periods of quarantined rows and outbox messages"},
    )


class SweepBodySchema(ma.Schema):
    dry_run = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "true: count what has expired (and what holds keep), destroy nothing; false: "
            "destroy it. Required, so that no request destroys data by omission."
        },
    )


class SweepReportSchema(ma.Schema):
    sweep_id = ma.fields.String(allow_none=True, metadata={"description": "Null for a dry run"})
    dry_run = ma.fields.Boolean()
    as_of = ma.fields.String(metadata={**_TIME, "description": "The fixed cut-off the sweep applied"})
    policy_version = ma.fields.Integer()
    expired_by_category = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Integer(), metadata={"description": "Records"}
    )
    held_by_category = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={"description": "Expired records kept under legal hold"},
    )
    destroyed = ma.fields.Dict(metadata={"description": "What was destroyed, by kind and category"})
    retained_documents_destroyed = ma.fields.Integer(
        metadata={"description": "Pseudonymized documents whose legal obligation ran out"}
    )
    operational_destroyed = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={"description": "Quarantined rows and outbox messages past their keep period"},
    )
    batches = ma.fields.Integer()
    resumed = ma.fields.Boolean(metadata={"description": "It took over an interrupted sweep"})
    seconds = ma.fields.Float()
    certificate_id = ma.fields.String(allow_none=True)
    certificate = ma.fields.Nested(
        ReceiptSchema, allow_none=True, metadata={"description": "The signed destruction certificate"}
    )


class SweepSchema(ma.Schema):
    id = ma.fields.String()
    status = ma.fields.String(metadata={"description": "`running` or `completed`"})
    policy_version = ma.fields.Integer()
    as_of = ma.fields.String(metadata=_TIME)
    started_at = ma.fields.String(metadata=_TIME)
    finished_at = ma.fields.String(allow_none=True, metadata=_TIME)
    counts = ma.fields.Dict()
    certificate_id = ma.fields.String(allow_none=True)


class SweepListQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(1, 200))


def _case_reference(text: str) -> None:
    """What :mod:`cdp.retention.holds` accepts, checked up front so the answer names the field."""
    if not 3 <= len(" ".join(text.split())) <= 300:
        raise ma.ValidationError("Give 3 to 300 characters: a case reference, not personal data.")


def _reason_field(description: str) -> ma.fields.String:
    return ma.fields.String(required=True, validate=_case_reference, metadata={"description": description})


class PlaceHoldSchema(ma.Schema):
    customer_id = ma.fields.UUID(
        load_default=None, metadata={"description": "Hold every record the customer has now"}
    )
    record_id = ma.fields.UUID(load_default=None, metadata={"description": "Hold one source record"})
    reason = _reason_field("Why (a case or matter reference, 3 to 300 characters; no personal data)")

    @ma.validates_schema
    def _exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data.get("customer_id") is None) == (data.get("record_id") is None):
            raise ma.ValidationError("Give exactly one of customer_id and record_id.")


class ReleaseHoldSchema(ma.Schema):
    reason = _reason_field("Why the hold ends (a case reference, 3 to 300 characters)")


class HoldQuerySchema(ma.Schema):
    customer_id = ma.fields.UUID(load_default=None)
    active = ma.fields.Boolean(
        load_default=True, metadata={"description": "Only holds in force (false: released ones too)"}
    )
    limit = ma.fields.Integer(load_default=200, validate=ma.validate.Range(1, MAX_HOLDS_PAGE))


class HoldSchema(ma.Schema):
    id = ma.fields.String()
    record_id = ma.fields.String()
    customer_id = ma.fields.String(allow_none=True)
    reason = ma.fields.String()
    created_by = ma.fields.String()
    created_at = ma.fields.String(metadata=_TIME)
    active = ma.fields.Boolean()
    released_by = ma.fields.String(allow_none=True)
    released_at = ma.fields.String(allow_none=True, metadata=_TIME)
    release_reason = ma.fields.String(allow_none=True)


# -- helpers ------------------------------------------------------------------------------------------


def _policy() -> RetentionPolicy:
    """The policy erasures apply too (the DSR service's), so a sweep and an erasure never disagree."""
    return dsr_service().policy


def _hold_subjects(holds: list[HoldView]) -> list[str]:
    subjects: list[str] = []
    for hold in holds:
        subjects += [*([str(hold.entity_id)] if hold.entity_id else []), str(hold.record_id)]
    return subjects


@contextmanager
def _retention_problems() -> Iterator[None]:
    """Refusals as problems. Configuration errors get a fixed detail: they are for operators."""
    try:
        yield
    except SweepBusy:
        raise Problem(
            409,
            title="Conflict",
            detail="A retention sweep is already running; try again when it has finished.",
        ) from None
    except RetentionConfigError:
        raise Problem(
            409,
            title="Conflict",
            detail="The retention policy in force conflicts with one already applied; an operator must "
            "resolve it before sweeps can run.",
        ) from None


# -- views --------------------------------------------------------------------------------------------


@blp.route("/policy", methods=["GET"])
@require_scope("retention:manage", "retention.read")
@blp.response(200, PolicySchema)
@blp.doc(security=_MANAGE)
def read_policy() -> ResponseReturnValue:
    """The retention policy in force: periods per category and obligations that outlive an erasure."""
    policy = _policy()
    audit_read("retention.read", (), policy_version=policy.version)
    return policy.to_dict()


@blp.route("/sweeps", methods=["POST"])
@require_scope("retention:manage", "retention.sweep")
@blp.arguments(SweepBodySchema)
@blp.response(200, SweepReportSchema)
@blp.alt_response(409, description="Another sweep is running", **_PROBLEM)
@blp.doc(security=_MANAGE)
def run_sweep(body: dict[str, Any]) -> ResponseReturnValue:
    """Run the retention sweep now and answer with its report.

    A real sweep destroys every record past its category's period that no legal hold keeps, in batches,
    and signs a destruction certificate. Interrupted, the next run resumes it with the same cut-off.
    """
    platform = current_platform()
    # A sweeper per request: its lease holder id must be unique to this run.
    sweeper = RetentionSweeper(platform.db, platform.vault, _policy())
    with _retention_problems():
        report = sweeper.run(dry_run=body["dry_run"])
    certificate = report.certificate
    return {
        **report.to_dict(),
        "certificate": {**certificate.to_dict(), "valid": certificate.verify()} if certificate else None,
    }


@blp.route("/sweeps", methods=["GET"])
@require_scope("retention:manage", "retention.read")
@blp.arguments(SweepListQuerySchema, location="query")
@blp.response(200, SweepSchema(many=True))
@blp.doc(security=_MANAGE)
def list_sweeps(query: dict[str, Any]) -> ResponseReturnValue:
    """Past and running sweeps, newest first, with their counts and certificates."""
    platform = current_platform()
    sweeps = RetentionSweeper(platform.db, platform.vault, _policy()).sweeps(limit=query["limit"])
    audit_read("retention.read", (), sweeps=len(sweeps))
    return sweeps


@blp.route("/holds", methods=["POST"])
@require_scope("retention:manage", "retention.hold")
@blp.arguments(PlaceHoldSchema)
@blp.response(201, HoldSchema(many=True), description="One hold per record held")
@blp.alt_response(404, description="No such customer or record", **_PROBLEM)
@blp.doc(security=_MANAGE)
def place_hold(body: dict[str, Any]) -> ResponseReturnValue:
    """Place a legal hold on a customer (each of its records, as they are now) or on one record."""
    actor = current_principal().subject
    try:
        with current_platform().db.transaction() as session:
            holds = LegalHolds(session).place(
                reason=body["reason"], actor=actor, entity_id=body["customer_id"], record_id=body["record_id"]
            )
    except HoldNotFound:
        raise Problem(404, title="Not Found", detail="No such customer or record") from None
    except HoldError as exc:
        raise invalid("json", "_schema", str(exc)) from None
    return [hold.to_dict() for hold in holds]


@blp.route("/holds", methods=["GET"])
@require_scope("retention:manage", "retention.read")
@blp.arguments(HoldQuerySchema, location="query")
@blp.response(200, HoldSchema(many=True))
@blp.doc(security=_MANAGE)
def list_holds(query: dict[str, Any]) -> ResponseReturnValue:
    """Legal holds, newest first: those in force, or all; of one customer, or of everyone."""
    with current_platform().db.read() as session:
        holds = LegalHolds(session).search(
            entity_id=query["customer_id"], active_only=query["active"], limit=query["limit"]
        )
    audit_read("retention.read", _hold_subjects(holds), holds=len(holds))
    return [hold.to_dict() for hold in holds]


@blp.route(
    "/holds/<hold_id>/release", methods=["POST"], parameters=[uuid_parameter("hold_id", "The hold's id")]
)
@require_scope("retention:manage", "retention.release")
@blp.arguments(ReleaseHoldSchema)
@blp.response(200, HoldSchema)
@blp.alt_response(404, description="No such hold", **_PROBLEM)
@blp.alt_response(409, description="The hold was already released", **_PROBLEM)
@blp.doc(security=_MANAGE)
def release_hold(body: dict[str, Any], hold_id: str) -> ResponseReturnValue:
    """Release a legal hold; the records it kept are subject to retention and erasure again."""
    wanted: uuid.UUID = path_id("hold_id", hold_id)
    actor = current_principal().subject
    try:
        with current_platform().db.transaction() as session:
            hold = LegalHolds(session).release(wanted, reason=body["reason"], actor=actor)
    except HoldNotFound:
        raise Problem(404, title="Not Found", detail="No such legal hold") from None
    except HoldError:
        raise Problem(409, title="Conflict", detail="This legal hold was already released.") from None
    return hold.to_dict()
