"""The API reference's server side (/docs/): its strict CSP, the settings it hands Swagger UI, the public
PKCE client it signs people in with, and the allow-list of files it serves (Chromium drives the page
itself in tests/browser/test_api_reference.py)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from cdp.access.clients import CLIENT_AUDIENCES, ClientRepository
from tests.web.harness import WebWorld
from web.apps import DOCS


def test_the_reference_page_allows_scripts_from_this_server_only(client: FlaskClient) -> None:
    page = client.get("/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = page.get_data(as_text=True)
    assert "<script>" not in html  # no inline script: every <script> names a file of this server
    assert re.findall(r'<script src="([^"]+)"', html) == [
        "/docs/assets/swagger-ui-bundle.js",
        "/web/static/docs.js",
    ]
    assert page.headers["Cache-Control"] == "no-store"


def test_docs_without_a_slash_redirects_to_the_reference(client: FlaskClient) -> None:
    answer = client.get("/docs")
    assert answer.status_code == 308 and answer.headers["Location"].endswith("/docs/")


def test_the_reference_signs_in_with_a_public_pkce_client_for_staff_scopes(
    client: FlaskClient, world: WebWorld
) -> None:
    html = client.get("/docs/").get_data(as_text=True)
    client_id = re.search(r'data-client-id="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    redirect = re.search(r'data-redirect-url="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert redirect == f"{world.platform.settings.issuer}/docs/callback"
    with world.platform.db.read() as session:
        registered = ClientRepository(session).by_client_id(client_id)
    assert registered is not None and registered.public and registered.active
    assert registered.redirect_uris == (redirect,)
    assert registered.audience == "staff" and set(registered.scopes) == CLIENT_AUDIENCES["staff"]
    assert set(DOCS.scopes) == CLIENT_AUDIENCES["staff"]
    # a second page view (or worker) reuses the client instead of registering another
    again = client.get("/docs/").get_data(as_text=True)
    assert f'data-client-id="{client_id}"' in again


def test_the_callback_page_only_loads_swagger_uis_redirect_script(client: FlaskClient) -> None:
    page = client.get("/docs/callback?code=abc&state=xyz")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert re.findall(r'<script src="([^"]+)"', html) == ["/docs/assets/oauth2-redirect.js"]
    assert "abc" not in html and "xyz" not in html  # the code is read by the script, never echoed
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_swagger_ui_files_are_served_cacheable_from_this_server(client: FlaskClient) -> None:
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "javascript" in bundle.mimetype
    assert b"SwaggerUIBundle" in bundle.get_data()
    assert bundle.headers["Cache-Control"] == "public, max-age=86400"
    assert client.get("/docs/assets/swagger-ui.css").mimetype == "text/css"


def test_only_the_allow_listed_files_of_swagger_ui_are_served(client: FlaskClient) -> None:
    for name in ("index.html", "oauth2-redirect.html", "swagger-ui.js.map", "LICENSE", "..%2F__init__.py"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name
    assert client.get("/docs/assets/../docs.py").status_code == 404
