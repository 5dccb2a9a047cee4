"""The sign-in pages in a real browser: staff and customer sign-in complete, the browser follows the
redirect back to the app under the pages' own CSP (form-action must allow it), nothing on the page
violates the CSP, and the code the app receives redeems for a working token."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.integrations.requests_client import OAuth2Session
from playwright.sync_api import Browser, Page
from werkzeug.serving import make_server

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.access.outbox import Outbox
from cdp.access.users import UserRepository
from cdp.config import Settings
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from tests.browser.conftest import watch_csp
from tests.sources.test_ingest import CRM_HEADER, CRM_MAPPING, CRM_ROWS

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple"


class _Callback(BaseHTTPRequestHandler):
    """The app's redirect URI: remembers the query it was called with."""

    received: list[dict[str, str]] = []

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/callback":  # not the browser's favicon request
            type(self).received.append({k: v[0] for k, v in parse_qs(parts.query).items()})
        body = b"<!doctype html><title>app</title><p>signed in</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Site:
    base: str
    callback: str
    platform: Platform


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    app = create_app(platform=platform)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.extensions["cdp"] = Platform(replace(platform.settings, issuer=base), platform.db, platform.vault)
    _Callback.received = []
    receiver = HTTPServer(("127.0.0.1", 0), _Callback)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (server, receiver)]
    for thread in threads:
        thread.start()
    try:
        yield Site(base, f"http://127.0.0.1:{receiver.server_port}/callback", app.extensions["cdp"])
    finally:
        server.shutdown()
        receiver.shutdown()
        platform.close()


def _app(site: Site, audience: str, *scopes: str) -> str:
    with site.platform.db.transaction() as session:
        client, _ = ClientRepository(session).create(
            name=f"{audience} app",
            role=audience,
            scopes=scopes,
            grant="authorization_code",
            redirect_uris=[site.callback],
            public=True,
        )
    return client.client_id


def _authorize(site: Site, client_id: str) -> tuple[OAuth2Session, str, str, str]:
    verifier = secrets.token_urlsafe(48)
    oauth = OAuth2Session(
        client_id, redirect_uri=site.callback, code_challenge_method="S256", token_endpoint_auth_method="none"
    )
    url, state = oauth.create_authorization_url(f"{site.base}/oauth/authorize", code_verifier=verifier)
    return oauth, url, state, verifier


def _finish(site: Site, oauth: OAuth2Session, page: Page, state: str, verifier: str) -> dict[str, str]:
    page.wait_for_url(f"{site.callback}?*", timeout=10_000)
    assert page.text_content("p") == "signed in"
    received = _Callback.received[-1]
    assert received["state"] == state and received["iss"] == site.base
    token = oauth.fetch_token(
        f"{site.base}/oauth/token", code=received["code"], code_verifier=verifier, state=state
    )
    return dict(token)


def test_staff_sign_in_in_chromium_reaches_the_app_and_redeems(browser: Browser, site: Site) -> None:
    with site.platform.db.transaction() as session:
        UserRepository(session, site.platform.vault, site.platform.settings).create(
            username="sam", password=PASSWORD, role="support_agent", scopes=["profiles:read"]
        )
    oauth, url, state, verifier = _authorize(site, _app(site, "staff", "profiles:read"))
    page = browser.new_page()
    violations = watch_csp(page)
    page.goto(url)
    assert page.title() and page.locator("input[name=password]").get_attribute("type") == "password"
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", "wrong password entirely")
    page.click("button.primary")
    assert "Sign-in failed" in (page.text_content(".error") or "")
    assert PASSWORD not in page.content() and "wrong password entirely" not in page.content()
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    token = _finish(site, oauth, page, state, verifier)
    assert token["scope"] == "profiles:read" and token["refresh_token"]
    assert violations == []
    page.close()


def test_customer_sign_in_with_an_emailed_code_in_chromium(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    ingest = IngestService(site.platform.db, site.platform.vault)
    ingest.register_source(CRM_MAPPING)
    (tmp_path / "crm.csv").write_text(CRM_HEADER + "".join(CRM_ROWS), encoding="utf-8")
    ingest.ingest_file("crm", tmp_path / "crm.csv")
    oauth, url, state, verifier = _authorize(site, _app(site, "customer", "self:read"))
    page = browser.new_page()
    violations = watch_csp(page)
    page.goto(url)
    page.fill("input[name=email]", "maria.garcia@example.com")
    page.click("button.primary")
    page.wait_for_selector("input[name=code]")
    with site.platform.db.read() as session:
        body = Outbox(session, site.platform.vault).latest(limit=1)[0].body
    code = next(word.strip(".") for word in body.split() if word.strip(".").isdigit())
    page.fill("input[name=code]", code)
    page.click("button.primary")
    token = _finish(site, oauth, page, state, verifier)
    me = OAuth2Session(token=token).get(f"{site.base}/v1/me")
    assert me.status_code == 200 and me.json()["attributes"]["first_name"]["value"] == "Maria"
    assert violations == []
    page.close()
