"""The web apps call cdp's own HTTP API, in process.

A page never reads the store or a service directly: it sends the same request a separate client would
(``Authorization: Bearer`` with the session's access token, the page's request id, the browser's
address) through the app's WSGI callable, without a socket. So scope checks, the access gate, consent,
field masking, validation and the audit entry of every read happen exactly once, in the API, and a
page can show no more than the signed-in person could fetch themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, request
from werkzeug.datastructures import Headers
from werkzeug.test import Client

from api.context import REQUEST_ID_HEADER, current_request_id


@dataclass(frozen=True)
class ApiResult:
    status: int
    headers: Headers
    data: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def body(self) -> Any:
        """The JSON body, or None when there is none (or it is not JSON)."""
        if not self.data or "json" not in (self.headers.get("Content-Type") or ""):
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            return None

    @property
    def problem(self) -> str:
        """A sentence for the page when the call failed: the problem's ``detail`` (which the API keeps
        free of personal data) or its title."""
        body = self.body
        if isinstance(body, dict):
            for key in ("detail", "error_description", "title"):
                if isinstance(body.get(key), str) and body[key]:
                    return str(body[key])
        return f"The request failed ({self.status})."


def call(
    method: str,
    path: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
) -> ApiResult:
    """One API request from inside a page's request. Must not be called while the caller holds a write
    transaction (the API opens its own, and SQLite has one writer)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    headers = {REQUEST_ID_HEADER: current_request_id()}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    environ = {"REMOTE_ADDR": request.remote_addr or "127.0.0.1"}
    client = Client(app, use_cookies=False)
    response = client.open(
        path,
        method=method,
        headers=headers,
        json=json_body,
        data=form,
        query_string={k: v for k, v in (query or {}).items() if v is not None},
        environ_base=environ,
    )
    try:
        return ApiResult(response.status_code, Headers(response.headers), response.get_data())
    finally:
        response.close()
