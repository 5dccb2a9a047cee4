"""The interactive API reference at ``/docs/``: Swagger UI over ``/openapi.json``, served from here.

Swagger UI's built files come from the ``flask-swagger-ui`` package (only its ``dist/``; its blueprint
and template put an inline script in the page, which this server's CSP forbids). Nothing loads from a
CDN: a privacy-first deployment must not tell a third party who reads its API reference, nor run code
it does not ship. The page's own start-up script is a static file (``web/static/docs.js``) reading its
settings from ``data-`` attributes, so ``script-src 'self'`` is all the page needs.

"Authorize" signs a person in through the same authorization server as the web apps (authorization code
with PKCE, a popup, ``/docs/callback`` handing the code back to the page); "Try it out" then calls the
API with that person's token, bound by their role, their scopes and the audit log like any client.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort, render_template, send_from_directory
from flask.typing import ResponseReturnValue

from api.context import current_platform
from web.apps import DOCS

ASSET_MAX_AGE_SECONDS = 86400
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "oauth2-redirect.js", "favicon-32x32.png", "favicon-16x16.png"}
)
"""The only files of Swagger UI's distribution this server hands out (not its demo page or source maps)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

blueprint = Blueprint("docs", __name__, url_prefix=DOCS.prefix)


def _swagger_ui_dist() -> str:
    return str(resources.files("flask_swagger_ui") / "dist")


def _page(body: str) -> Response:
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/")
def reference() -> ResponseReturnValue:
    from web.auth import client_id_for

    issuer = current_platform().settings.issuer
    return _page(
        render_template(
            "web/docs/reference.html",
            app=DOCS,
            client_id=client_id_for(DOCS),
            redirect_url=DOCS.redirect_uri(issuer),
            scopes=" ".join(DOCS.scopes),
        )
    )


@blueprint.get("/callback")
def callback() -> ResponseReturnValue:
    """Where the authorization server sends the sign-in popup back: Swagger UI's own small script hands
    ``code`` and ``state`` to the page that opened it, which checks ``state`` and redeems the code."""
    return _page(render_template("web/docs/callback.html"))


@blueprint.get("/assets/<name>")
def asset(name: str) -> ResponseReturnValue:
    if name not in SWAGGER_UI_FILES:
        abort(404)
    response = send_from_directory(_swagger_ui_dist(), name, max_age=ASSET_MAX_AGE_SECONDS)
    response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE_SECONDS}"
    return response
