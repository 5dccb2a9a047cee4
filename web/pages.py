"""Rendering: every page gets the same strict Content-Security-Policy and a CSRF token for its forms.

No script runs on any page (``script-src`` is not granted at all); the stylesheet is one static file;
forms post only to this origin; nothing may frame a page. Pages are Jinja templates with autoescaping.
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template

from web.apps import WebApp

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def html(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    # Not no-referrer: under it browsers send ``Origin: null`` with form POSTs, and the POSTs' Origin
    # check needs the real one. No URL of these pages holds personal data, and no other site hears it.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def render(app: WebApp, template: str, status: int = 200, **context: Any) -> Response:
    from web.auth import csrf_token, current_web_session

    web_session = current_web_session()
    return html(
        render_template(
            template,
            web_app=app,
            signed_in=web_session is not None and not web_session.pending,
            csrf_token=csrf_token() if web_session is not None else "",
            **context,
        ),
        status,
    )
