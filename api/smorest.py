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
        return cast(Callable[[F], F], super().arguments(schema, **options))

    def doc(self, **kwargs: Any) -> Callable[[F], F]:
        return cast(Callable[[F], F], super().doc(**kwargs))


class CdpApi(flask_smorest.Api):  # type: ignore[misc]
    """The flask-smorest Api, answering and documenting every error as ``application/problem+json``."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
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
        default: dict[str, Any] = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)
