"""Refresh tokens against the running app: rotation, reuse detection (the whole sign-in is revoked and
every token of it stops at once), scope that may only shrink, binding to the client, revocation
(RFC 7009) and introspection, and a disabled user, client or expired sign-in."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import select, update

from cdp.access.clients import ClientRepository
from cdp.access.users import UserRepository
from cdp.db.models import OAuthRefreshToken, OAuthTokenFamily
from cdp.db.types import utcnow
from tests.api.test_oauth_code_flow import Flow, Live, api_status, claims, live, staff_sign_in

__all__ = ["live"]  # the fixture, shared with the code-flow tests


def signed_in(live: Live, *, public: bool = False, scope: str | None = None) -> tuple[Flow, OAuth2Session]:
    live.staff("alice")
    flow = staff_sign_in(live, public=public, scope=scope)
    return flow, flow.exchange(flow.page.headers["Location"])  # type: ignore[union-attr]


def refresh(live: Live, flow: Flow, refresh_token: str, **extra: str) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    auth = None
    if flow.secret is None:
        data["client_id"] = flow.client_id
    else:
        auth = (flow.client_id, flow.secret)
    return requests.post(live.token_url, data=data, auth=auth, timeout=5)


def family_of(live: Live, access_token: str) -> OAuthTokenFamily:
    with live.platform.db.read() as session:
        family = session.get(OAuthTokenFamily, uuid.UUID(claims(access_token)["sid"]))
    assert family is not None
    return family


def test_refresh_rotates_and_reuse_revokes_the_whole_sign_in(live: Live) -> None:
    flow, oauth = signed_in(live)
    first_access, first_refresh = oauth.token["access_token"], oauth.token["refresh_token"]

    rotated = oauth.refresh_token(live.token_url)
    second_access, second_refresh = rotated["access_token"], rotated["refresh_token"]
    assert second_refresh != first_refresh and second_access != first_access
    assert claims(second_access)["sid"] == claims(first_access)["sid"]
    assert claims(second_access)["jti"] != claims(first_access)["jti"]
    assert api_status(live, first_access) == 200 and api_status(live, second_access) == 200

    # the old refresh token again: someone holds a copy — refused, and the sign-in is revoked
    reused = refresh(live, flow, first_refresh)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert family_of(live, first_access).revoked_reason == "refresh_reuse"
    assert refresh(live, flow, second_refresh).json()["error"] == "invalid_grant"
    assert api_status(live, first_access) == 401 and api_status(live, second_access) == 401


def test_refresh_tokens_are_stored_hashed_and_marked_used(live: Live) -> None:
    _, oauth = signed_in(live)
    old = oauth.token["refresh_token"]
    new = oauth.refresh_token(live.token_url)["refresh_token"]
    with live.platform.db.read() as session:
        rows = (
            session.execute(select(OAuthRefreshToken).order_by(OAuthRefreshToken.issued_at)).scalars().all()
        )
    assert len(rows) == 2 and rows[0].used_at is not None and rows[1].used_at is None
    assert all(old.encode() not in r.token_hash and new.encode() not in r.token_hash for r in rows)


def test_the_scope_may_only_shrink(live: Live) -> None:
    flow, oauth = signed_in(live, scope="sources:read ingest")
    narrower = refresh(live, flow, oauth.token["refresh_token"], scope="sources:read")
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "sources:read" and claims(body["access_token"])["scope"] == "sources:read"
    # omitting the scope means the original grant again
    again = refresh(live, flow, body["refresh_token"])
    assert again.json()["scope"] == "ingest sources:read"
    wider = refresh(live, flow, again.json()["refresh_token"], scope="sources:read profiles:read")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    # a refused scope does not burn the refresh token
    assert refresh(live, flow, again.json()["refresh_token"]).status_code == 200


def test_disabling_the_user_stops_their_tokens_at_once_and_refresh_fails(live: Live) -> None:
    flow, oauth = signed_in(live)
    access = oauth.token["access_token"]
    assert api_status(live, access) == 200
    with live.platform.db.transaction() as session:
        UserRepository(session, live.platform.vault, live.platform.settings).disable("alice")
    assert api_status(live, access) == 401
    assert family_of(live, access).revoked_at is not None  # revoked at once, not at the next refresh
    response = refresh(live, flow, oauth.token["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    # enabling the account again does not bring the old sign-in back
    with live.platform.db.transaction() as session:
        UserRepository(session, live.platform.vault, live.platform.settings).enable("alice")
    assert api_status(live, access) == 401
    assert refresh(live, flow, oauth.token["refresh_token"]).json()["error"] == "invalid_grant"


def test_disabling_the_client_stops_its_tokens_and_refresh(live: Live) -> None:
    flow, oauth = signed_in(live)
    with live.platform.db.transaction() as session:
        ClientRepository(session).disable(flow.client_id)
    assert api_status(live, oauth.token["access_token"]) == 401
    response = refresh(live, flow, oauth.token["refresh_token"])
    assert response.json()["error"] == "invalid_client"


def test_another_client_cannot_refresh_and_the_attempt_revokes_the_sign_in(live: Live) -> None:
    flow, oauth = signed_in(live)
    other_id, other_secret = live.app_client("staff")
    thief = Flow(live, other_id, other_secret, flow.verifier, flow.state, flow.url)
    stolen = refresh(live, thief, oauth.token["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert family_of(live, oauth.token["access_token"]).revoked_reason == "wrong_client"
    assert refresh(live, flow, oauth.token["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_machine_client_gets_no_refresh_token_and_cannot_refresh(live: Live) -> None:
    _, oauth = signed_in(live)
    with live.platform.db.transaction() as session:
        machine, secret = ClientRepository(session).create(
            name="job", role="support_agent", scopes=["ingest"], grant="client_credentials"
        )
    issued = requests.post(
        live.token_url,
        data={"grant_type": "client_credentials"},
        auth=(machine.client_id, secret or ""),
        timeout=5,
    ).json()
    assert "refresh_token" not in issued
    response = requests.post(
        live.token_url,
        data={"grant_type": "refresh_token", "refresh_token": oauth.token["refresh_token"]},
        auth=(machine.client_id, secret or ""),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


def test_an_expired_sign_in_cannot_be_refreshed(live: Live) -> None:
    flow, oauth = signed_in(live)
    with live.platform.db.transaction() as session:
        session.execute(update(OAuthTokenFamily).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = refresh(live, flow, oauth.token["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_unknown_refresh_tokens_are_invalid_grant(live: Live) -> None:
    flow, _ = signed_in(live)
    assert refresh(live, flow, "not-a-token").json()["error"] == "invalid_grant"


def test_a_public_client_refreshes_with_auth_none(live: Live) -> None:
    flow, oauth = signed_in(live, public=True)
    response = refresh(live, flow, oauth.token["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] != oauth.token["refresh_token"]


def test_the_sign_in_lifetime_follows_the_setting(live: Live) -> None:
    _, oauth = signed_in(live)
    family = family_of(live, oauth.token["access_token"])
    lifetime = (family.expires_at - family.created_at).total_seconds()
    assert lifetime == live.platform.settings.refresh_token_ttl_seconds
    assert (
        family.principal.startswith("user:")
        and family.client_id == claims(oauth.token["access_token"])["client_id"]
    )


# -- revocation and introspection ---------------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_revoking_a_refresh_token_ends_the_sign_in(live: Live, hint: str | None) -> None:
    flow, oauth = signed_in(live)
    extra = {"token_type_hint": hint} if hint else {}
    response = oauth.revoke_token(live.base + "/oauth/revoke", token=oauth.token["refresh_token"], **extra)
    assert response.status_code == 200
    assert family_of(live, oauth.token["access_token"]).revoked_reason == "revoked"
    assert api_status(live, oauth.token["access_token"]) == 401
    assert refresh(live, flow, oauth.token["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_public_client_can_revoke_its_refresh_token(live: Live) -> None:
    flow, oauth = signed_in(live, public=True)
    response = requests.post(
        live.base + "/oauth/revoke",
        data={"token": oauth.token["refresh_token"], "client_id": flow.client_id},
        timeout=5,
    )
    assert response.status_code == 200
    assert api_status(live, oauth.token["access_token"]) == 401


def test_revoking_an_access_token_of_a_sign_in_leaves_the_refresh_token_working(live: Live) -> None:
    flow, oauth = signed_in(live)
    oauth.revoke_token(live.base + "/oauth/revoke", token=oauth.token["access_token"])
    assert api_status(live, oauth.token["access_token"]) == 401
    assert refresh(live, flow, oauth.token["refresh_token"]).status_code == 200


def test_another_clients_refresh_token_is_silently_not_revoked(live: Live) -> None:
    _, oauth = signed_in(live)
    other_id, other_secret = live.app_client("staff")
    response = requests.post(
        live.base + "/oauth/revoke",
        data={"token": oauth.token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(other_id, other_secret or ""),
        timeout=5,
    )
    assert response.status_code == 200  # RFC 7009: no information to the caller
    assert api_status(live, oauth.token["access_token"]) == 200


def test_introspection_shows_the_person_and_the_sign_in_and_never_a_refresh_token(live: Live) -> None:
    _, oauth = signed_in(live)
    access = oauth.token["access_token"]
    active = oauth.introspect_token(live.base + "/oauth/introspect", token=access).json()
    assert active["active"] is True and active["sub"].startswith("user:")
    assert active["sid"] == claims(access)["sid"] and active["roles"] == ["department_agent"]
    refresh_info = oauth.introspect_token(
        live.base + "/oauth/introspect", token=oauth.token["refresh_token"], token_type_hint="refresh_token"
    ).json()
    assert refresh_info == {"active": False}


def test_a_public_client_cannot_introspect(live: Live) -> None:
    flow, oauth = signed_in(live, public=True)
    response = requests.post(
        live.base + "/oauth/introspect",
        data={"token": oauth.token["access_token"], "client_id": flow.client_id},
        timeout=5,
    )
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


def test_a_forged_user_token_without_a_sign_in_is_rejected(live: Live) -> None:
    """A person's token must name its sign-in (``sid``); one without is refused even if signed."""
    from flask import Flask
    from joserfc import jwt

    from api.oauth import _keys

    _, oauth = signed_in(live)
    good = claims(oauth.token["access_token"])
    app = live.app
    assert isinstance(app, Flask)
    with app.app_context():
        keys = _keys()
        keys.refresh()
        header = {"alg": "ES256", "typ": "at+jwt", "kid": keys.signer_kid}
        for bad in (
            {k: v for k, v in good.items() if k != "sid"},
            {**good, "sid": "not-a-uuid"},
            {**good, "sub": "user:x"},
        ):
            token = jwt.encode(header, bad, keys.signer, algorithms=["ES256"])
            assert api_status(live, token) == 401
        # sanity: the same key signs a token that works when the claims are intact
        assert api_status(live, jwt.encode(header, good, keys.signer, algorithms=["ES256"])) == 200
