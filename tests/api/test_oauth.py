"""OAuth 2 against the running app with Authlib's own client: client credentials, JWT access tokens,
revocation, introspection, metadata/JWKS, and rejection of every kind of bad token."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from werkzeug.serving import make_server

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from tests.sources.test_ingest import CRM_MAPPING


@dataclass
class Live:
    base: str
    platform: Platform
    app: object = None

    def client(
        self, *scopes: str, role: str = "department_agent", department: str | None = "sales"
    ) -> tuple[str, str]:
        with self.platform.db.transaction() as session:
            client, secret = ClientRepository(session).create(
                name="test client",
                role=role,
                department=department,
                scopes=scopes,
                grant="client_credentials",
            )
        return client.client_id, secret

    def session(self, client_id: str, secret: str, scope: str | None = None) -> OAuth2Session:
        oauth = OAuth2Session(
            client_id, secret, scope=scope, token_endpoint_auth_method="client_secret_basic"
        )
        oauth.fetch_token(f"{self.base}/oauth/token", grant_type="client_credentials")
        return oauth


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


ROW = {"LeadId": "L-1", "FirstName": "Maria", "EMail": "maria@example.com"}


def test_client_credentials_token_is_an_rfc9068_jwt_that_opens_the_api(live: Live) -> None:
    oauth = live.session(*live.client("ingest"))
    token = oauth.token["access_token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt" and header["kid"]
    assert oauth.token["token_type"].lower() == "bearer" and oauth.token["expires_in"] == 300
    response = oauth.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]})
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 1


def test_missing_token_is_401_with_a_bearer_challenge(live: Live) -> None:
    response = requests.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]}, timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_without_the_scope_is_403_insufficient_scope(live: Live) -> None:
    oauth = live.session(*live.client("sources:read"))
    response = oauth.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert oauth.get(f"{live.base}/v1/sources").status_code == 200


def test_asking_for_a_scope_beyond_the_grant_is_refused(live: Live) -> None:
    client_id, secret = live.client("sources:read")
    response = requests.post(
        f"{live.base}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "ingest"},
        auth=(client_id, secret),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_wrong_secret_and_unknown_client_are_invalid_client(live: Live) -> None:
    client_id, _ = live.client("ingest")
    for auth in ((client_id, "wrong"), ("cdp-nobody", "x")):
        response = requests.post(
            f"{live.base}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth, timeout=5
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_other_departments_sources_are_forbidden(live: Live) -> None:
    oauth = live.session(*live.client("ingest", department="billing"))
    response = oauth.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]})
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("application/problem+json")


def test_batch_validation_is_a_422_problem(live: Live) -> None:
    oauth = live.session(*live.client("ingest"))
    for body in ({}, {"rows": []}, {"rows": [ROW] * 1001}, {"rows": ["not an object"]}):
        response = oauth.post(f"{live.base}/v1/sources/crm/records", json=body)
        assert response.status_code == 422, body
        assert "errors" in response.json()


def test_bad_rows_come_back_with_reasons_not_values(live: Live) -> None:
    oauth = live.session(*live.client("ingest", "sources:read"))
    rows = [ROW, {"LeadId": "L-2", "EMail": "not-an-email-secretvalue"}]
    result = oauth.post(f"{live.base}/v1/sources/crm/records", json={"rows": rows}).json()
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert result["rejections"] == [
        {"row": 2, "reason": "invalid_email", "detail": "column EMail: invalid email"}
    ]
    listed = oauth.get(f"{live.base}/v1/quarantine", params={"source": "crm"}).json()
    assert [e["reason"] for e in listed] == ["invalid_email"]
    assert "secretvalue" not in json.dumps(listed)


def test_revoked_token_stops_working_immediately(live: Live) -> None:
    client_id, secret = live.client("ingest")
    oauth = live.session(client_id, secret)
    token = oauth.token["access_token"]
    oauth.revoke_token(f"{live.base}/oauth/revoke", token=token)
    response = oauth.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_disabling_a_client_kills_its_tokens_at_once(live: Live) -> None:
    client_id, secret = live.client("ingest")
    oauth = live.session(client_id, secret)
    with live.platform.db.transaction() as session:
        ClientRepository(session).disable(client_id)
    assert oauth.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]}).status_code == 401
    again = requests.post(
        f"{live.base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=5,
    )
    assert again.status_code == 401


def test_introspection_reports_active_then_inactive_after_revocation(live: Live) -> None:
    client_id, secret = live.client("ingest", "sources:read")
    oauth = live.session(client_id, secret)
    token = oauth.token["access_token"]
    active = oauth.introspect_token(f"{live.base}/oauth/introspect", token=token).json()
    assert active["active"] is True and active["client_id"] == client_id
    assert active["scope"] == "ingest sources:read" and active["roles"] == ["department_agent"]
    oauth.revoke_token(f"{live.base}/oauth/revoke", token=token)
    assert oauth.introspect_token(f"{live.base}/oauth/introspect", token=token).json() == {"active": False}


def test_metadata_and_jwks_are_published(live: Live) -> None:
    metadata = requests.get(f"{live.base}/.well-known/oauth-authorization-server", timeout=5).json()
    assert metadata["issuer"] == live.base
    assert metadata["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert "implicit" not in json.dumps(metadata) and "password" not in metadata["grant_types_supported"]
    jwks = requests.get(metadata["jwks_uri"], timeout=5).json()
    assert [k["kty"] for k in jwks["keys"]] == ["EC"] and all("d" not in k for k in jwks["keys"])


def _forge(live: Live, header: dict[str, object], claims: dict[str, object], key: object) -> str:
    return jwt.encode(header, claims, key, algorithms=[str(header["alg"])])


@pytest.mark.parametrize(
    "case", ["expired", "wrong_audience", "wrong_issuer", "foreign_key", "hs256", "alg_none", "not_at_jwt"]
)
def test_forged_and_misused_tokens_are_rejected(live: Live, case: str) -> None:
    client_id, secret = live.client("ingest")
    good = live.session(client_id, secret).token["access_token"]
    claims = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    header = json.loads(base64.urlsafe_b64decode(good.split(".")[0] + "=="))
    own_key = ECKey.generate_key("P-256", parameters={"kid": header["kid"]}, private=True)
    if case == "expired":
        token = _forge(live, header, {**claims, "exp": int(time.time()) - 10}, own_key)
    elif case == "wrong_audience":
        token = _forge(live, header, {**claims, "aud": "someone-else"}, own_key)
    elif case == "wrong_issuer":
        token = _forge(live, header, {**claims, "iss": "https://evil.example"}, own_key)
    elif case == "foreign_key":
        token = _forge(live, header, claims, own_key)
    elif case == "hs256":
        token = _forge(live, {**header, "alg": "HS256"}, claims, OctKey.import_key(b"k" * 32))
    elif case == "not_at_jwt":
        token = _forge(live, {**header, "typ": "JWT"}, claims, own_key)
    else:
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = (
            base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
            + "."
            + body
            + "."
        )
    response = requests.post(
        f"{live.base}/v1/sources/crm/records",
        json={"rows": [ROW]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert response.status_code == 401, case
    assert response.json()["error"] == "invalid_token"


def test_openapi_documents_the_protected_ingestion_api(live: Live) -> None:
    spec = requests.get(f"{live.base}/openapi.json", timeout=5).json()
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/oauth/token"
    records = spec["paths"]["/v1/sources/{source}/records"]["post"]
    assert records["security"] == [{"oauth2": ["ingest"]}]
    assert "422" in records["responses"]


def test_signing_key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(live: Live) -> None:
    from flask import Flask

    from cdp.vault.signing import SigningKeys

    client_id, secret = live.client("ingest")
    old = live.session(client_id, secret)
    old_kid = json.loads(base64.urlsafe_b64decode(old.token["access_token"].split(".")[0] + "=="))["kid"]
    with live.platform.db.transaction() as session:
        new_kid = SigningKeys(session, live.platform.vault).rotate()
    app = live.app
    assert isinstance(app, Flask)
    app.extensions["cdp_signing_keys"].loaded_at = 0.0  # as if the 5 s reload interval had passed
    fresh = live.session(client_id, secret)
    assert (
        json.loads(base64.urlsafe_b64decode(fresh.token["access_token"].split(".")[0] + "=="))["kid"]
        == new_kid
    )
    for session in (old, fresh):
        assert session.post(f"{live.base}/v1/sources/crm/records", json={"rows": [ROW]}).status_code == 200
    kids = {k["kid"] for k in requests.get(f"{live.base}/oauth/jwks.json", timeout=5).json()["keys"]}
    assert kids == {old_kid, new_kid}
    with live.platform.db.read() as session:
        from datetime import timedelta

        # once every token the old key signed has expired, it is no longer published
        published = SigningKeys(session, live.platform.vault).published(timedelta(seconds=0))
    assert [k["kid"] for k in published] == [new_kid]


def test_a_remembered_token_still_expires_on_time_and_is_revoked_at_once(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified signatures are remembered per worker; expiry and revocation must not be."""
    client_id, secret = live.client("ingest")
    oauth = live.session(client_id, secret)
    url = f"{live.base}/v1/sources/crm/records"
    assert oauth.post(url, json={"rows": [ROW]}).status_code == 200  # verified and remembered
    cache = live.app.extensions["cdp_signing_keys"]  # type: ignore[attr-defined]
    assert any(key[0] == oauth.token["access_token"] for key in cache.verified)
    expires = json.loads(base64.urlsafe_b64decode(oauth.token["access_token"].split(".")[1] + "=="))["exp"]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: max(real_time(), expires + 1))
    late = requests.post(  # not through OAuth2Session: it would refuse to send an expired token itself
        url,
        json={"rows": [ROW]},
        headers={"Authorization": f"Bearer {oauth.token['access_token']}"},
        timeout=5,
    )
    assert late.status_code == 401 and late.json()["error"] == "invalid_token"
    monkeypatch.setattr(time, "time", real_time)

    fresh = live.session(client_id, secret)
    assert fresh.post(url, json={"rows": [ROW]}).status_code == 200
    fresh.revoke_token(f"{live.base}/oauth/revoke", token=fresh.token["access_token"])
    assert fresh.post(url, json={"rows": [ROW]}).status_code == 401
