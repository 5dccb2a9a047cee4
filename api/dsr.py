"""Data-subject requests over HTTP: customers' own access and erasure requests, the DPO's handling of
requests made by letter or phone, the one-time export download, and signed destruction receipts.

* ``/v1/me/requests`` (``self:read`` to look, ``self:write`` to ask) — a signed-in customer's requests.
  Their sign-in verified them, so an access request is carried out at once and answered with a one-time
  download link (shown in that response only; only its hash is stored), and an erasure is carried out at
  once unless a DPO must approve it first (then ``202``).
* ``/v1/dsr/requests`` (``dsr:manage``: the DPO) — open a request on a customer's behalf (a one-time code
  goes to the email on file), verify it with the code the customer gives back, approve (a second person:
  the DPO who opened a request on someone's behalf cannot approve it), reject with a reason, carry out.
* ``/v1/dsr/downloads/{token}`` — no credentials: the token *is* the capability. One use, expiring; an
  unknown, expired or used token gets one and the same ``404``. The token never reaches a log line, an
  audit entry or an error body: the path is redacted in the WSGI environ (which the server's access log
  reads) and in problem bodies (``instance``).
* ``/v1/receipts`` (``audit:read``) — erasure receipts and destruction certificates with their Ed25519
  signature, and whether it verifies. ``audit:read`` because a receipt is evidence for auditors and
  compliance officers as much as for the DPO (who holds ``audit:read`` too); an operation declares one
  scope.

Every change is audited by the service in the transaction that makes it (``dsr.request``, ``dsr.verify``,
``dsr.approve``, ``dsr.reject``, ``dsr.export``, ``dsr.erase``, ``dsr.export.download``, ``work.*``);
reads record ``dsr.read`` / ``dsr.receipt`` with the ids they reveal.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from flask import Flask, Response, current_app, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue

from api.auditing import outcome_of
from api.context import current_platform, current_request_id
from api.errors import PROBLEM_JSON, Problem, ProblemSchema, problem_response
from api.oauth import current_principal, require_scope
from api.paths import path_id, uuid_parameter
from api.profiles import actor_of
from api.smorest import Blueprint
from cdp.access.gate import AccessDenied, Actor, UnknownPurpose
from cdp.audit import AuditActor, AuditEvent, Outcome, acting_as, current_scope, record_now
from cdp.dsr.archives import ArchiveIntegrityError, ArchiveStore, DownloadUnavailable
from cdp.dsr.receipts import KINDS as RECEIPT_KINDS
from cdp.dsr.receipts import ReceiptNotFound, Receipts, SignedReceipt
from cdp.dsr.service import (
    KINDS,
    REJECTION_REASONS,
    DsrError,
    DsrNotFound,
    DsrService,
    DsrView,
    Processed,
    VerificationFailed,
)
from cdp.profiles.service import ProfileNotFound

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

blp = Blueprint(
    "dsr",
    __name__,
    url_prefix="/v1/dsr",
    description="Data-subject requests handled by the DPO, and the one-time export download",
)
self_blp = Blueprint(
    "dsr_self",
    __name__,
    url_prefix="/v1/me",
    description="A signed-in customer's own access (export) and erasure requests",
)
receipts_blp = Blueprint(
    "receipts",
    __name__,
    url_prefix="/v1/receipts",
    description="Signed erasure receipts and destruction certificates",
)

STATUSES = ("received", "verifying", "awaiting_approval", "in_progress", "completed", "rejected")
MAX_PAGE = 200
DOWNLOAD_PREFIX = "/v1/dsr/downloads/"
REDACTED_DOWNLOAD_PATH = DOWNLOAD_PREFIX + "[redacted]"
"""What logs and problem bodies show instead of a download path: the token is a bearer capability."""
DOWNLOAD_PROBLEM = "https://cdp.example/problems/download-unavailable"
VERIFICATION_PROBLEM = "https://cdp.example/problems/verification-failed"
_SERVICE_KEY = "cdp_dsr_service"
_MANAGE = [{"oauth2": ["dsr:manage"]}]
_SELF_READ = [{"oauth2": ["self:read"]}]
_SELF_WRITE = [{"oauth2": ["self:write"]}]
_AUDIT = [{"oauth2": ["audit:read"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
_TIME = {"format": "date-time"}
_URI_KEYS = ("PATH_INFO", "RAW_URI", "REQUEST_URI")


# -- schemas ------------------------------------------------------------------------------------------


class OwnRequestSchema(ma.Schema):
    """A request as its customer sees it: no staff ids, queues or assignees."""

    id = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "`access` (an export of your data) or `erasure`"})
    status = ma.fields.String(metadata={"description": f"One of: {', '.join(STATUSES)}"})
    customer_id = ma.fields.String(metadata={"description": "The customer (resolved entity) id"})
    channel = ma.fields.String(metadata={"description": "`self_service` or `on_behalf` (by letter, phone)"})
    received_at = ma.fields.String(metadata=_TIME)
    due_at = ma.fields.String(metadata={**_TIME, "description": "The statutory deadline"})
    overdue = ma.fields.Boolean()
    days_left = ma.fields.Float(allow_none=True, metadata={"description": "Days until due; null once closed"})
    verified_at = ma.fields.String(allow_none=True, metadata=_TIME)
    verification = ma.fields.String(
        allow_none=True, metadata={"description": "`signed_in` or `email_code`; null until verified"}
    )
    approval_required = ma.fields.Boolean()
    approved_at = ma.fields.String(allow_none=True, metadata=_TIME)
    completed_at = ma.fields.String(allow_none=True, metadata=_TIME)
    rejected_reason = ma.fields.String(
        allow_none=True, metadata={"description": f"One of: {', '.join(REJECTION_REASONS)}"}
    )
    rejected_detail = ma.fields.String(allow_none=True)
    result_id = ma.fields.String(
        allow_none=True, metadata={"description": "The export archive or the erasure receipt"}
    )


class RequestSchema(OwnRequestSchema):
    opened_by = ma.fields.String(
        metadata={"description": "`customer:<record id>`, a client id or `user:<id>`: who opened it"}
    )
    approved_by = ma.fields.String(allow_none=True)
    queue = ma.fields.String(allow_none=True, metadata={"description": "The work queue it was routed to"})
    assignee = ma.fields.String(allow_none=True)


class ReceiptSchema(ma.Schema):
    id = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "`erasure_receipt` or `destruction_certificate`"})
    issued_at = ma.fields.String(metadata=_TIME)
    statement = ma.fields.String(
        metadata={"description": "Canonical JSON of ids, counts, categories and policy versions (signed)"}
    )
    algorithm = ma.fields.String(metadata={"description": "`Ed25519`"})
    key_id = ma.fields.String()
    public_key = ma.fields.String(metadata={"description": "Hex; the key that signs audit checkpoints too"})
    signature = ma.fields.String(
        metadata={"description": "Hex Ed25519 signature over `cdp-destruction/1\\n` + statement"}
    )
    valid = ma.fields.Boolean(metadata={"description": "Whether the signature verifies under public_key"})


class DownloadSchema(ma.Schema):
    url = ma.fields.String(
        metadata={
            "description": "Path on this API (relative to its origin); fetch it once, without credentials. "
            "Shown in this response only."
        }
    )
    expires_at = ma.fields.String(metadata=_TIME)


class OwnOutcomeSchema(OwnRequestSchema):
    download = ma.fields.Nested(
        DownloadSchema, metadata={"description": "An access request carried out now: the one-time link"}
    )
    receipt = ma.fields.Nested(
        ReceiptSchema, metadata={"description": "An erasure carried out now: the signed receipt"}
    )


class OutcomeSchema(RequestSchema):
    receipt = ma.fields.Nested(
        ReceiptSchema, metadata={"description": "An erasure carried out: the signed receipt"}
    )


class OwnRequestBodySchema(ma.Schema):
    kind = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(KINDS),
        metadata={"description": "`access`: a copy of your data; `erasure`: erase your data"},
    )


class OnBehalfBodySchema(OwnRequestBodySchema):
    customer_id = ma.fields.UUID(required=True, metadata={"description": "The customer (resolved entity) id"})


class SearchQuerySchema(ma.Schema):
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATUSES))
    overdue = ma.fields.Boolean(
        load_default=False, metadata={"description": "Only open requests past their statutory deadline"}
    )
    customer_id = ma.fields.UUID(load_default=None)
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, MAX_PAGE))


class VerifyBodySchema(ma.Schema):
    code = ma.fields.String(
        required=True,
        validate=ma.validate.Length(1, 32),
        metadata={"description": "The one-time code the customer received by email and gave back"},
    )


class RejectBodySchema(ma.Schema):
    reason = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(REJECTION_REASONS),
        metadata={"description": f"One of: {', '.join(REJECTION_REASONS)}"},
    )
    detail = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=300),
        metadata={"description": "What the customer is told beyond the reason (no personal data)"},
    )


class ReceiptQuerySchema(ma.Schema):
    kind = ma.fields.String(load_default=None, validate=ma.validate.OneOf(RECEIPT_KINDS))
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, MAX_PAGE))


# -- helpers ------------------------------------------------------------------------------------------


def dsr_service() -> DsrService:
    """One service per app and platform: the retention policy and routing rules are parsed once (the
    retention API applies the same policy)."""
    platform = current_platform()
    cached = current_app.extensions.get(_SERVICE_KEY)
    if (
        isinstance(cached, DsrService)
        and cached.db is platform.db
        and cached.vault is platform.vault
        and cached.settings is platform.settings
    ):
        return cached
    service = DsrService.for_platform(platform)
    current_app.extensions[_SERVICE_KEY] = service
    return service


def audit_read(action: str, subjects: Iterable[object], **details: str | int | bool) -> None:
    """Record a read with the ids it reveals (committed before the answer leaves), replacing
    require_scope's bare entry."""
    record_now(
        current_platform().db,
        AuditEvent(action, subjects=tuple(dict.fromkeys(str(s) for s in subjects)), details=details),
    )


@contextmanager
def _dsr_problems() -> Iterator[None]:
    """The services' refusals as problems. Their messages name ids, kinds, states and roles only."""
    try:
        yield
    except DsrNotFound as exc:
        raise Problem(404, title="Not Found", detail=_sentence(exc)) from None
    except DsrError as exc:
        raise Problem(409, title="Conflict", detail=_sentence(exc)) from None
    except ProfileNotFound:
        raise Problem(404, title="Not Found", detail="No such customer") from None
    except (AccessDenied, UnknownPurpose) as exc:
        raise Problem(403, title="Forbidden", detail=_sentence(exc)) from None


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def _own_actor() -> Actor:
    actor = actor_of(current_principal())
    if actor.customer_record_id is None:
        raise Problem(403, title="Forbidden", detail="Only a signed-in customer has own requests")
    return actor


def _receipt(receipt: SignedReceipt) -> dict[str, Any]:
    return {**receipt.to_dict(), "valid": receipt.verify()}


def _outcome(processed: Processed, *, link: bool = False) -> dict[str, Any]:
    """The request as carried out, with the receipt of an erasure and, for the customer who asked
    (``link``), the one-time link of their export. Staff never receive a customer's link."""
    body = processed.request.to_dict()
    if link and processed.download_token is not None:
        platform = current_platform()
        expires_at = None
        if processed.request.result_id is not None:
            with platform.db.read() as session:
                info = ArchiveStore(session, platform.vault).get(processed.request.result_id)
            expires_at = info.expires_at.isoformat() if info is not None else None
        body["download"] = {
            "url": url_for("dsr.download_export", token=processed.download_token),
            "expires_at": expires_at,
        }
    if processed.receipt is not None:
        body["receipt"] = _receipt(processed.receipt)
    return body


def _request_subjects(views: Iterable[DsrView]) -> list[str]:
    subjects: list[str] = []
    for view in views:
        subjects += [str(view.entity_id), str(view.id)]
    return subjects


# -- the download's secrecy ---------------------------------------------------------------------------


def _names_a_download(environ: WSGIEnvironment) -> bool:
    return any("/dsr/downloads/" in str(environ.get(key, "")) for key in _URI_KEYS)


class RedactDownloadPaths:
    """WSGI middleware: once the app has answered, the download path in the environ is replaced by
    :data:`REDACTED_DOWNLOAD_PATH`.

    Why the environ: gunicorn's access log (``cdp serve`` logs ``%(U)s``, its default format ``%(r)s``)
    formats ``PATH_INFO`` and ``RAW_URI`` from the very environ dict the app received, after the app has
    returned. Werkzeug had already routed the request, so the view saw the real token."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self.app(environ, start_response)
        finally:
            if _names_a_download(environ):
                for key in _URI_KEYS:
                    if key in environ:
                        environ[key] = REDACTED_DOWNLOAD_PATH


def _install_redaction(state: BlueprintSetupState) -> None:
    app = state.app
    assert isinstance(app, Flask)
    if not isinstance(app.wsgi_app, RedactDownloadPaths):
        app.wsgi_app = RedactDownloadPaths(app.wsgi_app)  # type: ignore[method-assign]


blp.record_once(_install_redaction)


def _redact_problem_instance(response: Response) -> Response:
    """A problem names its request path in ``instance``; on a download path that would echo the token
    (a 404, a 405, a 500 alike)."""
    if request.path.startswith(DOWNLOAD_PREFIX) and response.mimetype == PROBLEM_JSON:
        body = response.get_json(silent=True)
        if isinstance(body, dict) and "instance" in body:
            body["instance"] = REDACTED_DOWNLOAD_PATH
            response.set_data(current_app.json.dumps(body))
    return response


blp.after_app_request(_redact_problem_instance)


# -- customers ----------------------------------------------------------------------------------------


@self_blp.route("/requests", methods=["POST"])
@require_scope("self:write", "dsr.request")
@self_blp.arguments(OwnRequestBodySchema)
@self_blp.response(201, OwnOutcomeSchema, description="Carried out now (an export, or an erasure)")
@self_blp.alt_response(
    202, schema=OwnOutcomeSchema, success=True, description="An erasure waiting for the DPO's approval"
)
@self_blp.alt_response(403, description="Only a signed-in customer has own requests", **_PROBLEM)
@self_blp.alt_response(404, description="Your profile is not available yet", **_PROBLEM)
@self_blp.alt_response(409, description="You already have an open request of this kind", **_PROBLEM)
@self_blp.doc(security=_SELF_WRITE)
def open_own_request(body: dict[str, Any]) -> ResponseReturnValue:
    """Ask for a copy of your data or for its erasure (customers).

    Your sign-in verifies you. An access request is answered at once with a download link that works
    once and expires: save the file, the link is not shown again. An erasure is carried out at once and
    answered with its signed receipt, and your sign-ins end; if the DPO must approve erasures first,
    the answer is `202` and the request waits.
    """
    actor = _own_actor()
    service = dsr_service()
    with _dsr_problems():
        view = service.open_self_service(actor, body["kind"])
        if view.status != "in_progress":
            return view.to_dict(), 202
        processed = service.process(view.id)
    return _outcome(processed, link=True)


@self_blp.route("/requests", methods=["GET"])
@require_scope("self:read", "dsr.read")
@self_blp.response(200, OwnRequestSchema(many=True))
@self_blp.alt_response(403, description="Only a signed-in customer has own requests", **_PROBLEM)
@self_blp.doc(security=_SELF_READ)
def own_requests() -> ResponseReturnValue:
    """Your requests, newest first (customers), with their status and statutory deadline."""
    actor = _own_actor()
    with _dsr_problems():
        views = dsr_service().mine(actor)
    audit_read("dsr.read", _request_subjects(views), requests=len(views))
    return [view.to_dict() for view in views]


@self_blp.route(
    "/requests/<request_id>", methods=["GET"], parameters=[uuid_parameter("request_id", "Your request's id")]
)
@require_scope("self:read", "dsr.read")
@self_blp.response(200, OwnRequestSchema)
@self_blp.alt_response(404, description="No such request of yours", **_PROBLEM)
@self_blp.doc(security=_SELF_READ)
def own_request(request_id: str) -> ResponseReturnValue:
    """One of your requests (customers); anyone else's is `404`."""
    wanted = path_id("request_id", request_id)
    actor = _own_actor()
    with _dsr_problems():
        found = [view for view in dsr_service().mine(actor) if view.id == wanted]
    if not found:
        raise Problem(404, title="Not Found", detail="No such request of yours")
    audit_read("dsr.read", _request_subjects(found), requests=1)
    return found[0].to_dict()


# -- the download -------------------------------------------------------------------------------------


def _unavailable() -> Response:
    return problem_response(
        404,
        title="Download unavailable",
        type=DOWNLOAD_PROBLEM,
        detail="This download link is not valid: it is unknown, expired or already used. "
        "Ask for a new export.",
    )


@blp.route(
    "/downloads/<token>",
    methods=["GET"],
    parameters=[
        {
            "in": "path",
            "name": "token",
            "required": True,
            "description": "The one-time token of the link you were given",
            "schema": {"type": "string", "maxLength": 128},
        }
    ],
)
@blp.doc(
    responses={
        "200": {
            "description": "The export: a zip with manifest.json (sizes and SHA-256 of every file)",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
@blp.alt_response(404, description="Unknown, expired or already used (one answer for all)", **_PROBLEM)
def download_export(token: str) -> ResponseReturnValue:
    """Fetch an export once, without credentials: the link is the capability.

    The archive is destroyed as it is handed out (its key shredded), so a second request, like one for
    an unknown or expired link, is `404`.
    """
    if request.method != "GET":
        # HEAD (which Flask adds to every GET route) must not spend the link without delivering it.
        return problem_response(405, detail="The download link takes GET only.", headers={"Allow": "GET"})
    platform = current_platform()
    with acting_as(AuditActor.anonymous(), current_request_id()):
        try:
            with platform.db.transaction() as session:
                info, content = ArchiveStore(session, platform.vault).redeem(token)
        except DownloadUnavailable:
            record_now(platform.db, AuditEvent("dsr.export.download", Outcome.NOT_FOUND))
            return _unavailable()
        except ArchiveIntegrityError:
            record_now(
                platform.db,
                AuditEvent("dsr.export.download", Outcome.FAILED, details={"error": "integrity"}),
            )
            raise
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode("ascii")
    response = current_app.response_class(content, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="cdp-export-{info.request_id}.zip"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["Repr-Digest"] = f"sha-256=:{digest}:"
    return response


# -- the DPO ------------------------------------------------------------------------------------------

_REQUEST_ID = uuid_parameter("request_id", "The data-subject request's id")


def _staff_write(
    request_id: str, call: Callable[[DsrService, uuid.UUID], DsrView | Processed]
) -> dict[str, Any]:
    wanted = path_id("request_id", request_id)
    with _dsr_problems():
        result = call(dsr_service(), wanted)
    return _outcome(result) if isinstance(result, Processed) else result.to_dict()


@blp.route("/requests", methods=["POST"])
@require_scope("dsr:manage", "dsr.request")
@blp.arguments(OnBehalfBodySchema)
@blp.response(201, RequestSchema)
@blp.alt_response(404, description="No such customer", **_PROBLEM)
@blp.alt_response(409, description="An open request of this kind exists, or no email on file", **_PROBLEM)
@blp.doc(security=_MANAGE)
def open_request(body: dict[str, Any]) -> ResponseReturnValue:
    """Open a request a customer made by letter or phone.

    A one-time code goes to the email the customer's records hold; the request waits in `verifying`
    until the customer gives the code back (`POST .../verify`).
    """
    principal = current_principal()
    with _dsr_problems():
        view = dsr_service().open_on_behalf(body["customer_id"], body["kind"], opened_by=principal.subject)
    return view.to_dict()


@blp.route("/requests", methods=["GET"])
@require_scope("dsr:manage", "dsr.read")
@blp.arguments(SearchQuerySchema, location="query")
@blp.response(200, RequestSchema(many=True))
@blp.doc(security=_MANAGE)
def search_requests(query: dict[str, Any]) -> ResponseReturnValue:
    """Requests, earliest deadline first: by status, overdue ones only, or one customer's."""
    views = dsr_service().search(
        status=query["status"],
        overdue=query["overdue"],
        entity_id=query["customer_id"],
        limit=query["limit"],
    )
    audit_read("dsr.read", _request_subjects(views), requests=len(views))
    return [view.to_dict() for view in views]


@blp.route("/requests/<request_id>", methods=["GET"], parameters=[_REQUEST_ID])
@require_scope("dsr:manage", "dsr.read")
@blp.response(200, RequestSchema)
@blp.alt_response(404, description="No such request", **_PROBLEM)
@blp.doc(security=_MANAGE)
def read_request(request_id: str) -> ResponseReturnValue:
    """One request: its status, deadline, verification, approval and outcome."""
    wanted = path_id("request_id", request_id)
    with _dsr_problems():
        view = dsr_service().get(wanted)
    audit_read("dsr.read", _request_subjects([view]), requests=1)
    return view.to_dict()


@blp.route("/requests/<request_id>/verify", methods=["POST"], parameters=[_REQUEST_ID])
@require_scope("dsr:manage", "dsr.verify")
@blp.arguments(VerifyBodySchema)
@blp.response(200, RequestSchema)
@blp.alt_response(400, description="Wrong or expired code, or too many attempts (`reason`)", **_PROBLEM)
@blp.alt_response(404, description="No such request", **_PROBLEM)
@blp.alt_response(409, description="The request is not waiting for verification", **_PROBLEM)
@blp.doc(security=_MANAGE)
def verify_request(body: dict[str, Any], request_id: str) -> ResponseReturnValue:
    """Verify the requester with the one-time code they received.

    A wrong code counts an attempt; after five, or once the code expired, the request can only be
    rejected. The problem's `reason` is `bad_code`, `expired_code` or `too_many_attempts`.
    """
    wanted = path_id("request_id", request_id)
    try:
        with _dsr_problems():
            view = dsr_service().verify(wanted, body["code"])
    except VerificationFailed as exc:
        # The service committed its own `dsr.verify` (denied) entry with the reason: answer, do not
        # raise, so the scope does not add a second entry for the same refusal.
        return problem_response(
            400,
            title="Verification failed",
            type=VERIFICATION_PROBLEM,
            detail="The code does not verify this request.",
            extensions={"reason": exc.reason},
        )
    return view.to_dict()


@blp.route("/requests/<request_id>/approve", methods=["POST"], parameters=[_REQUEST_ID])
@require_scope("dsr:manage", "dsr.approve")
@blp.response(200, RequestSchema)
@blp.alt_response(404, description="No such request", **_PROBLEM)
@blp.alt_response(409, description="Not awaiting approval, or you opened it for the customer", **_PROBLEM)
@blp.doc(security=_MANAGE)
def approve_request(request_id: str) -> ResponseReturnValue:
    """Approve a verified erasure request; carry it out with `POST .../process`."""
    approver = current_principal().subject
    return _staff_write(request_id, lambda service, wanted: service.approve(wanted, approver=approver))


@blp.route("/requests/<request_id>/reject", methods=["POST"], parameters=[_REQUEST_ID])
@require_scope("dsr:manage", "dsr.reject")
@blp.arguments(RejectBodySchema)
@blp.response(200, RequestSchema)
@blp.alt_response(404, description="No such request", **_PROBLEM)
@blp.alt_response(409, description="Already closed, or the erasure has started", **_PROBLEM)
@blp.doc(security=_MANAGE)
def reject_request(body: dict[str, Any], request_id: str) -> ResponseReturnValue:
    """Reject a request with one of the lawful reasons (and what the customer is told beyond it)."""
    return _staff_write(
        request_id,
        lambda service, wanted: service.reject(wanted, reason=body["reason"], detail=body["detail"]),
    )


@blp.route("/requests/<request_id>/process", methods=["POST"], parameters=[_REQUEST_ID])
@require_scope("dsr:manage", "dsr.erase")
@blp.response(200, OutcomeSchema)
@blp.alt_response(404, description="No such request", **_PROBLEM)
@blp.alt_response(409, description="Not ready to be carried out (verify or approve it first)", **_PROBLEM)
@blp.doc(security=_MANAGE)
def process_request(request_id: str) -> ResponseReturnValue:
    """Carry out a verified (and, for an erasure, approved) request.

    An export is built and its one-time link emailed to the customer; an erasure destroys the customer's
    data (except what a legal hold or a legal obligation keeps) and answers with the signed receipt.
    Safe to repeat: an interrupted erasure resumes, a completed request is returned as it is.
    """
    wanted = path_id("request_id", request_id)
    service = dsr_service()
    with _dsr_problems():
        view = service.get(wanted)
    try:
        with _dsr_problems():
            processed = service.process(wanted)
    except Problem as problem:
        # Unless the export builder already recorded its refusal, name it by what was asked for (an
        # export or an erasure) with the request's ids; committed now, so the scope adds no bare entry.
        scope = current_scope()
        if scope is None or not scope.committed:
            record_now(
                current_platform().db,
                AuditEvent(
                    "dsr.export" if view.kind == "access" else "dsr.erase",
                    outcome_of(problem),
                    "dsr",
                    (str(view.entity_id), str(view.id)),
                    details={"status": problem.status},
                ),
            )
        raise
    return _outcome(processed)


# -- receipts -----------------------------------------------------------------------------------------


def _receipt_subjects(receipt: SignedReceipt) -> list[str]:
    customer = receipt.content.get("customer_id")
    return [str(receipt.id), *([str(customer)] if customer else [])]


@receipts_blp.route("", methods=["GET"])
@require_scope("audit:read", "dsr.receipt")
@receipts_blp.arguments(ReceiptQuerySchema, location="query")
@receipts_blp.response(200, ReceiptSchema(many=True))
@receipts_blp.doc(security=_AUDIT)
def list_receipts(query: dict[str, Any]) -> ResponseReturnValue:
    """Erasure receipts and destruction certificates, newest first, each with its signature checked."""
    with current_platform().db.read() as session:
        receipts = Receipts(session, current_platform().vault).list(kind=query["kind"], limit=query["limit"])
    subjects = [subject for receipt in receipts for subject in _receipt_subjects(receipt)]
    audit_read("dsr.receipt", subjects, receipts=len(receipts))
    return [_receipt(receipt) for receipt in receipts]


@receipts_blp.route(
    "/<receipt_id>", methods=["GET"], parameters=[uuid_parameter("receipt_id", "The receipt's id")]
)
@require_scope("audit:read", "dsr.receipt")
@receipts_blp.response(200, ReceiptSchema)
@receipts_blp.alt_response(404, description="No such receipt", **_PROBLEM)
@receipts_blp.doc(security=_AUDIT)
def read_receipt(receipt_id: str) -> ResponseReturnValue:
    """One receipt or certificate with its signature checked (`valid`); verify it offline as well."""
    wanted = path_id("receipt_id", receipt_id)
    platform = current_platform()
    try:
        with platform.db.read() as session:
            receipt = Receipts(session, platform.vault).get(wanted)
    except ReceiptNotFound:
        raise Problem(404, title="Not Found", detail="No such receipt") from None
    audit_read("dsr.receipt", _receipt_subjects(receipt), receipts=1)
    return _receipt(receipt)
