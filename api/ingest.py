"""Ingestion over HTTP: the same service as `cdp ingest`, for department systems that push records.

Protected by OAuth: ``ingest`` to send, ``sources:read`` to list sources and quarantined rows. A client
that belongs to a department may only feed sources of its own line of business.

The service audits each chunk it writes in that chunk's transaction; listings record their counts.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.typing import ResponseReturnValue

from api.auditing import outcome_of
from api.context import current_platform
from api.errors import PROBLEM_BASE, Problem
from api.oauth import Principal, current_principal, require_scope
from api.smorest import Blueprint
from cdp.audit import AuditEvent, record_now
from cdp.sources.ingest import MAX_API_BATCH, IngestError, IngestService
from cdp.sources.quarantine import QuarantineRepository
from cdp.sources.readers import RawRow
from cdp.sources.records import SourceNotFound

blp = Blueprint("ingest", __name__, url_prefix="/v1", description="Ingestion from lines of business")


class BatchSchema(ma.Schema):
    rows = ma.fields.List(
        ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(1, 128))),
        required=True,
        validate=ma.validate.Length(1, MAX_API_BATCH),
        metadata={
            "description": f"1 to {MAX_API_BATCH} rows, each an object of the source's own column names "
            "(as in its mapping). A single record is a batch of one."
        },
    )


class RejectionSchema(ma.Schema):
    row = ma.fields.Integer(metadata={"description": "1-based position in `rows`"})
    reason = ma.fields.String()
    detail = ma.fields.String()


class IngestResultSchema(ma.Schema):
    run_id = ma.fields.UUID()
    inserted = ma.fields.Integer()
    updated = ma.fields.Integer()
    unchanged = ma.fields.Integer()
    rejected = ma.fields.Integer()
    rejections = ma.fields.List(ma.fields.Nested(RejectionSchema))


class SourceSchema(ma.Schema):
    name = ma.fields.String()
    line_of_business = ma.fields.String()
    records = ma.fields.Integer()
    interactions = ma.fields.Integer()
    quarantined = ma.fields.Integer()


class QuarantineQuerySchema(ma.Schema):
    source = ma.fields.String(load_default=None)
    reason = ma.fields.String(load_default=None)
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, 1000))


class QuarantineEntrySchema(ma.Schema):
    id = ma.fields.UUID()
    kind = ma.fields.String()
    row_number = ma.fields.Integer()
    reason = ma.fields.String()
    detail = ma.fields.String()
    created_at = ma.fields.DateTime()


def _service() -> IngestService:
    platform = current_platform()
    return IngestService(platform.db, platform.vault)


def _authorize_source(service: IngestService, principal: Principal, source: str) -> None:
    try:
        line_of_business = service.line_of_business(source)
    except SourceNotFound:
        raise Problem(404, title="Not Found", detail="No source of that name is registered") from None
    if principal.department is not None and principal.department != line_of_business:
        raise Problem(
            403,
            title="Forbidden",
            type=PROBLEM_BASE + "department-mismatch",
            detail="This client's department may not feed a source of another line of business",
        )


def _ingest(source: str, body: dict[str, Any], kind: str) -> dict[str, Any]:
    service = _service()
    _authorize_source(service, current_principal(), source)
    rows = [RawRow(number, values) for number, values in enumerate(body["rows"], start=1)]
    try:
        try:
            summary = service.ingest_rows(source, rows, kind=kind)
        except IngestError as exc:
            raise Problem(409, title="Conflict", detail=str(exc)) from None
    except Exception as exc:
        # The failed chunk's entry rolled back with it, but the audit scope counts it as recorded (and
        # earlier chunks did commit theirs), so require_scope would not record the failure: it is done here.
        status = exc.status if isinstance(exc, Problem) else 500
        record_now(
            current_platform().db,
            AuditEvent(f"{kind}.ingest", outcome_of(exc), details={"source": source, "status": status}),
        )
        raise
    return {
        "run_id": summary.run_id,
        "inserted": summary.inserted,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "rejected": summary.rejected,
        "rejections": [{"row": n, "reason": r, "detail": d} for n, r, d in summary.rejections],
    }


@blp.route("/sources/<string:source>/records", methods=["POST"])
@require_scope("ingest", "records.ingest")
@blp.arguments(BatchSchema)
@blp.response(200, IngestResultSchema)
@blp.doc(security=[{"oauth2": ["ingest"]}])
def ingest_records(body: dict[str, Any], source: str) -> ResponseReturnValue:
    """Ingest customer records (idempotent by the source's record id; bad rows are quarantined)."""
    return _ingest(source, body, "records")


@blp.route("/sources/<string:source>/interactions", methods=["POST"])
@require_scope("ingest", "interactions.ingest")
@blp.arguments(BatchSchema)
@blp.response(200, IngestResultSchema)
@blp.doc(security=[{"oauth2": ["ingest"]}])
def ingest_interactions(body: dict[str, Any], source: str) -> ResponseReturnValue:
    """Ingest contact history for records of this source."""
    return _ingest(source, body, "interactions")


@blp.route("/sources", methods=["GET"])
@require_scope("sources:read", "sources.read")
@blp.response(200, SourceSchema(many=True))
@blp.doc(security=[{"oauth2": ["sources:read"]}])
def list_sources() -> ResponseReturnValue:
    """Registered sources with record, interaction and pending-quarantine counts."""
    sources = _service().sources()
    record_now(current_platform().db, AuditEvent("sources.read", details={"sources": len(sources)}))
    return [
        {
            "name": s.name,
            "line_of_business": s.line_of_business,
            "records": s.records,
            "interactions": s.interactions,
            "quarantined": s.quarantined,
        }
        for s in sources
    ]


@blp.route("/quarantine", methods=["GET"])
@require_scope("sources:read", "quarantine.read")
@blp.arguments(QuarantineQuerySchema, location="query")
@blp.response(200, QuarantineEntrySchema(many=True))
@blp.doc(security=[{"oauth2": ["sources:read"]}])
def list_quarantine(query: dict[str, Any]) -> ResponseReturnValue:
    """Pending quarantined rows: reason codes and details that name columns, never values."""
    service = _service()
    platform = current_platform()
    with platform.db.read() as session:
        source_id = None
        if query["source"]:
            try:
                source_id = service.mapping(session, query["source"])[0]
            except SourceNotFound:
                raise Problem(404, title="Not Found", detail="No source of that name is registered") from None
        entries = QuarantineRepository(session, platform.vault).entries(
            source_id=source_id, reason=query["reason"], limit=query["limit"]
        )
    # The source name was checked above; the reason filter is unchecked caller text, so only its use is kept.
    details = {"entries": len(entries), "source": query["source"], "reason_filter": bool(query["reason"])}
    record_now(platform.db, AuditEvent("quarantine.read", details=details))
    return [e.__dict__ for e in entries]
