"""Analytics over HTTP: segments as data, their sizes over time, and the analyses — aggregates only.

* ``/v1/analytics/segments`` — list and define segments (``analytics:manage`` to define, change or delete;
  ``analytics:read`` to list, evaluate, preview and read their history). A bad definition is a ``422``
  naming every wrong path (``match.all[1].interactions.within_days``).
* ``/v1/analytics/{analysis}`` — ``rfm``, ``clv``, ``churn``, ``channels``, ``profitability``,
  ``purchases`` over the consenting population or one saved segment.
* ``/v1/analytics/charts/{chart}.{format}`` — the same figures as SVG or PNG.

Every answer covers only customers whose consent covers the purpose (``analytics``, or ``profiling``
for segments defined under it) and suppresses every group smaller than k. No endpoint lists customers.
Runs are audited by the service (``analytics.run`` with purpose, analysis, segment and counts).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.typing import ResponseReturnValue

from api.context import current_platform
from api.dsr import audit_read
from api.errors import PROBLEM_JSON, VALIDATION_ERROR, Problem, ProblemSchema
from api.oauth import current_principal, require_scope
from api.smorest import Blueprint
from cdp.analytics import charts
from cdp.analytics.config import AnalyticsConfigError
from cdp.analytics.dataset import ANALYTICS_PURPOSES
from cdp.analytics.errors import AnalyticsError, SegmentConflict, SegmentNotFound
from cdp.analytics.segments import SegmentDefinitionError
from cdp.analytics.service import ANALYSES, GROUPINGS, AnalyticsService

blp = Blueprint(
    "analytics",
    __name__,
    url_prefix="/v1/analytics",
    description="Analytics on consented data: segments, RFM, lifetime value, churn, channels, value "
    "(aggregates only; groups smaller than k are suppressed)",
)

_READ = [{"oauth2": ["analytics:read"]}]
_MANAGE = [{"oauth2": ["analytics:manage"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
_TIME = {"format": "date-time"}
_SERVICE_KEY = "cdp.analytics_service"
_SEGMENT = {
    "in": "path",
    "name": "segment",
    "required": True,
    "description": "The segment's id or name",
    "schema": {"type": "string"},
}


# -- schemas ------------------------------------------------------------------------------------------


class SegmentDefinitionSchema(ma.Schema):
    """The shape of a definition; its ``match`` conditions are checked by the service, which names every
    wrong path (see the module docs of ``cdp.analytics.segments`` for the conditions)."""

    class Meta:
        unknown = ma.RAISE

    name = ma.fields.String(required=True, metadata={"description": "2-64 lower-case letters, digits, - _"})
    description = ma.fields.String(metadata={"description": "What the segment is for (no personal data)"})
    purpose = ma.fields.String(
        validate=ma.validate.OneOf(ANALYTICS_PURPOSES),
        metadata={
            "description": "`analytics` (default: everyone but objectors) or `profiling` (only customers "
            "who consented to profiling)"
        },
    )
    schedule = ma.fields.String(
        allow_none=True, metadata={"description": "Cron (UTC) to evaluate it on, e.g. `0 4 * * *`"}
    )
    match = ma.fields.Dict(
        required=True,
        metadata={
            "description": "A condition: one of all, any, not, department, interactions, consent, metric, "
            "rfm_segment, preferred_channel, country, age",
            "example": {
                "all": [
                    {"department": "billing"},
                    {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
                    {"consent": "marketing_email"},
                ]
            },
        },
    )


class SegmentSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    description = ma.fields.String()
    purpose = ma.fields.String()
    schedule = ma.fields.String(allow_none=True)
    definition = ma.fields.Dict()
    version = ma.fields.Integer()
    created_by = ma.fields.String()
    created_at = ma.fields.String(metadata=_TIME)
    updated_at = ma.fields.String(metadata=_TIME)
    next_run_at = ma.fields.String(allow_none=True, metadata=_TIME)


class CellSchema(ma.Schema):
    customers = ma.fields.Integer(allow_none=True, metadata={"description": "Null when suppressed"})
    suppressed = ma.fields.Boolean()


class SegmentReportSchema(ma.Schema):
    name = ma.fields.String()
    purpose = ma.fields.String()
    as_of = ma.fields.String(metadata=_TIME)
    segment = ma.fields.Dict(allow_none=True, metadata={"description": "id, name and version (saved ones)"})
    size = ma.fields.Integer(allow_none=True, metadata={"description": "Null when suppressed"})
    suppressed = ma.fields.Boolean()
    population = ma.fields.Integer(allow_none=True, metadata={"description": "Consenting customers"})
    excluded_without_consent = ma.fields.Integer()
    share = ma.fields.Float(allow_none=True)
    privacy = ma.fields.Dict()
    notes = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "Kinds or departments the definition names that occur nowhere (typos?)"},
    )
    by_department = ma.fields.List(ma.fields.Dict())
    by_rfm_segment = ma.fields.List(ma.fields.Dict())
    by_preferred_channel = ma.fields.List(ma.fields.Dict())
    value = ma.fields.Dict(allow_none=True, metadata={"description": "Revenue, cost to serve and profit"})


class HistorySchema(ma.Schema):
    segment = ma.fields.Dict()
    privacy = ma.fields.Dict()
    history = ma.fields.List(
        ma.fields.Dict(),
        metadata={"description": "evaluated_at, segment_version, size (null if suppressed), population"},
    )


class UpdateQuerySchema(ma.Schema):
    version = ma.fields.Integer(
        load_default=None,
        validate=ma.validate.Range(1, 2**31 - 1),
        metadata={"description": "Refuse (409) unless the segment is still at this version"},
    )


def _as_of_field() -> ma.fields.AwareDateTime:
    return ma.fields.AwareDateTime(
        load_default=None,
        default_timezone=UTC,
        metadata={
            "description": "Look at the history up to this moment (ISO 8601, not in the future; default "
            "now). Consent is always applied as it stands now."
        },
    )


class AnalysisQuerySchema(ma.Schema):
    as_of = _as_of_field()
    segment = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(1, 64),
        metadata={"description": "Restrict to a saved segment (id or name)"},
    )
    purpose = ma.fields.String(
        load_default="analytics",
        validate=ma.validate.OneOf(ANALYTICS_PURPOSES),
        metadata={"description": "Whose data: `analytics` (default) or `profiling` consenters"},
    )
    group_by = ma.fields.String(
        load_default="rfm",
        validate=ma.validate.OneOf(GROUPINGS),
        metadata={"description": "Grouping for churn and profitability breakdowns"},
    )


class ChartQuerySchema(ma.Schema):
    as_of = _as_of_field()
    segment = ma.fields.String(load_default=None, validate=ma.validate.Length(1, 64))
    group_by = ma.fields.String(load_default="rfm", validate=ma.validate.OneOf(GROUPINGS))


class AnalysisSchema(ma.Schema):
    analysis = ma.fields.String()
    purpose = ma.fields.String()
    as_of = ma.fields.String(metadata=_TIME)
    segment = ma.fields.Dict(allow_none=True)
    customers = ma.fields.Integer(allow_none=True, metadata={"description": "Customers covered"})
    excluded_without_consent = ma.fields.Integer()
    unconverted_amounts = ma.fields.Integer(
        metadata={"description": "Revenue rows left out: their currency has no rate in the model"}
    )
    privacy = ma.fields.Dict()
    result = ma.fields.Dict(metadata={"description": "The analysis's aggregates (see its description)"})


# -- helpers ------------------------------------------------------------------------------------------


def analytics_service() -> AnalyticsService:
    """One per app and platform: the model file is parsed once."""
    platform = current_platform()
    cached = current_app.extensions.get(_SERVICE_KEY)
    if isinstance(cached, AnalyticsService) and cached.db is platform.db and cached.vault is platform.vault:
        return cached
    service = AnalyticsService.for_platform(platform)
    current_app.extensions[_SERVICE_KEY] = service
    return service


@contextmanager
def _problems() -> Iterator[None]:
    try:
        yield
    except SegmentDefinitionError as exc:
        raise Problem(
            422,
            title="Request validation failed",
            type=VALIDATION_ERROR,
            detail="The segment definition is invalid; see errors.",
            extensions={"errors": {"json": exc.errors}},
        ) from None
    except SegmentNotFound:
        raise Problem(404, title="Not Found", detail="No such segment") from None
    except SegmentConflict as exc:
        raise Problem(409, title="Conflict", detail=str(exc)) from None
    except AnalyticsError as exc:
        raise Problem(409, title="Cannot compute", detail=str(exc)) from None
    except AnalyticsConfigError:
        raise Problem(
            409, title="Conflict", detail="The analytics model configuration is invalid; ask an operator."
        ) from None


def _segment_ref(text: str) -> str | uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        return text


# -- segments -----------------------------------------------------------------------------------------


@blp.route("/segments", methods=["GET"])
@require_scope("analytics:read", "analytics.read")
@blp.response(200, SegmentSchema(many=True))
@blp.doc(security=_READ)
def list_segments() -> ResponseReturnValue:
    """Every saved segment definition (definitions only: no sizes, no members)."""
    views = analytics_service().segments()
    audit_read("analytics.read", (), segments=len(views))
    return [view.to_dict() for view in views]


@blp.route("/segments", methods=["POST"])
@require_scope("analytics:manage", "analytics.segments")
@blp.arguments(SegmentDefinitionSchema)
@blp.response(201, SegmentSchema)
@blp.alt_response(409, description="The name is taken", **_PROBLEM)
@blp.doc(security=_MANAGE)
def create_segment(body: dict[str, Any]) -> ResponseReturnValue:
    """Save a segment definition (validated completely; evaluate it with `/evaluate`)."""
    with _problems():
        view = analytics_service().create_segment(body, actor=current_principal().subject)
    return view.to_dict()


@blp.route("/segments/preview", methods=["POST"])
@require_scope("analytics:read", "analytics.run")
@blp.arguments(SegmentDefinitionSchema)
@blp.response(200, SegmentReportSchema)
@blp.alt_response(409, description="A score the definition uses cannot be computed", **_PROBLEM)
@blp.doc(security=_READ)
def preview_segment(body: dict[str, Any]) -> ResponseReturnValue:
    """Evaluate a definition without saving it: size and breakdowns, small groups suppressed."""
    with _problems():
        return analytics_service().preview(body)


@blp.route("/segments/<segment>", methods=["GET"], parameters=[_SEGMENT])
@require_scope("analytics:read", "analytics.read")
@blp.response(200, SegmentSchema)
@blp.alt_response(404, description="No such segment", **_PROBLEM)
@blp.doc(security=_READ)
def read_segment(segment: str) -> ResponseReturnValue:
    """One saved segment definition."""
    with _problems():
        view = analytics_service().segment(_segment_ref(segment))
    audit_read("analytics.read", (), segment=str(view.id))
    return view.to_dict()


@blp.route("/segments/<segment>", methods=["PUT"], parameters=[_SEGMENT])
@require_scope("analytics:manage", "analytics.segments")
@blp.arguments(UpdateQuerySchema, location="query")
@blp.arguments(SegmentDefinitionSchema)
@blp.response(200, SegmentSchema)
@blp.alt_response(404, description="No such segment", **_PROBLEM)
@blp.alt_response(409, description="The name is taken, or the segment changed since `version`", **_PROBLEM)
@blp.doc(security=_MANAGE)
def update_segment(query: dict[str, Any], body: dict[str, Any], segment: str) -> ResponseReturnValue:
    """Replace a segment's definition (its version goes up; its history stays)."""
    with _problems():
        service = analytics_service()
        current = service.segment(_segment_ref(segment))
        view = service.update_segment(
            current.id, body, actor=current_principal().subject, expected_version=query["version"]
        )
    return view.to_dict()


@blp.route("/segments/<segment>", methods=["DELETE"], parameters=[_SEGMENT])
@require_scope("analytics:manage", "analytics.segments")
@blp.response(204)
@blp.alt_response(404, description="No such segment", **_PROBLEM)
@blp.doc(security=_MANAGE)
def delete_segment(segment: str) -> ResponseReturnValue:
    """Delete a segment and its size history."""
    with _problems():
        service = analytics_service()
        service.delete_segment(service.segment(_segment_ref(segment)).id)
    return Response(status=204)


@blp.route("/segments/<segment>/evaluate", methods=["POST"], parameters=[_SEGMENT])
@require_scope("analytics:read", "analytics.run")
@blp.response(200, SegmentReportSchema)
@blp.alt_response(404, description="No such segment", **_PROBLEM)
@blp.alt_response(409, description="A score the definition uses cannot be computed", **_PROBLEM)
@blp.doc(security=_READ)
def evaluate_segment(segment: str) -> ResponseReturnValue:
    """Evaluate a saved segment now and add its size to the history."""
    with _problems():
        return analytics_service().evaluate(_segment_ref(segment), actor=current_principal().subject)


@blp.route("/segments/<segment>/history", methods=["GET"], parameters=[_SEGMENT])
@require_scope("analytics:read", "analytics.read")
@blp.response(200, HistorySchema)
@blp.alt_response(404, description="No such segment", **_PROBLEM)
@blp.doc(security=_READ)
def segment_history(segment: str) -> ResponseReturnValue:
    """The segment's size at each evaluation, oldest first (small sizes suppressed)."""
    with _problems():
        history = analytics_service().history(_segment_ref(segment))
    audit_read("analytics.read", (), segment=history["segment"]["id"])
    return history


# -- analyses and charts ------------------------------------------------------------------------------


@blp.route(
    "/charts/<chart>.<fmt>",
    methods=["GET"],
    parameters=[
        {
            "in": "path",
            "name": "chart",
            "required": True,
            "schema": {"type": "string", "enum": list(charts.CHARTS)},
            "description": "; ".join(f"`{k}`: {v}" for k, v in charts.CHARTS.items()),
        },
        {
            "in": "path",
            "name": "fmt",
            "required": True,
            "schema": {"type": "string", "enum": list(charts.FORMATS)},
        },
    ],
)
@require_scope("analytics:read", "analytics.run")
@blp.arguments(ChartQuerySchema, location="query")
@blp.response(200, description="The chart (SVG or PNG, by the path's extension)")
@blp.alt_response(404, description="No such chart or segment", **_PROBLEM)
@blp.alt_response(409, description="The figures cannot be computed", **_PROBLEM)
@blp.doc(
    security=_READ,
    responses={
        "200": {
            "content": {
                "image/svg+xml": {"schema": {"type": "string"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
def chart(query: dict[str, Any], chart: str, fmt: str) -> ResponseReturnValue:
    """A chart of the figures (segment-sizes needs `segment`); SVG or PNG."""
    if chart not in charts.CHARTS or fmt not in charts.FORMATS:
        raise Problem(404, title="Not Found", detail="No such chart; see the charts listed in the API docs")
    with _problems():
        body = analytics_service().chart(
            chart, fmt, segment=query["segment"], group_by=query["group_by"], as_of=query["as_of"]
        )
    mimetype = "image/svg+xml" if fmt == "svg" else "image/png"
    response = Response(body, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route(
    "/<analysis>",
    methods=["GET"],
    parameters=[
        {
            "in": "path",
            "name": "analysis",
            "required": True,
            "schema": {"type": "string", "enum": list(ANALYSES)},
            "description": "; ".join(f"`{k}`: {v}" for k, v in ANALYSES.items()),
        }
    ],
)
@require_scope("analytics:read", "analytics.run")
@blp.arguments(AnalysisQuerySchema, location="query")
@blp.response(200, AnalysisSchema)
@blp.alt_response(404, description="No such analysis or segment", **_PROBLEM)
@blp.alt_response(409, description="Not enough data to fit the model", **_PROBLEM)
@blp.doc(security=_READ)
def analyse(query: dict[str, Any], analysis: str) -> ResponseReturnValue:
    """Run one analysis over the consenting population or a saved segment."""
    if analysis not in ANALYSES:
        raise Problem(
            404, title="Not Found", detail="No such analysis; see the analyses listed in the API docs"
        )
    with _problems():
        return analytics_service().analyse(
            analysis,
            purpose=query["purpose"],
            segment=_segment_ref(query["segment"]) if query["segment"] else None,
            group_by=query["group_by"],
            as_of=query["as_of"],
        )
