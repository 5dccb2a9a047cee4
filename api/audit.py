"""The audit log over HTTP: the compliance API and a customer's own access log.

* ``/v1/audit/...`` (``audit:read``: compliance officers, the DPO, administrators) — search entries,
  the access report, a streamed export (JSON lines or CSV), the chain's status (optionally a full
  verification) and the signed checkpoints with their public keys, for verifying an export offline.
* ``/v1/me/access-log`` (``self:read``) — who accessed the signed-in customer's data: when, what, and
  by department, role and purpose; never a member of staff's or a client's id.

Looking at the audit log is itself audited: a search records its filters (ids and catalog names only,
validated to that shape before anything runs), an export its format, filters and how many entries it
hands out, a verification its result. Free text never reaches a filter, and so never an entry.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
from flask import Response
from flask.typing import ResponseReturnValue

from api.context import current_platform
from api.errors import PROBLEM_JSON, Problem, ProblemSchema
from api.oauth import current_principal, require_scope
from api.smorest import Blueprint
from cdp.audit import ACTIONS, AuditEvent, AuditService, Outcome, record_now
from cdp.audit.canonical import canonical_json, timestamp
from cdp.audit.queries import (
    MAX_PAGE,
    Entry,
    InvalidCursor,
    access_report,
    chain_status,
    checkpoints,
    count,
    customer_subjects,
    iter_export,
    search,
    transparency,
)
from cdp.db.types import utcnow

MAX_SEQ = 2**63 - 1
"""Positions are 64-bit integers in the store; a larger number is refused (422), never sent to SQL."""

blp = Blueprint(
    "audit",
    __name__,
    url_prefix="/v1/audit",
    description="The tamper-evident audit log: search, access report, export, chain status and checkpoints",
)
self_blp = Blueprint(
    "audit_self",
    __name__,
    url_prefix="/v1/me",
    description="A signed-in customer's access log: who read their data, by department, role and purpose",
)

_AUDIT = [{"oauth2": ["audit:read"]}]
_SELF = [{"oauth2": ["self:read"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
REPORT_DAYS = 30
MAX_ACCESS_LOG_PAGE = 200
NDJSON = "application/x-ndjson"
CSV = "text/csv"
CSV_COLUMNS = (
    "seq",
    "id",
    "recorded_at",
    "action",
    "outcome",
    "actor",
    "actor_kind",
    "role",
    "department",
    "purpose",
    "request_id",
    "subjects",
    "fields",
    "details",
    "prev_hash",
    "hash",
    "sealed_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# Ids as the log writes them (UUIDs, ``user:<uuid>``, client ids, ``system:<name>``). No ``@``: an email
# address is the likeliest personal datum to be typed into a search box, and it must not become part of
# the entry that records the search.
_SUBJECT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_ACTOR = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


# -- schemas ------------------------------------------------------------------------------------------


class _TimeRange(ma.Schema):
    since = ma.fields.AwareDateTime(
        load_default=None,
        metadata={"description": "ISO-8601 date and time with a time zone; entries at or after it"},
    )
    until = ma.fields.AwareDateTime(
        load_default=None,
        metadata={"description": "ISO-8601 date and time with a time zone; entries before it"},
    )

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("since") is not None and data.get("until") is not None and data["since"] >= data["until"]:
            raise ma.ValidationError("Must be later than since.", field_name="until")


class FilterQuerySchema(_TimeRange):
    subject = ma.fields.String(
        load_default=None,
        validate=ma.validate.Regexp(_SUBJECT),
        metadata={"description": "An id the entry is about: customer (entity), record or data subject id"},
    )
    actor = ma.fields.String(
        load_default=None,
        validate=ma.validate.Regexp(_ACTOR),
        metadata={
            "description": "Who acted: a client id, `user:<id>`, `customer:<record id>`, `system:<name>`"
        },
    )
    action = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf(sorted(ACTIONS)),
        metadata={"description": "An action of the catalog, e.g. `profile.read`"},
    )
    outcome = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf([o.value for o in Outcome]),
        metadata={"description": "`success`, `denied`, `not_found` or `failed`"},
    )


class _Cursor(ma.Schema):
    cursor = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(1, 200),
        metadata={"description": "`next_cursor` of the previous page"},
    )


class SearchQuerySchema(FilterQuerySchema, _Cursor):
    limit = ma.fields.Integer(
        load_default=100,
        validate=ma.validate.Range(1, MAX_PAGE),
        metadata={"description": f"At most this many entries (1 to {MAX_PAGE})"},
    )


class ExportQuerySchema(FilterQuerySchema):
    format = ma.fields.String(
        load_default="jsonl",
        validate=ma.validate.OneOf(["jsonl", "csv"]),
        metadata={
            "description": "`jsonl` (one JSON entry per line, for tools) or `csv` (for people). A slice "
            "verifiable offline against a signed checkpoint is `cdp audit export`."
        },
    )


class ReportQuerySchema(_TimeRange):
    pass


class StatusQuerySchema(ma.Schema):
    verify = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Also recompute the whole chain and check every checkpoint (slow)"},
    )


class CheckpointQuerySchema(ma.Schema):
    after = ma.fields.Integer(
        load_default=0,
        validate=ma.validate.Range(0, MAX_SEQ),
        metadata={"description": "Only checkpoints of larger `seq` (`next_after` of the previous page)"},
    )
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, MAX_PAGE))


class AccessLogQuerySchema(_Cursor):
    limit = ma.fields.Integer(
        load_default=50,
        validate=ma.validate.Range(1, MAX_ACCESS_LOG_PAGE),
        metadata={"description": f"At most this many accesses (1 to {MAX_ACCESS_LOG_PAGE})"},
    )


_TIME = {"format": "date-time"}


class EntrySchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "Entry id"})
    seq = ma.fields.Integer(allow_none=True, metadata={"description": "Position in the chain; null: pending"})
    recorded_at = ma.fields.String(metadata={**_TIME, "description": "UTC, microseconds, as hashed"})
    action = ma.fields.String(metadata={"description": "Action of the catalog"})
    outcome = ma.fields.String(metadata={"description": "`success`, `denied`, `not_found` or `failed`"})
    actor = ma.fields.String(metadata={"description": "Principal id (never a name)"})
    actor_kind = ma.fields.String(
        metadata={"description": "`client`, `user`, `customer`, `operator`, `system` or `anonymous`"}
    )
    role = ma.fields.String(allow_none=True)
    department = ma.fields.String(allow_none=True)
    purpose = ma.fields.String(allow_none=True)
    request_id = ma.fields.String(allow_none=True)
    subjects = ma.fields.List(ma.fields.String(), metadata={"description": "Ids the entry is about"})
    field_names = ma.fields.List(
        ma.fields.String(),
        attribute="fields",
        data_key="fields",
        metadata={"description": "Names of the fields involved"},
    )
    details = ma.fields.Dict(metadata={"description": "Counts, reason codes and names, never values"})
    prev_hash = ma.fields.String(allow_none=True, metadata={"description": "Hash of the previous entry"})
    hash = ma.fields.String(allow_none=True, metadata={"description": "SHA-256 of the canonical entry"})
    sealed_at = ma.fields.String(allow_none=True, metadata=_TIME)


class EntryPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EntrySchema), metadata={"description": "Newest first"})
    next_cursor = ma.fields.String(allow_none=True)


class AccessCountSchema(ma.Schema):
    department = ma.fields.String(allow_none=True)
    role = ma.fields.String(allow_none=True)
    purpose = ma.fields.String(allow_none=True)
    action = ma.fields.String()
    outcome = ma.fields.String()
    count = ma.fields.Integer()


class AccessReportSchema(ma.Schema):
    since = ma.fields.String(metadata=_TIME)
    until = ma.fields.String(metadata=_TIME)
    read_actions = ma.fields.List(
        ma.fields.String(), metadata={"description": "Actions counted whatever their outcome"}
    )
    total = ma.fields.Integer()
    rows = ma.fields.List(
        ma.fields.Nested(AccessCountSchema),
        metadata={
            "description": "Reads of personal data (any outcome) and refused attempts of any action, "
            "by department, role, purpose, action and outcome; largest first"
        },
    )


class CheckpointSchema(ma.Schema):
    origin = ma.fields.String(metadata={"description": "The installation that signed it"})
    seq = ma.fields.Integer(metadata={"description": "The first `seq` entries are covered"})
    head_hash = ma.fields.String(metadata={"description": "Hash of entry `seq`"})
    signed_at = ma.fields.String(metadata=_TIME)
    key_id = ma.fields.String()
    signature = ma.fields.String(metadata={"description": "Ed25519 signature of `message`, hex"})
    message = ma.fields.String(metadata={"description": "The exact text signed"})


class CheckpointStatusSchema(CheckpointSchema):
    signature_valid = ma.fields.Boolean()
    matches_chain = ma.fields.Boolean(
        metadata={"description": "The entry at `seq` still carries the signed hash"}
    )


_KEYS = ma.fields.Dict(
    keys=ma.fields.String(),
    values=ma.fields.String(),
    metadata={"description": "Checkpoint public keys (raw Ed25519, hex) by key id, retired ones included"},
)


class VerificationSchema(ma.Schema):
    ok = ma.fields.Boolean()
    entries_verified = ma.fields.Integer()
    first_seq = ma.fields.Integer()
    head_seq = ma.fields.Integer()
    head_hash = ma.fields.String()
    checkpoints_verified = ma.fields.Integer()
    latest_checkpoint_seq = ma.fields.Integer(allow_none=True)
    pending = ma.fields.Integer()
    first_problem = ma.fields.String(
        allow_none=True, metadata={"description": "The first bad entry, and why"}
    )


class ChainStatusSchema(ma.Schema):
    origin = ma.fields.String()
    head_seq = ma.fields.Integer(metadata={"description": "Entries sealed into the chain"})
    head_hash = ma.fields.String()
    head_intact = ma.fields.Boolean(
        allow_none=True, metadata={"description": "The head entry still hashes to its hash"}
    )
    pending = ma.fields.Integer(metadata={"description": "Entries recorded, not yet sealed"})
    oldest_pending_at = ma.fields.String(allow_none=True, metadata=_TIME)
    unsigned = ma.fields.Integer(metadata={"description": "Sealed entries after the latest checkpoint"})
    latest_checkpoint = ma.fields.Nested(CheckpointStatusSchema, allow_none=True)
    public_keys = _KEYS
    verification = ma.fields.Nested(
        VerificationSchema, metadata={"description": "The full verification, with `verify=true` only"}
    )


class CheckpointPageSchema(ma.Schema):
    checkpoints = ma.fields.List(ma.fields.Nested(CheckpointSchema), metadata={"description": "By seq"})
    next_after = ma.fields.Integer(allow_none=True)
    public_keys = _KEYS


class AccessEventSchema(ma.Schema):
    at = ma.fields.String(metadata=_TIME)
    action = ma.fields.String(metadata={"description": "`profile.read` or `timeline.read`"})
    department = ma.fields.String(allow_none=True)
    role = ma.fields.String(allow_none=True)
    purpose = ma.fields.String(allow_none=True)
    outcome = ma.fields.String(metadata={"description": "`success`, or why it was refused"})


class AccessLogSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AccessEventSchema), metadata={"description": "Newest first"})
    next_cursor = ma.fields.String(allow_none=True)


# -- helpers ------------------------------------------------------------------------------------------

_FILTERS = ("subject", "actor", "action", "outcome", "since", "until")


def _filters(query: dict[str, Any]) -> dict[str, Any]:
    return {name: query.get(name) for name in _FILTERS}


def _described(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as audit details: the subject goes to the entry's subjects instead (so a search for a
    customer is itself found by searching for that customer), times in the canonical spelling."""
    out: dict[str, Any] = {}
    for name in ("actor", "action", "outcome"):
        if filters.get(name) is not None:
            out[name] = str(filters[name])
    for name in ("since", "until"):
        if filters.get(name) is not None:
            out[name] = timestamp(filters[name])
    return out


def _subjects(filters: dict[str, Any]) -> tuple[str, ...]:
    return (filters["subject"],) if filters.get("subject") else ()


def _record(event: AuditEvent) -> None:
    record_now(current_platform().db, event)


@contextmanager
def _cursor_problems() -> Iterator[None]:
    try:
        yield
    except InvalidCursor:
        raise Problem(400, title="Invalid cursor", detail="The cursor is not one this API issued") from None


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one that starts like a formula gets a leading ``'`` (OWASP's
    CSV injection advice), so opening an export never runs something an actor id or detail smuggled in."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_row(entry: Entry) -> list[str]:
    values = entry.to_dict()
    values["subjects"] = ";".join(entry.subjects)
    values["fields"] = ";".join(entry.fields)
    values["details"] = canonical_json(entry.details)
    return [csv_cell("" if values[name] is None else str(values[name])) for name in CSV_COLUMNS]


def _csv_lines(entries: Iterable[Entry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(_csv_row(entry))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _jsonl_lines(entries: Iterable[Entry]) -> Iterator[str]:
    for entry in entries:
        yield canonical_json(entry.to_dict()) + "\n"


# -- compliance views ---------------------------------------------------------------------------------


@blp.route("/entries", methods=["GET"])
@require_scope("audit:read", "audit.search")
@blp.arguments(SearchQuerySchema, location="query")
@blp.response(200, EntryPageSchema)
@blp.alt_response(400, description="The cursor is not one this API issued", **_PROBLEM)
@blp.doc(security=_AUDIT)
def search_entries(query: dict[str, Any]) -> ResponseReturnValue:
    """Audit entries matching every filter given, newest first, paginated by cursor.

    Pending entries (recorded, not yet sealed into the chain) are included with a null `seq`.
    """
    filters = _filters(query)
    with _cursor_problems():
        page = search(current_platform().db, **filters, limit=query["limit"], cursor=query["cursor"])
    _record(
        AuditEvent(
            "audit.search",
            subjects=_subjects(filters),
            details={
                **_described(filters),
                "limit": query["limit"],
                "continued": query["cursor"] is not None,
                "returned": len(page.items),
            },
        )
    )
    return page.to_dict()


@blp.route("/reports/access", methods=["GET"])
@require_scope("audit:read", "audit.report")
@blp.arguments(ReportQuerySchema, location="query")
@blp.response(200, AccessReportSchema)
@blp.alt_response(400, description="The range is empty", **_PROBLEM)
@blp.doc(security=_AUDIT)
def report_access(query: dict[str, Any]) -> ResponseReturnValue:
    """Who accessed personal data: counts by department, role, purpose, action and outcome.

    Counts reads of customer data (`profile.read`, `timeline.read`) whatever their outcome, and refused
    attempts of any action. Without a range: the last 30 days.
    """
    until: datetime = query["until"] or utcnow()
    # Clamped at the first representable instant: "until year 1" minus 30 days is no date at all.
    earliest = datetime.min.replace(tzinfo=UTC)
    default_since = (
        until - timedelta(days=REPORT_DAYS) if until - earliest > timedelta(days=REPORT_DAYS) else earliest
    )
    since: datetime = query["since"] or default_since
    if since >= until:
        raise Problem(400, title="Empty range", detail="since must be earlier than until")
    report = access_report(current_platform().db, since, until)
    _record(
        AuditEvent(
            "audit.report",
            details={"since": timestamp(since), "until": timestamp(until), "rows": len(report.rows)},
        )
    )
    return report.to_dict()


@blp.route("/export", methods=["GET"])
@require_scope("audit:read", "audit.export")
@blp.arguments(ExportQuerySchema, location="query")
@blp.response(
    200,
    EntrySchema,
    content_type=NDJSON,
    description="A download: one entry per line oldest first (`jsonl`), or a CSV table with `subjects` "
    "and `fields` joined by `;`, `details` as JSON and formula-like cells prefixed with `'` (`csv`)",
    headers={
        "Content-Disposition": {"description": "`attachment` and a file name", "schema": {"type": "string"}},
        "X-Audit-Entries": {"description": "How many entries the file holds", "schema": {"type": "integer"}},
    },
)
@blp.alt_response(400, description="The range is empty", **_PROBLEM)
@blp.doc(responses={200: {"content": {CSV: {"schema": {"type": "string"}}}}}, security=_AUDIT)
def export_entries(query: dict[str, Any]) -> ResponseReturnValue:
    """Every entry matching the filters, streamed oldest first.

    Sealed entries come in chain order, then the pending ones. The export is audited before it starts,
    with its format, filters and the number of entries it holds; entries recorded after the request
    began (its own entry among them) are not part of it.
    """
    db = current_platform().db
    started = utcnow()
    filters = _filters(query)
    if filters["until"] is None or filters["until"] > started:
        filters["until"] = started
    if filters["since"] is not None and filters["since"] >= filters["until"]:
        raise Problem(400, title="Empty range", detail="since must be earlier than until")
    total = count(db, **filters)
    _record(
        AuditEvent(
            "audit.export",
            subjects=_subjects(filters),
            details={**_described(filters), "format": query["format"], "count": total},
        )
    )
    entries = iter_export(db, **filters, limit=total)
    is_csv = query["format"] == "csv"
    lines = _csv_lines(entries) if is_csv else _jsonl_lines(entries)
    name = f"audit-{started.strftime('%Y%m%dT%H%M%SZ')}.{query['format']}"
    response = Response(lines, mimetype=CSV if is_csv else NDJSON)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Audit-Entries"] = str(total)
    return response


@blp.route("/status", methods=["GET"])
@require_scope("audit:read", "audit.status")
@blp.arguments(StatusQuerySchema, location="query")
@blp.response(200, ChainStatusSchema)
@blp.doc(security=_AUDIT)
def status(query: dict[str, Any]) -> ResponseReturnValue:
    """The chain at a glance, optionally fully verified.

    Head, pending entries, the latest checkpoint (its signature checked and its head compared with the
    chain) and the public keys, in a few indexed reads. `verify=true` adds the full verification (every
    entry re-hashed, every checkpoint checked), recorded as `audit.verify`.
    """
    platform = current_platform()
    body = chain_status(platform.db, platform.vault, platform.settings.issuer).to_dict()
    if query["verify"]:
        report = AuditService(platform.db, platform.vault, platform.settings.issuer).verify()
        body["verification"] = report.to_dict()
        details: dict[str, Any] = {"ok": report.ok, "entries": report.entries}
        problem = report.first_problem
        if problem is not None and problem.seq is not None:
            details["problem_seq"] = problem.seq
        _record(AuditEvent("audit.verify", details=details))
    return body


@blp.route("/checkpoints", methods=["GET"])
@require_scope("audit:read", "audit.status")
@blp.arguments(CheckpointQuerySchema, location="query")
@blp.response(200, CheckpointPageSchema)
@blp.doc(security=_AUDIT)
def list_checkpoints(query: dict[str, Any]) -> ResponseReturnValue:
    """Signed checkpoints by `seq`, with every checkpoint public key.

    What an export is verified against offline: each signature covers the `message` shown, built from
    the origin, the number of entries covered, the head hash and the signing time.
    """
    platform = current_platform()
    page = checkpoints(platform.db, platform.vault, after=query["after"], limit=query["limit"])
    return page.to_dict()


# -- a customer's access log --------------------------------------------------------------------------


@self_blp.route("/access-log", methods=["GET"])
@require_scope("self:read", "audit.transparency")
@self_blp.arguments(AccessLogQuerySchema, location="query")
@self_blp.response(200, AccessLogSchema)
@self_blp.alt_response(400, description="The cursor is not one this API issued", **_PROBLEM)
@self_blp.alt_response(403, description="Only a signed-in customer has an access log", **_PROBLEM)
@self_blp.doc(security=_SELF)
def access_log(query: dict[str, Any]) -> ResponseReturnValue:
    """Who accessed your data (customers).

    When, what, and by which department, role and purpose; never who by name or id. Newest first; your
    own reads are left out.
    """
    record_id = current_principal().customer_record_id
    if record_id is None:
        raise Problem(403, title="Forbidden", detail="Only a signed-in customer has an access log")
    db = current_platform().db
    subjects = customer_subjects(db, record_id)
    with _cursor_problems():
        page = transparency(db, subjects, limit=query["limit"], cursor=query["cursor"])
    _record(AuditEvent("audit.transparency", subjects=subjects, details={"returned": len(page.items)}))
    return page.to_dict()
