"""flask-smorest, typed and wired to our problem+json errors.

flask-smorest ships no type information, so under ``mypy --strict`` every view it decorates would turn
untyped. Blueprints in ``api/`` import :class:`Blueprint` from here instead: the same class, with
decorators that keep the view's signature. :class:`CdpApi` swaps flask-smorest's own error payload
(``code``/``status``/``message``) for RFC 9457 problems, both on the wire and in the OpenAPI document.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from flask import Flask
from flask_smorest.utils import prepare_response

from api.errors import PROBLEM_JSON, ProblemSchema, register_error_handlers

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Blueprint", "CdpApi"]


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest's Blueprint with decorators typed to preserve the decorated view."""

    def route(self, rule: str, **options: Any) -> Callable[[F], F]:
        return cast(Callable[[F], F], super().route(rule, **options))

    def response(self, status_code: int, schema: Any = None, **options: Any) -> Callable[[F], F]:
        return cast(Callable[[F], F], super().response(status_code, schema, **options))

    def alt_response(self, status_code: int, response: Any = None, **options: Any) -> Callable[[F], F]:
        return cast(Callable[[F], F], super().alt_response(status_code, response, **options))

    def arguments(self, schema: Any, **options: Any) -> Callable[[F], F]:
        # webargs instantiates a schema class on every request; one instance serves them all (marshmallow
        # 4 schemas keep no per-load state), which saves a schema construction on every call.
        if isinstance(schema, type) and issubclass(schema, ma.Schema):
            schema = schema()
        return cast(Callable[[F], F], super().arguments(schema, **options))

    def doc(self, **kwargs: Any) -> Callable[[F], F]:
        return cast(Callable[[F], F], super().doc(**kwargs))


TOKEN_REJECTED = "TokenRejected"  # noqa: S105 - a component name, not a secret
SCOPE_MISSING = "ScopeMissing"
UNAVAILABLE = "Unavailable"


class SharedErrorResponses(BasePlugin):
    """Documents the errors every operation can answer, whatever its view says: a bearer token missing
    or rejected (401) and a scope missing (403) on every protected operation, and the database being
    unreachable (503) on all of them — so a client's generated code knows each status it must handle."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            documented = {str(status) for status in responses}  # flask-smorest keys some by int
            shared = [("503", UNAVAILABLE)]
            if operation.get("security"):
                shared += [("401", TOKEN_REJECTED), ("403", SCOPE_MISSING)]
            for status, component in shared:
                if status not in documented:
                    responses[status] = component


def _header(description: str, *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


class CdpApi(flask_smorest.Api):  # type: ignore[misc]
    """The flask-smorest Api, answering and documenting every error as ``application/problem+json``."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        spec_kwargs = {"extra_plugins": [SharedErrorResponses()], **(spec_kwargs or {})}
        super().init_app(app, spec_kwargs=spec_kwargs)

    def register_blueprint(self, blp: Blueprint, **options: Any) -> None:
        super().register_blueprint(blp, **options)

    def _register_error_handlers(self) -> None:
        # Called by flask-smorest's init_app in place of its own HTTPException handler.
        register_error_handlers(self._app)

    def _register_responses(self) -> None:
        # The lazily registered components flask-smorest refers to (one per status, plus DEFAULT_ERROR),
        # but with the problem media type, so clients see what they will actually receive. Only error
        # statuses carry the problem schema; a success response is never a problem.
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        shared = {
            TOKEN_REJECTED: (
                "No bearer token, or one that is malformed, expired, revoked or not for this API "
                "(RFC 6750 invalid_request / invalid_token)",
                {
                    "WWW-Authenticate": _header(
                        "Bearer challenge with error and error_description", required=True
                    )
                },
            ),
            SCOPE_MISSING: (
                "The token lacks the operation's scope (RFC 6750 insufficient_scope, with a WWW-Authenticate "
                "challenge naming it), or the caller's role, department, purpose or the customer's consent "
                "does not allow the request",
                {"WWW-Authenticate": _header("Bearer challenge, for insufficient_scope", required=False)},
            ),
            UNAVAILABLE: (
                "The database cannot be reached right now (a restart, a failover); retry later",
                {"Retry-After": _header("Seconds to wait before retrying", required=False)},
            ),
        }
        for name, (description, headers) in shared.items():
            response = {"description": description, "schema": self.ERROR_SCHEMA, "headers": headers}
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(name, response, lazy=True)
        default: dict[str, Any] = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)
