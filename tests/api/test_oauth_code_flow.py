"""The authorization code grant with PKCE against the running app, driven like a browser (requests, the
redirect captured by hand) and a client (Authlib's OAuth2Session): staff and customer sign-in, the
RFC 9700 rules (exact redirect URIs, PKCE S256 only, single-use short-lived codes, no implicit grant,
``state`` passed through) and the sign-in pages' hygiene (escaping, CSP, generic errors, lockout).

The ``live`` fixture and the helpers here are shared with ``test_oauth_refresh.py``."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask
from sqlalchemy import select, update
from werkzeug.serving import make_server

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.access.outbox import Outbox
from cdp.access.users import UserRepository
from cdp.db.models import OAuthAuthorizationCode, OAuthTokenFamily, SourceRecord
from cdp.db.types import utcnow
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.records import RecordRepository
from tests.sources.test_ingest import CRM_HEADER, CRM_MAPPING, CRM_ROWS

REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery staple"
MARIA = "maria.garcia@example.com"  # L-1 in the CRM sample, stored as Maria.Garcia+news@Example.com


# -- fixture and helpers ------------------------------------------------------------------------------


@dataclass
class Live:
    base: str
    platform: Platform
    app: Flask
    records: dict[str, Any] = field(default_factory=dict)

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.base}/oauth/authorize"

    def app_client(
        self,
        audience: str = "staff",
        *scopes: str,
        public: bool = False,
        redirect_uris: tuple[str, ...] = (REDIRECT,),
    ) -> tuple[str, str | None]:
        """A sign-in app for ``audience``; (client_id, secret or None)."""
        if not scopes:
            scopes = ("self:read", "self:write") if audience == "customer" else ("sources:read", "ingest")
        with self.platform.db.transaction() as session:
            client, secret = ClientRepository(session).create(
                name=f"{audience} app",
                role=audience,
                scopes=scopes,
                grant="authorization_code",
                redirect_uris=redirect_uris,
                public=public,
            )
        return client.client_id, secret

    def staff(
        self,
        username: str = "alice",
        role: str = "department_agent",
        *scopes: str,
        department: str | None = "sales",
    ) -> str | None:
        """Create a member of staff with PASSWORD; returns the TOTP provisioning URI if one was enrolled."""
        with self.platform.db.transaction() as session:
            _, uri = UserRepository(session, self.platform.vault, self.platform.settings).create(
                username=username,
                password=PASSWORD,
                role=role,
                scopes=scopes or ("sources:read", "ingest"),
                department=department,
            )
        return uri

    def customers(self, tmp_path: Path) -> dict[str, Any]:
        """Ingest the CRM sample; source record ids → record uuids."""
        if not self.records:
            service = IngestService(self.platform.db, self.platform.vault, today=date(2026, 3, 1))
            path = tmp_path / "crm.csv"
            path.write_text(CRM_HEADER + "".join(CRM_ROWS), encoding="utf-8")
            service.ingest_file("crm", path)
            with self.platform.db.read() as session:
                ids = list(session.execute(select(SourceRecord.id)).scalars())
                stored = RecordRepository(session, self.platform.vault).get_many(ids)
            self.records = {r.data.source_record_id: r.id for r in stored}
        return self.records

    def latest_code(self) -> str:
        with self.platform.db.read() as session:
            entry = Outbox(session, self.platform.vault).latest(limit=1)[0]
        digits = [word.strip(".") for word in entry.body.split() if word.strip(".").isdigit()]
        assert len(digits[0]) == 6
        return digits[0]

    def set_settings(self, **changes: Any) -> None:
        self.platform = Platform(
            replace(self.platform.settings, **changes), self.platform.db, self.platform.vault
        )
        self.app.extensions["cdp"] = self.platform


@pytest.fixture
def live(platform: Platform) -> Iterator[Live]:
    app = create_app(platform=platform)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    # the issuer is the address clients reach the server at
    app.extensions["cdp"] = Platform(replace(platform.settings, issuer=base), platform.db, platform.vault)
    IngestService(platform.db, platform.vault).register_source(CRM_MAPPING)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(base, app.extensions["cdp"], app)
    finally:
        server.shutdown()


class _Form(HTMLParser):
    """The hidden fields, input names and error text of a sign-in page."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.inputs: list[str] = []
        self.error = ""
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input":
            name = values.get("name") or ""
            if values.get("type") == "hidden":
                self.hidden[name] = values.get("value") or ""
            else:
                self.inputs.append(name)
        if tag == "p" and values.get("class") == "error":
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        self._in_error = self._in_error and tag != "p"

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data


def form_of(response: requests.Response) -> _Form:
    parsed = _Form()
    parsed.feed(response.text)
    return parsed


@dataclass
class Flow:
    """One authorization request in progress: what the client keeps (verifier, state) and the page."""

    live: Live
    client_id: str
    secret: str | None
    verifier: str
    state: str
    url: str
    page: requests.Response | None = None

    def open(self) -> requests.Response:
        self.page = requests.get(self.url, allow_redirects=False, timeout=5)
        return self.page

    def submit(self, **fields: str) -> requests.Response:
        """POST the page's form (hidden fields + ``fields``) and return the response, not following."""
        assert self.page is not None
        data = {**form_of(self.page).hidden, **fields}
        self.page = requests.post(self.live.authorize_url, data=data, allow_redirects=False, timeout=5)
        return self.page

    def session(self) -> OAuth2Session:
        return OAuth2Session(
            self.client_id,
            self.secret,
            redirect_uri=REDIRECT,
            code_challenge_method="S256",
            token_endpoint_auth_method="none" if self.secret is None else "client_secret_basic",
        )

    def exchange(self, location: str, verifier: str | None = None) -> OAuth2Session:
        """The client's half: state checked, code + code_verifier exchanged at the token endpoint."""
        oauth = self.session()
        oauth.fetch_token(
            self.live.token_url,
            authorization_response=location,
            state=self.state,
            code_verifier=verifier or self.verifier,
        )
        return oauth


def start(live: Live, client_id: str, secret: str | None, **params: str) -> Flow:
    verifier = secrets.token_urlsafe(48)
    oauth = OAuth2Session(client_id, secret, redirect_uri=REDIRECT, code_challenge_method="S256")
    url, state = oauth.create_authorization_url(live.authorize_url, code_verifier=verifier, **params)
    return Flow(live, client_id, secret, verifier, state, url)


def raw_start(live: Live, client_id: str, **params: str) -> requests.Response:
    """An authorization request with exactly these parameters (no PKCE unless given)."""
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s1"}
    query.update(params)
    return requests.get(live.authorize_url, params=query, allow_redirects=False, timeout=5)


def redirected(response: requests.Response) -> dict[str, str]:
    """The query of a redirect back to the client (asserting it goes to the registered URI)."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def staff_sign_in(
    live: Live, *, username: str = "alice", public: bool = False, scope: str | None = None
) -> Flow:
    """A complete staff sign-in up to the redirect with the code (``flow.page`` is the 302)."""
    client_id, secret = live.app_client("staff", public=public)
    params = {"scope": scope} if scope else {}
    flow = start(live, client_id, secret, **params)
    assert flow.open().status_code == 200
    response = flow.submit(username=username, password=PASSWORD)
    assert redirected(response)["state"] == flow.state
    return flow


def claims(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))  # type: ignore[no-any-return]


def api_status(live: Live, token: str, path: str = "/v1/sources") -> int:
    response = requests.get(f"{live.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    return response.status_code


# -- staff --------------------------------------------------------------------------------------------


def test_staff_sign_in_with_pkce_end_to_end(live: Live) -> None:
    live.staff("alice", "department_agent", "sources:read", "ingest", "profiles:read")
    client_id, secret = live.app_client("staff", "sources:read", "ingest")
    flow = start(live, client_id, secret, scope="sources:read ingest")

    page = flow.open()
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    form = form_of(page)
    assert {"username", "password", "totp"} <= set(form.inputs)
    assert form.hidden["code_challenge_method"] == "S256" and form.hidden["state"] == flow.state

    response = flow.submit(username="alice", password=PASSWORD)
    query = redirected(response)
    assert query["state"] == flow.state and query["iss"] == live.base and len(query["code"]) >= 43

    oauth = flow.exchange(response.headers["Location"])
    token = oauth.token
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 300
    assert token["refresh_token"] and token["scope"] == "ingest sources:read"
    with live.platform.db.read() as session:
        alice = UserRepository(session, live.platform.vault, live.platform.settings).by_username("alice")
    assert alice is not None
    access = claims(token["access_token"])
    assert access["sub"] == f"user:{alice.id}" and access["client_id"] == client_id
    assert access["roles"] == ["department_agent"] and access["department"] == "sales"
    assert access["scope"] == "ingest sources:read" and access["sid"]
    assert oauth.get(f"{live.base}/v1/sources").status_code == 200


def test_the_token_carries_only_scopes_the_user_and_the_client_both_hold(live: Live) -> None:
    live.staff("bob", "department_agent", "sources:read")  # not ingest
    flow = staff_sign_in(live, username="bob")  # the client may have sources:read and ingest
    token = flow.exchange(flow.page.headers["Location"]).token  # type: ignore[union-attr]
    assert token["scope"] == "sources:read" and claims(token["access_token"])["scope"] == "sources:read"


def test_a_user_holding_none_of_the_scopes_is_denied_without_a_code(live: Live) -> None:
    live.staff("carol", "support_agent", "profiles:read")
    client_id, secret = live.app_client("staff", "sources:read")
    flow = start(live, client_id, secret)
    flow.open()
    query = redirected(flow.submit(username="carol", password=PASSWORD))
    assert query["error"] == "access_denied" and "code" not in query and query["state"] == flow.state


def test_staff_with_totp_need_the_current_code(live: Live) -> None:
    uri = live.staff("dora", "compliance_officer", "sources:read", department=None)
    assert uri is not None
    totp = pyotp.parse_uri(uri)
    flow = start(live, *live.app_client("staff", "sources:read"))
    flow.open()
    assert flow.submit(username="dora", password=PASSWORD).status_code == 401  # code missing
    response = flow.submit(username="dora", password=PASSWORD, totp=totp.now())
    assert redirected(response)["state"] == flow.state
    token = flow.exchange(response.headers["Location"]).token
    assert claims(token["access_token"])["roles"] == ["compliance_officer"]


def test_wrong_password_shows_a_generic_error_and_counts_towards_the_lockout(live: Live) -> None:
    live.set_settings(login_max_failures=3)
    live.staff("erin")
    flow = start(live, *live.app_client("staff"))
    flow.open()
    wrong = "Tr0ub4dor&3-not-it"
    response = flow.submit(username="erin", password=wrong)
    assert response.status_code == 401
    error = form_of(response).error
    assert "Sign-in failed" in error and "password" in error
    assert wrong not in response.text and "Location" not in response.headers
    unknown = flow.submit(username="nobody-here", password=wrong)
    assert unknown.status_code == 401 and form_of(unknown).error == error  # same message for both
    for _ in range(2):
        flow.submit(username="erin", password=wrong)
    with live.platform.db.read() as session:
        erin = UserRepository(session, live.platform.vault, live.platform.settings).by_username("erin")
    assert erin is not None and erin.locked()
    # locked: even the right password is refused, with the same message
    response = flow.submit(username="erin", password=PASSWORD)
    assert response.status_code == 401 and form_of(response).error == error


def test_cancel_sends_access_denied_with_the_state(live: Live) -> None:
    flow = start(live, *live.app_client("staff"))
    flow.open()
    query = redirected(flow.submit(action="cancel"))
    assert query == {
        "error": "access_denied",
        "error_description": query["error_description"],
        "state": flow.state,
        "iss": live.base,
    }


# -- customers ----------------------------------------------------------------------------------------


def test_customer_sign_in_with_an_emailed_code_end_to_end(live: Live, tmp_path: Path) -> None:
    records = live.customers(tmp_path)
    client_id, secret = live.app_client("customer", "self:read")
    flow = start(live, client_id, secret, scope="self:read")
    page = flow.open()
    assert page.status_code == 200 and form_of(page).inputs == ["email"]

    code_page = flow.submit(email=MARIA)
    assert code_page.status_code == 200
    form = form_of(code_page)
    assert form.inputs == ["code"] and form.hidden["step"] == "code" and form.hidden["login_id"]
    assert MARIA not in code_page.text.lower()  # the address is not echoed

    response = flow.submit(code=live.latest_code())
    query = redirected(response)
    assert query["state"] == flow.state
    oauth = flow.exchange(response.headers["Location"])
    access = claims(oauth.token["access_token"])
    assert access["sub"] == f"customer:{records['L-1']}" and access["roles"] == ["customer"]
    assert access["scope"] == "self:read" and "department" not in access
    assert oauth.get(f"{live.base}/v1/me").status_code == 200
    assert oauth.get(f"{live.base}/v1/sources").status_code == 403


def test_a_wrong_customer_code_is_refused_and_a_new_one_can_be_asked_for(live: Live, tmp_path: Path) -> None:
    live.customers(tmp_path)
    flow = start(live, *live.app_client("customer"))
    flow.open()
    flow.submit(email=MARIA)
    code = live.latest_code()
    response = flow.submit(code="000000" if code != "000000" else "111111")
    assert response.status_code == 401 and "did not work" in form_of(response).error
    assert form_of(response).hidden["login_id"]
    again = flow.submit(action="restart")
    assert again.status_code == 200 and form_of(again).inputs == ["email"]
    bad_email = flow.submit(email="not an address")
    assert bad_email.status_code == 400 and "valid email" in form_of(bad_email).error


def test_an_unknown_address_gets_the_same_code_page(live: Live, tmp_path: Path) -> None:
    live.customers(tmp_path)
    flow = start(live, *live.app_client("customer"))
    flow.open()
    page = flow.submit(email="nobody@example.org")
    assert page.status_code == 200 and form_of(page).inputs == ["code"]
    assert flow.submit(code="123456").status_code == 401


# -- RFC 9700 rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pkce",
    [
        {},
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "x" * 43},  # method defaults to plain in RFC 7636
        {"code_challenge_method": "S256"},
        {"code_challenge": "too-short", "code_challenge_method": "S256"},
    ],
    ids=["missing", "plain", "no_method", "no_challenge", "malformed"],
)
def test_authorization_requests_without_s256_pkce_are_refused(live: Live, pkce: dict[str, str]) -> None:
    for public in (False, True):
        client_id, _ = live.app_client("staff", public=public)
        query = redirected(raw_start(live, client_id, **pkce))
        assert query["error"] == "invalid_request" and query["state"] == "s1" and "code" not in query


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "/",
        REDIRECT + "?next=/",
        "https://APP.example/callback",
        "https://app.example/callback#x",
        "https://evil.example/callback",
        "http://app.example/callback",
        "",
    ],
)
def test_a_redirect_uri_not_registered_exactly_gets_an_error_page_never_a_redirect(
    live: Live, redirect_uri: str
) -> None:
    client_id, _ = live.app_client("staff")
    verifier = secrets.token_urlsafe(48)
    response = raw_start(
        live,
        client_id,
        redirect_uri=redirect_uri,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "not registered" in response.text and "evil.example" not in response.text
    assert "form-action 'none'" in response.headers["Content-Security-Policy"]


def test_unknown_or_disabled_clients_get_an_error_page(live: Live) -> None:
    client_id, _ = live.app_client("staff")
    with live.platform.db.transaction() as session:
        ClientRepository(session).disable(client_id)
    for candidate in (client_id, "cdp-nobody"):
        response = raw_start(live, candidate)
        assert response.status_code == 400 and "Location" not in response.headers
        assert "unknown or has been disabled" in response.text


def test_there_is_no_implicit_grant(live: Live) -> None:
    client_id, _ = live.app_client("staff")
    query = redirected(raw_start(live, client_id, response_type="token"))
    assert query["error"] == "unsupported_response_type" and "access_token" not in query


def test_scopes_beyond_the_clients_registration_are_refused(live: Live) -> None:
    client_id, _ = live.app_client("staff", "sources:read")
    challenge = create_s256_code_challenge(secrets.token_urlsafe(48))
    query = redirected(
        raw_start(
            live,
            client_id,
            scope="sources:read audit:read",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert query["error"] == "invalid_scope"


def test_a_machine_client_cannot_use_the_authorization_endpoint(live: Live) -> None:
    with live.platform.db.transaction() as session:
        client, _ = ClientRepository(session).create(
            name="job", role="support_agent", scopes=["ingest"], grant="client_credentials"
        )
    response = raw_start(live, client.client_id)
    assert response.status_code == 400 and "Location" not in response.headers


def test_a_wrong_or_missing_code_verifier_is_refused(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    location = flow.page.headers["Location"]  # type: ignore[union-attr]
    with pytest.raises(OAuthError) as wrong:
        flow.exchange(location, verifier=secrets.token_urlsafe(48))
    assert wrong.value.error == "invalid_grant"
    code = parse_qs(urlsplit(location).query)["code"][0]
    response = requests.post(
        live.token_url,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(flow.client_id, flow.secret or ""),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    # neither attempt used the code up: the client holding the verifier still gets its tokens
    assert flow.exchange(location).token["access_token"]


def test_the_redirect_uri_must_be_repeated_exactly_at_the_token_endpoint(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    code = redirected(flow.page)["code"]  # type: ignore[arg-type]
    response = requests.post(
        live.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT + "/",
            "code_verifier": flow.verifier,
        },
        auth=(flow.client_id, flow.secret or ""),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_code_is_single_use_and_its_replay_revokes_the_sign_in(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    location = flow.page.headers["Location"]  # type: ignore[union-attr]
    oauth = flow.exchange(location)
    access, refresh = oauth.token["access_token"], oauth.token["refresh_token"]
    assert api_status(live, access) == 200
    with pytest.raises(OAuthError) as replay:
        flow.exchange(location)
    assert replay.value.error == "invalid_grant"
    assert api_status(live, access) == 401  # the tokens issued from the code are revoked too
    response = requests.post(
        live.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        auth=(flow.client_id, flow.secret or ""),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    with live.platform.db.read() as session:
        family = session.get(OAuthTokenFamily, uuid.UUID(claims(access)["sid"]))
    assert family is not None and family.revoked_reason == "code_reuse"


def test_an_expired_code_is_refused(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    with live.platform.db.transaction() as session:
        session.execute(update(OAuthAuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(OAuthError) as expired:
        flow.exchange(flow.page.headers["Location"])  # type: ignore[union-attr]
    assert expired.value.error == "invalid_grant"


def test_codes_live_as_long_as_the_setting_says_and_are_stored_hashed(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    code = redirected(flow.page)["code"]  # type: ignore[arg-type]
    with live.platform.db.read() as session:
        row = session.execute(select(OAuthAuthorizationCode)).scalar_one()
    lifetime = (row.expires_at - row.auth_time).total_seconds()
    assert lifetime == live.platform.settings.authorization_code_ttl_seconds
    assert code.encode() not in row.code_hash and row.code_challenge_method == "S256"
    assert row.redirect_uri == REDIRECT


def test_a_code_cannot_be_redeemed_by_another_client(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    other_id, other_secret = live.app_client("staff")
    thief = Flow(live, other_id, other_secret, flow.verifier, flow.state, flow.url)
    with pytest.raises(OAuthError) as stolen:
        thief.exchange(flow.page.headers["Location"])  # type: ignore[union-attr]
    assert stolen.value.error == "invalid_grant"


# -- public clients -----------------------------------------------------------------------------------


def test_a_public_client_uses_auth_none_with_pkce(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live, public=True)
    assert flow.secret is None
    location = flow.page.headers["Location"]  # type: ignore[union-attr]
    code = parse_qs(urlsplit(location).query)["code"][0]
    # without the verifier the client id alone is worth nothing
    response = requests.post(
        live.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": flow.client_id,
        },
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    oauth = flow.exchange(location)
    assert oauth.token["refresh_token"] and api_status(live, oauth.token["access_token"]) == 200


def test_a_confidential_client_must_authenticate(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    code = redirected(flow.page)["code"]  # type: ignore[arg-type]
    response = requests.post(
        live.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": flow.client_id,
            "code_verifier": flow.verifier,
        },
        timeout=5,
    )
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


# -- the pages ----------------------------------------------------------------------------------------


def test_the_sign_in_page_escapes_hostile_input_and_has_a_strict_csp(live: Live) -> None:
    live.staff("alice")
    client_id, secret = live.app_client("staff")
    hostile = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    flow = start(live, client_id, secret, state=hostile)
    page = flow.open()
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img" not in page.text and "&lt;script&gt;" in page.text
    assert form_of(page).hidden["state"] == hostile
    csp = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self' https://app.example" and directives["base-uri"] == "'none'"
    assert directives["style-src"].startswith("'nonce-") and "script-src" not in directives
    assert "unsafe-inline" not in csp
    nonce = directives["style-src"][len("'nonce-") : -1]
    assert f'<style nonce="{nonce}">' in page.text
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    # the state goes back to the client exactly as it came
    query = redirected(flow.submit(username="alice", password=PASSWORD))
    assert query["state"] == hostile


def test_every_page_gets_a_fresh_nonce(live: Live) -> None:
    flow = start(live, *live.app_client("staff"))
    first = flow.open().headers["Content-Security-Policy"]
    second = flow.open().headers["Content-Security-Policy"]
    assert first != second


def test_tampered_hidden_fields_are_validated_again(live: Live) -> None:
    live.staff("alice")
    flow = start(live, *live.app_client("staff"))
    page = flow.open()
    data = {**form_of(page).hidden, "redirect_uri": "https://evil.example/callback"}
    response = requests.post(
        live.authorize_url,
        data={**data, "username": "alice", "password": PASSWORD},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_metadata_advertises_the_code_flow_and_nothing_implicit(live: Live) -> None:
    metadata = requests.get(f"{live.base}/.well-known/oauth-authorization-server", timeout=5).json()
    assert metadata["authorization_endpoint"] == f"{live.base}/oauth/authorize"
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert "none" not in metadata["introspection_endpoint_auth_methods_supported"]
    assert "implicit" not in json.dumps(metadata) and "password" not in metadata["grant_types_supported"]


def test_openapi_documents_the_authorization_code_flow(live: Live) -> None:
    flows = requests.get(f"{live.base}/openapi.json", timeout=5).json()["components"]["securitySchemes"][
        "oauth2"
    ]["flows"]
    assert flows["authorizationCode"]["authorizationUrl"] == "/oauth/authorize"
    assert flows["authorizationCode"]["refreshUrl"] == "/oauth/token"
