"""Per-request hooks: the request id and the security headers every response carries.

They run for error responses too (Flask applies ``after_request`` to what error handlers return), so a
404 or a 500 is as well protected and as traceable as a 200.
"""

from __future__ import annotations

from flask import Flask, Response

from api.context import REQUEST_ID_HEADER, current_request_id

# Responses will carry personal data: never cached by browsers or proxies, never framed, never sniffed
# into another type, and no Referer leaking ids in URLs to other sites.
_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# Defaults a route may override deliberately (e.g. a cacheable public asset or an HTML page's own CSP;
# the web apps' pages send ``same-origin`` referrers so that their form POSTs carry a real ``Origin``).
_DEFAULT = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_JSON_CSP = "default-src 'none'; frame-ancestors 'none'"


def _start_request() -> None:
    current_request_id()


def _finish_response(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    for name, value in _ALWAYS.items():
        response.headers[name] = value
    for name, value in _DEFAULT.items():
        response.headers.setdefault(name, value)
    if response.is_json:  # application/json and application/problem+json alike
        response.headers.setdefault("Content-Security-Policy", _JSON_CSP)
    return response


def register_hooks(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_response)
