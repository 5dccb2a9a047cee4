"""Profile reads over HTTP by people who signed in (authorization code + PKCE, Authlib's client): a
customer reads their own data and nobody else's; a member of staff reads through their role's policy;
the policy decides every field for the customer role exactly as for the staff roles."""

from __future__ import annotations

from pathlib import Path

import pytest
from authlib.integrations.requests_client import OAuth2Session

from cdp.access.policy import PROFILE_FIELDS, TIMELINE_FIELDS, FieldPolicy, Mode
from cdp.identity.service import IdentityService
from tests.api.test_oauth_code_flow import MARIA, PASSWORD, Live, live, redirected, start

__all__ = ["live"]

POLICY = FieldPolicy.default()


def customer_session(live: Live, email: str) -> OAuth2Session:
    client_id, secret = live.app_client("customer", "self:read", public=True)
    flow = start(live, client_id, secret)
    assert flow.open().status_code == 200
    assert flow.submit(email=email).status_code == 200
    response = flow.submit(code=live.latest_code())
    redirected(response)
    return flow.exchange(response.headers["Location"])


def staff_session(
    live: Live, username: str, role: str, *scopes: str, department: str | None = None
) -> OAuth2Session:
    live.staff(username, role, *scopes, department=department)
    client_id, secret = live.app_client("staff", *scopes)
    flow = start(live, client_id, secret)
    assert flow.open().status_code == 200
    response = flow.submit(username=username, password=PASSWORD)
    redirected(response)
    return flow.exchange(response.headers["Location"])


def test_a_signed_in_customer_reads_all_of_their_own_data_and_nothing_else(
    live: Live, tmp_path: Path
) -> None:
    records = live.customers(tmp_path)
    identity = IdentityService(live.platform.db, live.platform.vault)
    maria, john = identity.entity_of(records["L-1"]), identity.entity_of(records["L-2"])
    oauth = customer_session(live, MARIA)

    me = oauth.get(f"{live.base}/v1/me")
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["id"] == str(maria) and body["purpose"] == "self_service" and body["redactions"] == []
    assert body["attributes"]["first_name"]["value"] == "Maria"
    assert body["attributes"]["email"]["value"] == "Maria.Garcia+news@Example.com"
    for field in PROFILE_FIELDS:
        if field not in TIMELINE_FIELDS:
            assert POLICY.decide("customer", "self_service", field).mode is Mode.CLEAR
    timeline = oauth.get(f"{live.base}/v1/me/timeline")
    assert timeline.status_code == 200 and timeline.json()["items"] == []

    # another customer's profile: not even the endpoint (no profiles:read), and no other purpose
    other = oauth.get(f"{live.base}/v1/customers/{john}", params={"purpose": "self_service"})
    assert other.status_code == 403 and 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    support = oauth.get(f"{live.base}/v1/me", params={"purpose": "support"})
    assert support.status_code == 403 and "may not read for purpose support" in support.json()["detail"]


def test_signed_in_staff_read_through_their_roles_policy(live: Live, tmp_path: Path) -> None:
    records = live.customers(tmp_path)
    maria = IdentityService(live.platform.db, live.platform.vault).entity_of(records["L-1"])
    oauth = staff_session(live, "sam", "support_agent", "profiles:read")
    response = oauth.get(f"{live.base}/v1/customers/{maria}", params={"purpose": "support"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["attributes"]["date_of_birth"] == {
        **body["attributes"]["date_of_birth"],
        "value": "1961-**-**",
    }
    assert {r["field"]: r["reason"] for r in body["redactions"]} == {
        "date_of_birth": "role_policy",
        "national_id": "role_policy",
        "attributes": "role_policy",
    }
    assert oauth.get(f"{live.base}/v1/me").status_code == 403  # staff have no own profile scope


@pytest.mark.parametrize("department", ["sales", "support"])
def test_a_department_agents_reach_follows_the_department_in_their_token(
    live: Live, tmp_path: Path, department: str
) -> None:
    records = live.customers(tmp_path)  # the CRM is a sales source
    maria = IdentityService(live.platform.db, live.platform.vault).entity_of(records["L-1"])
    oauth = staff_session(live, "dana", "department_agent", "profiles:read", department=department)
    response = oauth.get(f"{live.base}/v1/customers/{maria}", params={"purpose": department})
    assert response.status_code == (200 if department == "sales" else 404), response.text
