"""The audit trail of authentication against the running app: every token, revocation and introspection
request and every sign-in attempt leaves one entry naming ids, reason codes and the client — and never
a secret, a password, a username, an email address or a code."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from sqlalchemy import select

from cdp.access.users import UserRepository
from cdp.db.models import AuditEntry
from tests.api.test_oauth_code_flow import (
    MARIA,
    PASSWORD,
    Live,
    claims,
    live,
    redirected,
    staff_sign_in,
    start,
)
from tests.api.test_oauth_refresh import refresh, signed_in

__all__ = ["live"]


@dataclass(frozen=True)
class Entry:
    outcome: str
    actor: str
    actor_kind: str
    role: str | None
    department: str | None
    request_id: str | None
    subjects: list[str]
    details: dict[str, Any]
    text: str
    """Every column of the row, for checking what must never be in it."""

    @property
    def content(self) -> str:
        """Subjects and details only: short values (a six-digit code) may occur by chance in an id or a
        timestamp, never legitimately here."""
        return json.dumps([self.subjects, self.details])


def entries(live: Live, action: str) -> list[Entry]:
    with live.platform.db.read() as session:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.recorded_at)
        ).scalars()
        return [
            Entry(
                row.outcome,
                row.actor,
                row.actor_kind,
                row.role,
                row.department,
                row.request_id,
                json.loads(row.subjects),
                json.loads(row.details),
                " ".join(str(getattr(row, c.key)) for c in AuditEntry.__table__.columns),
            )
            for row in rows
        ]


def only(live: Live, action: str) -> Entry:
    found = entries(live, action)
    assert len(found) == 1, found
    return found[0]


def machine_client(live: Live, *scopes: str) -> tuple[str, str]:
    from cdp.access.clients import ClientRepository

    with live.platform.db.transaction() as session:
        client, secret = ClientRepository(session).create(
            name="billing export",
            role="department_agent",
            department="sales",
            scopes=scopes,
            grant="client_credentials",
        )
    assert secret is not None
    return client.client_id, secret


def client_credentials(live: Live, auth: tuple[str, str]) -> requests.Response:
    return requests.post(live.token_url, data={"grant_type": "client_credentials"}, auth=auth, timeout=5)


def user_id(live: Live, username: str) -> uuid.UUID:
    with live.platform.db.read() as session:
        user = UserRepository(session, live.platform.vault, live.platform.settings).by_username(username)
    assert user is not None
    return user.id


# -- the token endpoint -------------------------------------------------------------------------------


def test_a_client_credentials_token_is_recorded_with_the_client_as_actor(live: Live) -> None:
    client_id, secret = machine_client(live, "ingest", "sources:read")
    response = client_credentials(live, (client_id, secret))
    assert response.status_code == 200
    entry = only(live, "auth.token")
    assert (entry.outcome, entry.actor, entry.actor_kind) == ("success", client_id, "client")
    assert (entry.role, entry.department) == ("department_agent", "sales")
    assert entry.details == {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "scope": "ingest sources:read",
    }
    assert entry.request_id == response.headers["X-Request-ID"]
    assert secret not in entry.text and response.json()["access_token"] not in entry.text


def test_a_wrong_secret_leaves_one_denied_entry_and_no_secret(live: Live) -> None:
    client_id, secret = machine_client(live, "ingest")
    wrong = "not-the-secret-" + uuid.uuid4().hex
    assert client_credentials(live, (client_id, wrong)).status_code == 401
    entry = only(live, "auth.token")
    assert (entry.outcome, entry.actor, entry.actor_kind) == ("denied", "anonymous", "anonymous")
    assert entry.details == {
        "grant_type": "client_credentials",
        "error": "invalid_client",
        "client_id": client_id,
    }
    assert wrong not in entry.text and secret not in entry.text


def test_an_unknown_client_id_is_not_copied_into_the_entry(live: Live) -> None:
    presented = "cdp-typed-by-someone"
    assert client_credentials(live, (presented, "whatever")).status_code == 401
    entry = only(live, "auth.token")
    assert entry.outcome == "denied"
    assert entry.details == {"grant_type": "client_credentials", "error": "invalid_client"}
    assert presented not in entry.text and "whatever" not in entry.text


def test_an_unsupported_grant_type_is_recorded_by_name_only_when_it_is_ours(live: Live) -> None:
    client_id, secret = machine_client(live, "ingest")
    typed = "password-of-someone"
    response = requests.post(live.token_url, data={"grant_type": typed}, auth=(client_id, secret), timeout=5)
    assert response.status_code == 400
    entry = only(live, "auth.token")
    assert entry.outcome == "denied" and entry.details["grant_type"] == "unsupported"
    assert entry.details["error"] == "unsupported_grant_type" and typed not in entry.text


def test_a_code_exchange_and_a_refresh_are_recorded_as_the_person(live: Live) -> None:
    flow, oauth = signed_in(live)
    alice = user_id(live, "alice")
    first_access, first_refresh = oauth.token["access_token"], oauth.token["refresh_token"]
    sid = claims(first_access)["sid"]
    rotated = oauth.refresh_token(live.token_url)
    issued = entries(live, "auth.token")
    assert [e.details["grant_type"] for e in issued] == ["authorization_code", "refresh_token"]
    for entry in issued:
        assert (entry.outcome, entry.actor, entry.actor_kind) == ("success", f"user:{alice}", "user")
        assert (entry.role, entry.department) == ("department_agent", "sales")
        assert entry.details["client_id"] == flow.client_id and entry.details["sid"] == sid
        assert entry.details["scope"] == "ingest sources:read"
    for entry in issued:
        for value in (first_refresh, first_access, rotated["refresh_token"], rotated["access_token"]):
            assert value not in entry.text


def test_refresh_token_reuse_is_denied_and_says_the_sign_in_was_revoked(live: Live) -> None:
    flow, oauth = signed_in(live)
    first = oauth.token["refresh_token"]
    oauth.refresh_token(live.token_url)
    assert refresh(live, flow, first).status_code == 400
    reused = entries(live, "auth.token")[-1]
    assert reused.outcome == "denied"
    assert reused.details == {
        "grant_type": "refresh_token",
        "client_id": flow.client_id,
        "error": "invalid_grant",
        "family_revoked": True,
        "revoked_reason": "refresh_reuse",
        "sid": claims(oauth.token["access_token"])["sid"],
    }
    assert reused.subjects == [f"user:{user_id(live, 'alice')}"]
    assert first not in reused.text


def test_a_replayed_code_is_denied_and_revokes_the_sign_in(live: Live) -> None:
    live.staff("alice")
    flow = staff_sign_in(live)
    location = flow.page.headers["Location"]  # type: ignore[union-attr]
    flow.exchange(location)
    with pytest.raises(OAuthError):
        flow.exchange(location)
    replay = entries(live, "auth.token")[-1]
    assert replay.outcome == "denied" and replay.details["grant_type"] == "authorization_code"
    assert replay.details["error"] == "invalid_grant" and replay.details["family_revoked"] is True
    assert replay.details["revoked_reason"] == "code_reuse"
    assert replay.subjects == [f"user:{user_id(live, 'alice')}"]


# -- revocation, introspection and the public documents ----------------------------------------------


def test_revocation_says_whether_a_token_was_revoked(live: Live) -> None:
    client_id, secret = machine_client(live, "ingest")
    token = client_credentials(live, (client_id, secret)).json()["access_token"]
    other_id, other_secret = machine_client(live, "ingest")
    for auth in ((other_id, other_secret), (client_id, secret)):
        response = requests.post(f"{live.base}/oauth/revoke", data={"token": token}, auth=auth, timeout=5)
        assert response.status_code == 200
    ignored, revoked = entries(live, "auth.revoke")
    assert (ignored.outcome, ignored.actor, ignored.details) == (
        "success",
        other_id,
        {"client_id": other_id, "revoked": False},
    )
    assert (revoked.outcome, revoked.actor) == ("success", client_id)
    assert revoked.details == {"client_id": client_id, "revoked": True, "token_type": "access_token"}
    assert token not in revoked.text

    assert (
        requests.post(
            f"{live.base}/oauth/revoke", data={"token": token}, auth=(client_id, "wrong"), timeout=5
        ).status_code
        == 401
    )
    denied = entries(live, "auth.revoke")[-1]
    assert denied.outcome == "denied" and denied.actor == "anonymous"
    assert denied.details == {"client_id": client_id, "error": "invalid_client", "revoked": False}


def test_introspection_is_recorded_with_the_answer(live: Live) -> None:
    client_id, secret = machine_client(live, "ingest")
    token = client_credentials(live, (client_id, secret)).json()["access_token"]
    for presented in (token, "not-a-token"):
        requests.post(
            f"{live.base}/oauth/introspect", data={"token": presented}, auth=(client_id, secret), timeout=5
        )
    active, inactive = entries(live, "auth.introspect")
    assert (active.outcome, active.actor, active.details) == (
        "success",
        client_id,
        {"client_id": client_id, "active": True},
    )
    assert inactive.details == {"client_id": client_id, "active": False}
    assert token not in active.text and "not-a-token" not in inactive.text


def test_metadata_and_jwks_leave_no_entries(live: Live) -> None:
    def recorded() -> int:
        with live.platform.db.read() as session:
            return len(session.execute(select(AuditEntry.id)).all())

    before = recorded()
    for path in ("/.well-known/oauth-authorization-server", "/oauth/jwks.json"):
        assert requests.get(f"{live.base}{path}", timeout=5).status_code == 200
    assert recorded() == before


# -- staff sign-in ------------------------------------------------------------------------------------


def test_a_staff_sign_in_is_recorded_as_the_user_and_a_plain_page_view_is_not(live: Live) -> None:
    live.staff("alice")
    client_id, secret = live.app_client("staff")
    flow = start(live, client_id, secret)
    flow.open()
    assert entries(live, "auth.login") == []
    redirected(flow.submit(username="alice", password=PASSWORD))
    alice = user_id(live, "alice")
    entry = only(live, "auth.login")
    assert (entry.outcome, entry.actor, entry.actor_kind) == ("success", f"user:{alice}", "user")
    assert (entry.role, entry.department) == ("department_agent", "sales")
    assert entry.details == {"method": "password", "client_id": client_id}
    assert entry.subjects == [f"user:{alice}"]
    assert "alice" not in entry.text.replace(f"user:{alice}", "") and PASSWORD not in entry.text


def test_a_second_factor_is_named_in_the_method(live: Live) -> None:
    uri = live.staff("dora", "compliance_officer", "sources:read", department=None)
    assert uri is not None
    flow = start(live, *live.app_client("staff", "sources:read"))
    flow.open()
    code = pyotp.parse_uri(uri).now()
    redirected(flow.submit(username="dora", password=PASSWORD, totp=code))
    entry = only(live, "auth.login")
    assert entry.details["method"] == "password+totp" and entry.role == "compliance_officer"


def test_a_failed_staff_sign_in_is_anonymous_and_never_holds_what_was_typed(live: Live) -> None:
    live.staff("erin")
    client_id, secret = live.app_client("staff")
    flow = start(live, client_id, secret)
    flow.open()
    wrong = "Tr0ub4dor&3-not-it"
    assert flow.submit(username="erin", password=wrong).status_code == 401
    assert flow.submit(username="nobody-here", password=wrong).status_code == 401
    known, unknown = entries(live, "auth.login")
    erin = user_id(live, "erin")
    assert (known.outcome, known.actor, known.actor_kind) == ("denied", "anonymous", "anonymous")
    assert known.details == {"reason": "bad_password", "client_id": client_id}
    assert known.subjects == [f"user:{erin}"]
    assert unknown.details == {"reason": "unknown_user", "client_id": client_id}
    assert unknown.subjects == []
    for entry in (known, unknown):
        assert "erin" not in entry.text.replace(str(erin), "")
        assert "nobody-here" not in entry.text and wrong not in entry.text


# -- customer sign-in ---------------------------------------------------------------------------------


def test_asking_for_a_code_looks_the_same_for_a_customer_and_a_stranger(live: Live, tmp_path: Path) -> None:
    live.customers(tmp_path)
    client_id, secret = live.app_client("customer")
    for address in (MARIA, "nobody@example.org"):
        flow = start(live, client_id, secret)
        flow.open()
        assert flow.submit(email=address).status_code == 200
    customer, stranger = entries(live, "auth.login_code")
    for entry in (customer, stranger):
        assert (entry.outcome, entry.actor, entry.subjects) == ("success", "anonymous", [])
        assert entry.details == {"client_id": client_id}
        assert "example" not in entry.text.lower()


def test_a_customer_code_sign_in_is_recorded_as_the_customer_and_a_wrong_code_is_denied(
    live: Live, tmp_path: Path
) -> None:
    records = live.customers(tmp_path)
    client_id, secret = live.app_client("customer")
    flow = start(live, client_id, secret)
    flow.open()
    flow.submit(email=MARIA)
    code = live.latest_code()
    wrong = "000000" if code != "000000" else "111111"
    assert flow.submit(code=wrong).status_code == 401
    redirected(flow.submit(code=code))
    denied, signed = entries(live, "auth.login")
    assert (denied.outcome, denied.actor, denied.subjects) == ("denied", "anonymous", [])
    assert denied.details == {"reason": "bad_code", "client_id": client_id}
    record_id = str(records["L-1"])
    assert (signed.outcome, signed.actor, signed.actor_kind) == (
        "success",
        f"customer:{record_id}",
        "customer",
    )
    assert signed.subjects == [record_id] and signed.role == "customer"
    assert signed.details == {"method": "email_code", "client_id": client_id}
    for entry in (denied, signed):
        assert code not in entry.content.replace(record_id, "") and wrong not in entry.content
        assert "maria" not in entry.text.lower()


def test_an_invalid_address_is_recorded_as_failed_without_the_input(live: Live) -> None:
    client_id, secret = live.app_client("customer")
    flow = start(live, client_id, secret)
    flow.open()
    assert flow.submit(email="not an address at all").status_code == 400
    entry = only(live, "auth.login_code")
    assert entry.outcome == "failed"
    assert entry.details == {"reason": "invalid_email", "client_id": client_id}
    assert "address" not in entry.text
