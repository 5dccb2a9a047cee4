"""Every error leaves the API as an RFC 9457 problem (``application/problem+json``).

One shape for all failures means clients need one parser, and one place decides what an error may
reveal. Members: ``type``, ``title``, ``status``, ``detail``, ``instance`` (the request path) and
``request_id`` (so a user can quote it and an operator can find the log line), plus extension members
such as ``errors`` (field messages from marshmallow) where they apply.

Handlers, from most to least specific (Flask picks the closest class in the exception's MRO):

* :class:`Problem` — raised by our own views when they mean a specific problem;
* domain errors mapped with :func:`register_problem` (``DatabaseUnavailable`` → 503);
* werkzeug ``HTTPException`` — routing, method, size, media type, ``abort()`` and flask-smorest's 422;
* ``Exception`` — anything unexpected: a generic 500 whose log line names only the exception class.

Extension point: the OAuth layer will answer in RFC 6749/6750 shape (``error``/``error_description``,
``WWW-Authenticate``), not as problems. It registers its own handler for its exception classes with
``app.register_error_handler``; being more specific, that handler wins over the catch-alls here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from api.context import current_request_id
from cdp.db import UNAVAILABLE_ERRORS
from cdp.errors import DatabaseUnavailable

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://cdp.example/problems/"
ABOUT_BLANK = "about:blank"
VALIDATION_ERROR = PROBLEM_BASE + "validation-error"
DATABASE_UNAVAILABLE = PROBLEM_BASE + "database-unavailable"
NOT_READY = PROBLEM_BASE + "not-ready"

_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "request_id"})
_INTERNAL_DETAIL = "An unexpected error occurred. Quote the request id when reporting it."

logger = logging.getLogger(__name__)


class ProblemSchema(ma.Schema):
    """Documents the problem body in OpenAPI; responses are built directly, not dumped through it."""

    class Meta:
        # RFC 9457 problems may carry extension members (``errors``, ``checks``, later more); the
        # OpenAPI schema must not forbid them (apispec maps RAISE to additionalProperties: false).
        unknown = ma.INCLUDE

    type = ma.fields.String(
        required=True,
        metadata={"description": "URI naming the problem type; 'about:blank' for a plain HTTP status"},
    )
    title = ma.fields.String(required=True, metadata={"description": "Short, stable summary of the type"})
    status = ma.fields.Integer(required=True, metadata={"description": "HTTP status code"})
    detail = ma.fields.String(required=True, metadata={"description": "Explanation of this occurrence"})
    instance = ma.fields.String(required=True, metadata={"description": "Path of the request that failed"})
    request_id = ma.fields.String(
        required=True, metadata={"description": "Also sent as X-Request-ID; quote it when reporting"}
    )
    errors = ma.fields.Dict(
        metadata={"description": "Field messages by request location, for validation problems"}
    )


class Problem(Exception):
    """Raise from a view to answer with a specific problem instead of a bare HTTP status.

    ``extensions`` become extra top-level members; they must never carry secrets or personal data.
    """

    def __init__(
        self,
        status: int,
        *,
        title: str,
        detail: str,
        type: str = ABOUT_BLANK,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        # Only the title reaches Exception.args, so str(self) is as safe to log as the title.
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def problem_response(
    status: int,
    *,
    detail: str,
    title: str | None = None,
    type: str = ABOUT_BLANK,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Response:
    """Build the problem response; usable by any handler that needs to answer with a problem."""
    body: dict[str, Any] = {k: v for k, v in (extensions or {}).items() if k not in _STANDARD_MEMBERS}
    body.update(
        type=type,
        title=title or HTTP_STATUS_CODES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.path,
        request_id=current_request_id(),
    )
    response = current_app.response_class(current_app.json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


@dataclass(frozen=True)
class ProblemSpec:
    """How a domain exception is answered. The detail is fixed text: domain messages can name
    hosts, tables or key versions that are for operators, not for API clients."""

    status: int
    type: str
    title: str
    detail: str
    retry_after_seconds: int | None = None


def register_problem(app: Flask, exc_type: type[Exception], spec: ProblemSpec) -> None:
    """Answer ``exc_type`` (and subclasses) with ``spec``, logging only the class and request id."""

    def handle(exc: Exception) -> Response:
        logger.warning(
            "%s answered as %d (request_id=%s)", type(exc).__name__, spec.status, current_request_id()
        )
        headers = {"Retry-After": str(spec.retry_after_seconds)} if spec.retry_after_seconds else None
        return problem_response(
            spec.status, detail=spec.detail, title=spec.title, type=spec.type, headers=headers
        )

    app.register_error_handler(exc_type, handle)


def handle_problem(exc: Problem) -> Response:
    return problem_response(
        exc.status,
        detail=exc.detail,
        title=exc.title,
        type=exc.type,
        headers=exc.headers,
        extensions=exc.extensions,
    )


def handle_http_exception(exc: HTTPException) -> ResponseReturnValue:
    """Turn werkzeug's HTTP errors, including flask-smorest's validation aborts, into problems."""
    if exc.code is None or exc.code < 400:
        return exc  # not an error (a redirect raised as an exception): let werkzeug answer it
    if exc.response is not None:
        return exc.response  # abort(Response): the view built the answer on purpose
    status = exc.code
    # get_headers() carries Allow (405) and WWW-Authenticate (401); its Content-Type is replaced.
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    detail = exc.description or HTTP_STATUS_CODES.get(status, "Error")
    extensions: dict[str, Any] = {}
    problem_type, title = ABOUT_BLANK, None
    # webargs/flask-smorest abort() stores its keyword arguments on the exception as `data`.
    data = getattr(exc, "data", None)
    if isinstance(data, Mapping):
        if isinstance(data.get("message"), str):
            detail = data["message"]
        field_errors = data.get("errors", data.get("messages"))
        if field_errors is not None:
            extensions["errors"] = field_errors
        if isinstance(data.get("headers"), Mapping):
            headers.update(data["headers"])
    if status == 422 and "errors" in extensions:
        problem_type, title = VALIDATION_ERROR, "Request validation failed"
        if not (isinstance(data, Mapping) and isinstance(data.get("message"), str)):
            detail = "One or more request fields are invalid; see errors."
    return problem_response(
        status, detail=detail, title=title, type=problem_type, headers=headers, extensions=extensions
    )


def handle_unexpected(exc: Exception) -> Response:
    """A generic 500. The log names the exception class and request id only: str(exc) and tracebacks
    can hold the personal data the request was processing."""
    logger.error("unhandled %s (request_id=%s)", type(exc).__name__, current_request_id())
    return problem_response(500, detail=_INTERNAL_DETAIL)


def register_error_handlers(app: Flask) -> None:
    """Install the problem handlers; called once per app by :class:`api.smorest.CdpApi`."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Problem, handle_problem)
    unavailable = ProblemSpec(
        status=503,
        type=DATABASE_UNAVAILABLE,
        title="Database unavailable",
        detail="The database cannot be reached right now; try again later.",
        retry_after_seconds=5,
    )
    register_problem(app, DatabaseUnavailable, unavailable)
    # A connection lost or refused mid-request (the server restarting, a failover) or SQLite's busy
    # timeout: transient, so a 503 the client may retry, not a 500. The pool reconnects by itself.
    for transient in UNAVAILABLE_ERRORS:
        register_problem(app, transient, unavailable)
    app.register_error_handler(Exception, handle_unexpected)
