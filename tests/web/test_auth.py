"""Signing in to the web apps: the real authorization-code + PKCE flow against our own server, cookies that
are Secure/HttpOnly/SameSite=Strict and carry only a random secret, a new secret after sign-in, CSRF and
Origin checks on every POST, sign-out that revokes the sign-in, and token refresh behind the scenes."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cdp.access.grants import GrantStore
from cdp.access.websessions import WebSessions
from cdp.db.models import AuditEntry, OAuthTokenFamily, WebSession
from tests.web.harness import (
    ISSUER,
    WebWorld,
    csrf_of,
    sign_in_customer,
    sign_in_staff,
    web_client,
)
from web.apps import CONSOLE, PRIVACY, STAFF
from web.pages import CSP


def _cookie(client: FlaskClient, name: str) -> str | None:
    found = client.get_cookie(name)
    return found.value if found is not None else None


def _session_row(world: WebWorld, client: FlaskClient, app_name: str) -> WebSession:
    secret = _cookie(client, f"__Host-cdp-{app_name}")
    assert secret
    with world.platform.db.read() as session:
        found = WebSessions(session, world.platform.vault).find(app_name, secret)
        assert found is not None
        row = session.get(WebSession, found.id)
        assert row is not None
        session.expunge(row)
        return row


@pytest.mark.parametrize("app", [PRIVACY, STAFF, CONSOLE], ids=lambda app: app.name)
def test_signed_out_front_page_offers_sign_in_and_protected_pages_redirect(
    client: FlaskClient, app: object
) -> None:
    prefix = app.prefix  # type: ignore[attr-defined]
    front = client.get(f"{prefix}/")
    assert front.status_code == 200 and f'href="{prefix}/login"' in front.text
    assert front.headers["Content-Security-Policy"] == CSP
    assert "script" not in front.text.lower()


def test_protected_page_without_a_session_redirects_to_the_front_page(client: FlaskClient) -> None:
    response = client.get("/privacy/consents")
    assert response.status_code == 303 and response.location.endswith("/privacy/")


def test_login_starts_pkce_with_a_secure_host_only_cookie(world: WebWorld, client: FlaskClient) -> None:
    response = client.get("/privacy/login")
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-cdp-privacy=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    assert "Max-Age" not in cookie and "Expires" not in cookie
    target = urlsplit(response.location)
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{ISSUER}/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == f"{ISSUER}/privacy/callback"
    assert query["scope"] == "self:read self:write" and len(query["state"]) >= 32


def test_sign_in_issues_a_new_secret_and_the_pending_one_is_worthless(
    world: WebWorld, client: FlaskClient
) -> None:
    email, _, _ = world.customer()
    client.get("/privacy/login")
    pending = _cookie(client, "__Host-cdp-privacy")
    sign_in_customer(client, world, email)
    active = _cookie(client, "__Host-cdp-privacy")
    assert active and pending and active != pending
    thief = web_client(world)
    thief.set_cookie("__Host-cdp-privacy", pending, domain="localhost")
    assert thief.get("/privacy/consents").status_code == 303
    page = client.get("/privacy/")
    assert page.status_code == 200 and "Your details" in page.text
    assert "access_token" not in page.text and "eyJ" not in page.text


def test_callback_with_a_forged_state_is_refused(world: WebWorld, client: FlaskClient) -> None:
    client.get("/privacy/login")
    response = client.get(f"/privacy/callback?code=abc&state=forged&iss={ISSUER}")
    assert response.status_code == 400 and "Start again" in response.text
    assert client.get("/privacy/consents").status_code == 303


def test_callback_from_another_issuer_is_refused(world: WebWorld, client: FlaskClient) -> None:
    started = client.get("/privacy/login")
    state = parse_qs(urlsplit(started.location).query)["state"][0]
    response = client.get(f"/privacy/callback?code=abc&state={state}&iss=https://evil.example")
    assert response.status_code == 400 and "did not come from this server" in response.text


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(
    world: WebWorld, client: FlaskClient
) -> None:
    email, _, _ = world.customer()
    sign_in_customer(client, world, email)
    page = client.get("/privacy/consents")
    token = csrf_of(page.text)
    form = {"purpose": "profiling", "channel": "any", "action": "grant"}
    assert client.post("/privacy/consents", data=form).status_code == 403
    assert client.post("/privacy/consents", data={**form, "csrf_token": "0" * 64}).status_code == 403
    foreign = client.post(
        "/privacy/consents", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    accepted = client.post(
        "/privacy/consents", data={**form, "csrf_token": token}, headers={"Origin": ISSUER}
    )
    assert accepted.status_code == 303


def test_sign_out_revokes_the_sign_in_and_the_cookie(world: WebWorld, client: FlaskClient) -> None:
    sign_in_staff(client, world, "/staff", "support")
    row = _session_row(world, client, "staff")
    old_secret = _cookie(client, "__Host-cdp-staff")
    page = client.get("/staff/")
    response = client.post("/staff/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 200 and "signed out" in response.text
    assert _cookie(client, "__Host-cdp-staff") is None
    with world.platform.db.read() as session:
        family = session.get(OAuthTokenFamily, row.family_id)
        assert family is not None and family.revoked_at is not None
        assert session.get(WebSession, row.id) is None
    replay = web_client(world)
    replay.set_cookie("__Host-cdp-staff", str(old_secret), domain="localhost")
    assert replay.get("/staff/").text.count('href="/staff/login"') == 1


def test_a_sign_in_revoked_elsewhere_ends_the_web_session(world: WebWorld, client: FlaskClient) -> None:
    email, _, _ = world.customer()
    sign_in_customer(client, world, email)
    row = _session_row(world, client, "privacy")
    assert row.family_id is not None
    with world.platform.db.transaction() as session:
        GrantStore(session).revoke_family(row.family_id, "sign_out")
    assert client.get("/privacy/consents").status_code == 303


def test_an_expiring_access_token_is_refreshed_behind_the_scenes(
    world: WebWorld, client: FlaskClient
) -> None:
    email, _, _ = world.customer()
    sign_in_customer(client, world, email)
    secret = _cookie(client, "__Host-cdp-privacy")
    assert secret
    with world.platform.db.transaction() as session:
        sessions = WebSessions(session, world.platform.vault)
        found = sessions.find("privacy", secret)
        assert found is not None
        before = found.state["access_token"], found.state["refresh_token"]
        found.state["access_expires_at"] = time.time() - 1
        sessions.save(found)
    page = client.get("/privacy/consents")
    assert page.status_code == 200 and "Your choices" in page.text
    with world.platform.db.read() as session:
        after = WebSessions(session, world.platform.vault).find("privacy", secret)
    assert after is not None
    assert after.state["access_token"] != before[0] and after.state["refresh_token"] != before[1]


def test_every_api_read_of_a_page_is_audited_under_the_page_request_id(
    world: WebWorld, client: FlaskClient
) -> None:
    email, _, _ = world.customer()
    sign_in_customer(client, world, email)
    request_id = f"page-{uuid.uuid4().hex[:12]}"
    page = client.get("/privacy/consents", headers={"X-Request-ID": request_id})
    assert page.status_code == 200 and page.headers["X-Request-ID"] == request_id
    with world.platform.db.read() as session:
        entries = (
            session.execute(select(AuditEntry).where(AuditEntry.request_id == request_id)).scalars().all()
        )
    assert [e.action for e in entries] == ["consent.read"]
    assert entries[0].actor.startswith("customer:") and entries[0].actor_kind == "customer"


def test_a_customer_cannot_use_a_staff_app(world: WebWorld, client: FlaskClient) -> None:
    """The staff apps' clients are staff-audience: their sign-in page asks for a username, and a
    customer's email-code sign-in is not offered there at all."""
    started = client.get("/staff/login")
    page = client.get(urlsplit(started.location).path + "?" + urlsplit(started.location).query)
    assert 'name="username"' in page.text and 'name="email"' not in page.text
