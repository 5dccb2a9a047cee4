"""The consent API on SQLite and PostgreSQL: staff record what a customer said and it decides the very next
marketing read; customers grant and withdraw their own; bad requests write nothing; events are never
changed or deleted over HTTP."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.access.roles import ROLE_SCOPES
from cdp.consent.catalog import ConsentCatalog
from cdp.consent.ledger import ConsentLedger
from cdp.db.models import AuditEntry, ConsentEvent
from cdp.db.types import utcnow
from cdp.platform import Platform
from tests.api.tokens import customer_token
from tests.profiles.fixtures import Customers, seed_customers

EMAIL = {"purpose": "marketing_email", "channel": "email"}


@dataclass
class World:
    client: FlaskClient
    platform: Platform
    customers: Customers
    tokens: dict[str, str]

    def call(self, method: str, path: str, token: str, body: Any = None) -> TestResponse:
        return self.client.open(
            path, method=method, json=body, headers={"Authorization": f"Bearer {self.tokens[token]}"}
        )

    def marketing_read(self, customer: uuid.UUID) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        response = self.call("GET", f"/v1/customers/{customer}?purpose=marketing", "marketing_analyst")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        return body["attributes"], {r["field"]: r for r in body["redactions"]}

    def events(self) -> int:
        with self.platform.db.read() as session:
            return int(session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one())


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> Iterator[World]:
    customers = seed_customers(platform, tmp_path)
    app = create_app(platform=platform)
    client = app.test_client()
    tokens: dict[str, str] = {}
    for role in ("dpo", "marketing_analyst", "support_agent"):
        with platform.db.transaction() as session:
            registered, secret = ClientRepository(session).create(
                name=f"consent {role}", role=role, scopes=ROLE_SCOPES[role], grant="client_credentials"
            )
        basic = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
        response = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200, response.get_json()
        tokens[role] = response.get_json()["access_token"]
        tokens[f"{role}_client"] = registered.client_id
    tokens["maria"] = customer_token(platform, customers.maria_crm_record)
    tokens["john"] = customer_token(platform, _john_record(platform, customers))
    yield World(client, platform, customers, tokens)


def _john_record(platform: Platform, customers: Customers) -> uuid.UUID:
    from cdp.consent.ledger import entity_records

    with platform.db.read() as session:
        return entity_records(session, customers.john)[0]


def _grant(
    world: World, purpose: str = "marketing_email", channel: str = "email", **extra: Any
) -> TestResponse:
    body = {"purpose": purpose, "channel": channel, "action": "grant", **extra}
    return world.call("POST", f"/v1/customers/{world.customers.john}/consents", "dpo", body)


# -- staff --------------------------------------------------------------------------------------------


def test_a_grant_discloses_the_purposes_attributes_to_the_next_marketing_read(world: World) -> None:
    attributes, redactions = world.marketing_read(world.customers.john)
    assert "first_name" not in attributes and redactions["first_name"]["reason"] == "consent"

    response = _grant(world)
    assert response.status_code == 201, response.get_json()
    event = response.get_json()
    assert (event["purpose"], event["channel"], event["action"], event["source"]) == (
        "marketing_email",
        "email",
        "grant",
        "call_centre",
    )
    assert event["actor"] == world.tokens["dpo_client"]
    assert uuid.UUID(event["record_id"]) == _john_record(world.platform, world.customers)

    attributes, redactions = world.marketing_read(world.customers.john)
    assert attributes["first_name"]["value"] == "John"
    assert {"email", "city", "last_name"} <= attributes.keys()
    assert "phone" not in attributes and "phone" in redactions
    email_consent = set(ConsentCatalog.default().purposes["marketing_email"].attributes)
    assert not [f for f, r in redactions.items() if r["reason"] == "consent" and f in email_consent]
    # the consent layer itself would not free phone for marketing on an email grant
    assert "phone" in ConsentLedger(world.platform.db).withheld(world.customers.john, "marketing", ["phone"])


def test_a_withdrawal_withholds_the_attributes_on_the_very_next_read(world: World) -> None:
    assert _grant(world).status_code == 201
    assert "email" in world.marketing_read(world.customers.john)[0]

    body = {"purpose": "marketing_email", "channel": "email", "action": "withdraw"}
    response = world.call("POST", f"/v1/customers/{world.customers.john}/consents", "dpo", body)
    assert response.status_code == 201, response.get_json()

    attributes, redactions = world.marketing_read(world.customers.john)
    for field in ("first_name", "email", "city"):
        assert field not in attributes
        assert redactions[field]["reason"] == "consent"
        assert "marketing_email" in redactions[field]["rule"]


def test_a_grant_whose_expiry_has_passed_withholds_the_attributes(world: World) -> None:
    now = utcnow()
    occurred, expires = now - timedelta(days=30), now - timedelta(minutes=1)
    response = _grant(world, occurred_at=occurred.isoformat(), expires_at=expires.isoformat())
    assert response.status_code == 201, response.get_json()

    attributes, redactions = world.marketing_read(world.customers.john)
    assert "email" not in attributes and redactions["email"]["reason"] == "consent"
    state = world.call("GET", f"/v1/customers/{world.customers.john}/consents", "dpo").get_json()["state"]
    email = next(s for s in state if s["purpose"] == "marketing_email")
    assert email["holds"] is False and email["channels"][0]["status"] == "expired"


@pytest.mark.parametrize(
    ("body", "field", "allowed"),
    [
        ({"purpose": "spam", "channel": "email", "action": "grant"}, "purpose", "marketing_email"),
        ({"purpose": "marketing_email", "channel": "phone", "action": "grant"}, "channel", "email"),
        ({"purpose": "marketing_email", "channel": "email", "action": "renew"}, "action", "withdraw"),
        (
            {"purpose": "marketing_email", "channel": "email", "action": "grant", "source": "rumour"},
            "source",
            "privacy_center",
        ),
        (
            {**EMAIL, "action": "withdraw", "expires_at": "2030-01-01T00:00:00Z"},
            "expires_at",
            "grant",
        ),
        (
            {**EMAIL, "action": "grant", "occurred_at": "2099-01-01T00:00:00Z"},
            "occurred_at",
            "future",
        ),
        (
            {**EMAIL, "action": "grant", "record_id": str(uuid.UUID(int=7))},
            "record_id",
            "customer's records",
        ),
    ],
    ids=["purpose", "channel", "action", "source", "expiry-of-a-withdrawal", "future", "foreign-record"],
)  # fmt: skip
def test_an_invalid_event_is_a_422_naming_the_field_and_writes_nothing(
    world: World, body: dict[str, Any], field: str, allowed: str
) -> None:
    response = world.call("POST", f"/v1/customers/{world.customers.john}/consents", "dpo", body)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    messages = " ".join(response.get_json()["errors"]["json"][field])
    assert allowed in messages
    assert world.events() == 0


def test_an_unknown_customer_is_a_404_and_writes_nothing(world: World) -> None:
    body = {"purpose": "marketing_email", "channel": "email", "action": "grant"}
    for path in (f"/v1/customers/{uuid.uuid4()}/consents",):
        assert world.call("POST", path, "dpo", body).status_code == 404
        assert world.call("GET", path, "dpo").status_code == 404
    assert world.events() == 0


def test_a_customers_consents_show_state_and_history_and_the_read_is_audited(world: World) -> None:
    assert _grant(world).status_code == 201
    response = world.call("GET", f"/v1/customers/{world.customers.john}/consents", "dpo")
    assert response.status_code == 200
    body = response.get_json()
    state = {s["purpose"]: s for s in body["state"]}
    assert state["marketing_email"]["holds"] is True
    assert state["marketing_phone"]["holds"] is False
    assert state["analytics"]["holds"] is True  # legitimate interest: holds until an objection
    assert [(e["purpose"], e["action"]) for e in body["history"]] == [("marketing_email", "grant")]
    with world.platform.db.read() as session:
        read = session.execute(select(AuditEntry).where(AuditEntry.action == "consent.read")).scalars().one()
    assert str(world.customers.john) in read.subjects


def test_counts_follow_the_events(world: World) -> None:
    def counts() -> dict[str, dict[str, int]]:
        response = world.call("GET", "/v1/consents/counts", "dpo")
        assert response.status_code == 200
        return {row["purpose"]: row for row in response.get_json()["purposes"]}

    before = counts()
    assert before["marketing_email"]["granted"] == 0 and before["service"]["holds"] == 3
    assert _grant(world).status_code == 201
    after = counts()
    assert (after["marketing_email"]["granted"], after["marketing_email"]["holds"]) == (1, 1)


def test_the_catalog_lists_every_purpose_with_its_text(world: World) -> None:
    response = world.call("GET", "/v1/consent/purposes", "dpo")
    assert response.status_code == 200
    purposes = {p["name"]: p for p in response.get_json()["purposes"]}
    assert purposes["marketing_email"]["lawful_basis"] == "consent"
    assert purposes["marketing_email"]["text"].startswith("Yes, send me offers")
    assert world.call("GET", "/v1/consent/purposes", "support_agent").status_code == 403


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_events_cannot_be_changed_or_deleted_over_http(world: World, method: str) -> None:
    event = _grant(world).get_json()
    history_path = f"/v1/customers/{world.customers.john}/consents"
    for path in (
        history_path,
        f"{history_path}/{event['id']}",
        "/v1/me/consents",
        f"/v1/me/consents/{event['id']}",
    ):
        response = world.call(method, path, "dpo", {"action": "withdraw"})
        assert response.status_code in (404, 405), (method, path)
        if path in (history_path, "/v1/me/consents"):
            assert response.status_code == 405
    history = world.call("GET", history_path, "dpo").get_json()["history"]
    assert history == [event]
    assert world.events() == 1


# -- self-service -------------------------------------------------------------------------------------


def test_a_customer_grants_and_withdraws_their_own_consent(world: World) -> None:
    body = {"purpose": "marketing_email", "channel": "email", "action": "grant"}
    response = world.call("POST", "/v1/me/consents", "maria", body)
    assert response.status_code == 201, response.get_json()
    event = response.get_json()
    assert event["source"] == "privacy_center" and "actor" not in event
    assert uuid.UUID(event["record_id"]) == world.customers.maria_crm_record
    assert "email" in world.marketing_read(world.customers.maria)[0]

    own = world.call("GET", "/v1/me/consents", "maria").get_json()
    assert next(s for s in own["state"] if s["purpose"] == "marketing_email")["holds"] is True
    assert {p["name"] for p in own["purposes"]} >= {"marketing_email", "profiling"}
    assert all("actor" not in e for e in own["history"])

    withdraw = {**body, "action": "withdraw"}
    assert world.call("POST", "/v1/me/consents", "maria", withdraw).status_code == 201
    attributes, redactions = world.marketing_read(world.customers.maria)
    assert "email" not in attributes and redactions["email"]["reason"] == "consent"
    with world.platform.db.read() as session:
        actors = set(session.execute(select(ConsentEvent.actor)).scalars())
    assert actors == {f"customer:{world.customers.maria_crm_record}"}


@pytest.mark.parametrize(
    "extra",
    [{"action": "expire"}, {"occurred_at": "2020-01-01T00:00:00Z"}, {"expires_at": "2099-01-01T00:00:00Z"},
     {"record_id": "00000000-0000-0000-0000-000000000007"}, {"source": "import"}],
    ids=["expire", "past", "expiry", "record", "source"],
)  # fmt: skip
def test_a_customer_may_only_grant_or_withdraw_now_through_their_own_record(
    world: World, extra: dict[str, str]
) -> None:
    body = {"purpose": "marketing_email", "channel": "email", "action": "grant", **extra}
    response = world.call("POST", "/v1/me/consents", "maria", body)
    assert response.status_code == 422, response.get_json()
    assert world.events() == 0


def test_a_customer_cannot_touch_another_customers_consents(world: World) -> None:
    body = {"purpose": "marketing_email", "channel": "email", "action": "grant"}
    path = f"/v1/customers/{world.customers.john}/consents"
    assert world.call("POST", path, "maria", body).status_code == 403
    assert world.call("GET", path, "maria").status_code == 403
    assert world.call("POST", "/v1/me/consents", "maria", body).status_code == 201
    john = world.call("GET", "/v1/me/consents", "john").get_json()
    assert john["history"] == []
    assert next(s for s in john["state"] if s["purpose"] == "marketing_email")["holds"] is False
    assert "email" not in world.marketing_read(world.customers.john)[0]


def test_staff_tokens_cannot_use_the_self_service_endpoints(world: World) -> None:
    body = {"purpose": "marketing_email", "channel": "email", "action": "grant"}
    assert world.call("POST", "/v1/me/consents", "dpo", body).status_code == 403
    assert world.call("GET", "/v1/me/consents", "dpo").status_code == 403
    assert world.events() == 0
