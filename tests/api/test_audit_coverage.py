"""Every API operation leaves exactly the audit entries it should — checked over the whole route table.

The route table comes from the app itself: a route without an entry in ``CASES`` fails
:func:`test_every_route_has_an_audit_expectation`, so a new endpoint cannot ship without someone deciding
what it records. Each case makes one real request and compares the entries carrying that request's id
(action, outcome, actor) with the expectation; every protected operation is also called without a token
and with a token lacking its scope, which must each record one refusal. No entry may hold a value of the
seeded customers' personal data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from sqlalchemy import select
from werkzeug.test import TestResponse

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.access.gate import Actor
from cdp.access.grants import GrantStore
from cdp.access.outbox import Outbox
from cdp.access.roles import ROLE_SCOPES, SERVICE_ROLES
from cdp.config import Settings
from cdp.db.models import AuditEntry, EntityMember
from cdp.dsr.receipts import Receipts
from cdp.dsr.routing import WorkQueue
from cdp.dsr.service import OPEN_STATUSES, DsrService
from cdp.platform import Platform
from cdp.retention.holds import LegalHolds
from cdp.vault.signing import ALG, SigningKeys
from tests.profiles.fixtures import Customers, seed_customers
from web.apps import WEB_PATH_PREFIXES

DEPARTMENT = {"department_agent": "sales"}
REDIRECT = "http://127.0.0.1:9/callback"
PERSONAL_VALUES = [
    *("Maria", "García", "Garcia", "John", "Smith", "Ana", "Silva", "Zoe", "Quist"),
    *("maria.garcia@example.com", "john.smith@example.com", "ana.silva@example.org", "zq@example.net"),
    *("07911 123456", "7911123456", "7400123456", "1961-07-14", "1980-02-01", "High Street", "Mill Road"),
    *(
        "SW1A 1AA",
        "M1 1AE",
        "London",
        "Manchester",
        "QQ123456C",
        "parcel",
        "refund order",
        "checked by phone",
    ),
]
"""Values of the seeded customers (and of what the cases send) that no audit entry may contain."""


@dataclass
class World:
    app: Flask
    client: FlaskClient
    platform: Platform
    customers: Customers
    tokens: dict[str, str]
    clients: dict[str, tuple[str, str]]
    staff_app: str = ""
    customer_token: str = ""
    customer_record: uuid.UUID = field(default_factory=uuid.uuid4)


def _client_token(client: FlaskClient, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


def _customer_token(platform: Platform, record_id: uuid.UUID) -> str:
    """A signed-in customer's access token: a sign-in (token family) of a customer app, signed by the
    server's own key exactly as the authorization code grant would issue it."""
    settings = platform.settings
    with platform.db.transaction() as session:
        app_client, _ = ClientRepository(session).create(
            name="privacy centre",
            role="customer",
            scopes=["self:read", "self:write"],
            grant="authorization_code",
            redirect_uris=[REDIRECT],
            public=True,
        )
        family_id = uuid.uuid4()
        GrantStore(session).start_family(
            family_id=family_id,
            client_id=app_client.client_id,
            principal=f"customer:{record_id}",
            scope="self:read self:write",
            ttl_seconds=600,
        )
        material = SigningKeys(session, platform.vault).active()
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "sub": f"customer:{record_id}",
        "aud": settings.api_audience,
        "client_id": app_client.client_id,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
        "scope": "self:read self:write",
        "roles": ["customer"],
        "sid": str(family_id),
    }
    return jwt.encode({"alg": ALG, "typ": "at+jwt", "kid": material.kid}, claims, material.private_key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp_path: Path = tmp_path_factory.mktemp("audit-coverage")
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    customers = seed_customers(platform, tmp_path)
    app = create_app(platform=platform)
    client = app.test_client()
    tokens: dict[str, str] = {}
    clients: dict[str, tuple[str, str]] = {}
    for role in sorted(SERVICE_ROLES):
        with platform.db.transaction() as session:
            registered, secret = ClientRepository(session).create(
                name=f"coverage {role}",
                role=role,
                department=DEPARTMENT.get(role),
                scopes=ROLE_SCOPES[role],
                grant="client_credentials",
            )
        assert secret is not None
        clients[role] = (registered.client_id, secret)
        tokens[role] = _client_token(client, registered.client_id, secret)
    with platform.db.transaction() as session:
        staff_app, _ = ClientRepository(session).create(
            name="department console",
            role="staff",
            scopes=["profiles:read"],
            grant="authorization_code",
            redirect_uris=[REDIRECT],
            public=True,
        )
    world = World(app, client, platform, customers, tokens, clients, staff_app.client_id)
    world.customer_record = customers.maria_crm_record
    world.customer_token = _customer_token(platform, customers.maria_crm_record)
    try:
        yield world
    finally:
        platform.close()


# -- the cases ------------------------------------------------------------------------------------------

Call = Callable[[World, dict[str, str]], TestResponse]
Expected = list[tuple[str, str]]


@dataclass(frozen=True)
class Case:
    call: Call
    expected: Expected
    """(action, outcome) of every entry the request records, in any order."""
    token: str | None = None
    """Role whose token the call carries ("customer" for a signed-in customer); None for public routes."""
    scope: str | None = None


def _get(path: Callable[[World], str]) -> Call:
    return lambda w, headers: w.client.get(path(w), headers=headers)


def _post_json(path: Callable[[World], str], body: Callable[[World], Any]) -> Call:
    return lambda w, headers: w.client.post(path(w), json=body(w), headers=headers)


def _form(path: str, data: Callable[[World], dict[str, str]], basic: str | None = None) -> Call:
    def call(w: World, headers: dict[str, str]) -> TestResponse:
        extra = dict(headers)
        if basic is not None:
            client_id, secret = w.clients[basic]
            extra["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return w.client.post(path, data=data(w), headers=extra)

    return call


def _authorize_params(w: World) -> dict[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return {
        "response_type": "code",
        "client_id": w.staff_app,
        "redirect_uri": REDIRECT,
        "scope": "profiles:read",
        "state": "s" * 16,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def _authorize_get(w: World, headers: dict[str, str]) -> TestResponse:
    return w.client.get("/oauth/authorize", query_string=_authorize_params(w), headers=headers)


def _authorize_post(w: World, headers: dict[str, str]) -> TestResponse:
    form = {"username": "nobody", "password": "wrong password", "totp": ""}
    return w.client.post("/oauth/authorize", query_string=_authorize_params(w), data=form, headers=headers)


def _ingest_row(w: World) -> dict[str, Any]:
    return {"rows": [{"LeadId": "L-9", "FirstName": "Zoe", "LastName": "Quist", "EMail": "zq@example.net"}]}


def _customer_id(w: World) -> str:
    return str(w.customers.john)


# -- data-subject requests, retention and work queues: preconditions made through the services ----------


def _dsr(w: World) -> DsrService:
    return DsrService.for_platform(w.platform)


def _record_of(w: World, entity_id: uuid.UUID) -> uuid.UUID:
    with w.platform.db.read() as session:
        return session.execute(
            select(EntityMember.record_id).where(EntityMember.entity_id == entity_id).limit(1)
        ).scalar_one()


def _entity_of_record(w: World, record_id: uuid.UUID) -> uuid.UUID:
    with w.platform.db.read() as session:
        return session.execute(
            select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
        ).scalar_one()


def _clear(w: World, entity_id: uuid.UUID) -> None:
    """Withdraw the customer's open requests, so a case can open a new one of any kind."""
    service = _dsr(w)
    for view in service.search(entity_id=entity_id, limit=100):
        if view.status in OPEN_STATUSES:
            service.reject(view.id, reason="withdrawn")


def _verification_code(w: World) -> str:
    with w.platform.db.read() as session:
        messages = [m for m in Outbox(session, w.platform.vault).latest() if m.purpose == "dsr_verification"]
    found = re.search(r"code: (\d+)", messages[0].body)
    assert found is not None
    return found.group(1)


def _on_behalf(w: World, kind: str, *, verified: bool = False) -> str:
    """A request of John's opened by another DPO (so the case's DPO may approve it)."""
    _clear(w, w.customers.john)
    service = _dsr(w)
    view = service.open_on_behalf(w.customers.john, kind, opened_by="user:coverage-opener")
    if verified:
        service.verify(view.id, _verification_code(w))
    return str(view.id)


def _download_path(w: World) -> str:
    """John's own export, carried out: its one-time link."""
    _clear(w, w.customers.john)
    record = _record_of(w, w.customers.john)
    service = _dsr(w)
    view = service.open_self_service(Actor(f"customer:{record}", "customer", None, record), "access")
    token = service.process(view.id).download_token
    assert token is not None
    return f"/v1/dsr/downloads/{token}"


def _own_request(w: World) -> str:
    """One of the signed-in customer's requests (an export, completed, so it blocks no other case)."""
    actor = Actor(f"customer:{w.customer_record}", "customer", None, w.customer_record)
    service = _dsr(w)
    mine = service.mine(actor)
    if mine:
        return str(mine[0].id)
    _clear(w, _entity_of_record(w, w.customer_record))
    view = service.open_self_service(actor, "access")
    service.process(view.id)
    return str(view.id)


def _own_access(w: World) -> dict[str, str]:
    _clear(w, _entity_of_record(w, w.customer_record))
    return {"kind": "access"}


def _receipt_path(w: World) -> str:
    with w.platform.db.transaction() as session:
        receipt = Receipts(session, w.platform.vault).issue("destruction_certificate", {"note": "coverage"})
    return f"/v1/receipts/{receipt.id}"


def _hold_release_path(w: World) -> str:
    with w.platform.db.transaction() as session:
        hold = LegalHolds(session).place(reason="case 7", actor="user:coverage", entity_id=w.customers.john)
    return f"/v1/retention/holds/{hold[0].id}/release"


def _work_item(w: World) -> str:
    request_id = uuid.UUID(_on_behalf(w, "access"))
    with w.platform.db.read() as session:
        item = WorkQueue(session, _dsr(w).routing or pytest.fail("no routing")).find("dsr_access", request_id)
    assert item is not None
    return f"/v1/work/items/{item.id}"


def _segment(w: World) -> str:
    """A saved segment (a fresh one per call: a case may delete it)."""
    from cdp.analytics.service import AnalyticsService

    name = f"coverage-{uuid.uuid4().hex[:8]}"
    AnalyticsService.for_platform(w.platform).create_segment(
        {"name": name, "match": {"department": "sales"}}, actor="user:coverage"
    )
    return name


def _segment_body(w: World) -> dict[str, Any]:
    return {"name": f"coverage-{uuid.uuid4().hex[:8]}", "match": {"department": "sales"}}


def _send(method: str, path: Callable[[World], str], body: Callable[[World], Any] | None = None) -> Call:
    return lambda w, headers: w.client.open(
        path(w), method=method, json=body(w) if body else None, headers=headers
    )


def _post(path: Callable[[World], str], body: dict[str, Any] | None = None) -> Call:
    return lambda w, headers: w.client.post(path(w), json=body or {}, headers=headers)


CASES: dict[tuple[str, str], Case] = {
    # public documents and probes: nothing about anyone, nothing recorded
    ("GET", "/"): Case(_get(lambda w: "/"), []),
    ("GET", "/healthz"): Case(_get(lambda w: "/healthz"), []),
    ("GET", "/readyz"): Case(_get(lambda w: "/readyz"), []),
    ("GET", "/openapi.json"): Case(_get(lambda w: "/openapi.json"), []),
    ("GET", "/.well-known/oauth-authorization-server"): Case(
        _get(lambda w: "/.well-known/oauth-authorization-server"), []
    ),
    ("GET", "/oauth/jwks.json"): Case(_get(lambda w: "/oauth/jwks.json"), []),
    # authorization server
    ("POST", "/oauth/token"): Case(
        _form("/oauth/token", lambda w: {"grant_type": "client_credentials"}, basic="support_agent"),
        [("auth.token", "success")],
    ),
    ("POST", "/oauth/revoke"): Case(
        _form("/oauth/revoke", lambda w: {"token": secrets.token_urlsafe(20)}, basic="support_agent"),
        [("auth.revoke", "success")],
    ),
    ("POST", "/oauth/introspect"): Case(
        _form("/oauth/introspect", lambda w: {"token": w.tokens["dpo"]}, basic="support_agent"),
        [("auth.introspect", "success")],
    ),
    ("GET", "/oauth/authorize"): Case(_authorize_get, []),
    ("POST", "/oauth/authorize"): Case(_authorize_post, [("auth.login", "denied")]),
    # customer data
    ("POST", "/v1/customers/search"): Case(
        _post_json(lambda w: "/v1/customers/search", lambda w: {"email": "maria.garcia@example.com"}),
        [("profile.search", "success")],
        "support_agent",
        "profiles:read",
    ),
    ("GET", "/v1/customers/{customer_id}"): Case(
        _get(lambda w: f"/v1/customers/{_customer_id(w)}?purpose=support"),
        [("profile.read", "success")],
        "support_agent",
        "profiles:read",
    ),
    ("GET", "/v1/customers/{customer_id}/timeline"): Case(
        _get(lambda w: f"/v1/customers/{_customer_id(w)}/timeline?purpose=support"),
        [("timeline.read", "success")],
        "support_agent",
        "profiles:read",
    ),
    ("GET", "/v1/me"): Case(_get(lambda w: "/v1/me"), [("profile.read", "success")], "customer", "self:read"),
    ("GET", "/v1/me/timeline"): Case(
        _get(lambda w: "/v1/me/timeline"), [("timeline.read", "success")], "customer", "self:read"
    ),
    ("GET", "/v1/me/access-log"): Case(
        _get(lambda w: "/v1/me/access-log"), [("audit.transparency", "success")], "customer", "self:read"
    ),
    # consent
    ("GET", "/v1/consent/purposes"): Case(
        _get(lambda w: "/v1/consent/purposes"), [("consent.read", "success")], "dpo", "consent:manage"
    ),
    ("POST", "/v1/customers/{customer_id}/consents"): Case(
        _post_json(
            lambda w: f"/v1/customers/{_customer_id(w)}/consents",
            lambda w: {"purpose": "marketing_email", "channel": "email", "action": "grant"},
        ),
        [("consent.record", "success")],
        "dpo",
        "consent:manage",
    ),
    ("GET", "/v1/customers/{customer_id}/consents"): Case(
        _get(lambda w: f"/v1/customers/{_customer_id(w)}/consents"),
        [("consent.read", "success")],
        "dpo",
        "consent:manage",
    ),
    ("GET", "/v1/consents/counts"): Case(
        _get(lambda w: "/v1/consents/counts"), [("consent.counts", "success")], "dpo", "consent:manage"
    ),
    ("GET", "/v1/me/consents"): Case(
        _get(lambda w: "/v1/me/consents"), [("consent.read", "success")], "customer", "self:read"
    ),
    ("POST", "/v1/me/consents"): Case(
        _post_json(
            lambda w: "/v1/me/consents",
            lambda w: {"purpose": "marketing_email", "channel": "email", "action": "grant"},
        ),
        [("consent.record", "success")],
        "customer",
        "self:write",
    ),
    # ingestion
    ("POST", "/v1/sources/{source}/records"): Case(
        _post_json(lambda w: "/v1/sources/crm/records", _ingest_row),
        [("records.ingest", "success")],
        "department_agent",
        "ingest",
    ),
    ("POST", "/v1/sources/{source}/interactions"): Case(
        _post_json(
            lambda w: "/v1/sources/crm/interactions",
            lambda w: {
                "rows": [
                    {
                        "ActivityId": "A-9",
                        "LeadId": "L-2",
                        "At": "2025-01-01 10:00",
                        "Channel": "email",
                        "Subject": "Hi",
                        "Kind": "contact",
                    }
                ]
            },
        ),
        [("interactions.ingest", "success")],
        "department_agent",
        "ingest",
    ),
    ("GET", "/v1/sources"): Case(
        _get(lambda w: "/v1/sources"), [("sources.read", "success")], "admin", "sources:read"
    ),
    ("GET", "/v1/quarantine"): Case(
        _get(lambda w: "/v1/quarantine"), [("quarantine.read", "success")], "admin", "sources:read"
    ),
    # identity resolution
    ("GET", "/v1/identity/records/{record_id}/entity"): Case(
        _get(lambda w: f"/v1/identity/records/{w.customers.maria_crm_record}/entity"),
        [("identity.read", "success")],
        "data_steward",
        "identity:read",
    ),
    ("GET", "/v1/identity/entities/{entity_id}/explanation"): Case(
        _get(lambda w: f"/v1/identity/entities/{w.customers.maria}/explanation"),
        [("identity.explain", "success")],
        "data_steward",
        "identity:read",
    ),
    ("GET", "/v1/identity/explanations"): Case(
        _get(
            lambda w: (
                f"/v1/identity/explanations?record_a={w.customers.maria_crm_record}"
                f"&record_b={w.customers.maria_helpdesk_record}"
            )
        ),
        [("identity.explain", "failed")],  # no match model trained in this world: 409, still audited
        "data_steward",
        "identity:read",
    ),
    ("GET", "/v1/identity/review"): Case(
        _get(lambda w: "/v1/identity/review"),
        [("identity.review", "success")],
        "data_steward",
        "identity:read",
    ),
    ("POST", "/v1/identity/merges"): Case(
        _post_json(
            lambda w: "/v1/identity/merges",
            lambda w: {
                "record_a": str(w.customers.ana_record),
                "record_b": str(w.customers.maria_crm_record),
                "reason": "checked by phone",
            },
        ),
        [("identity.merge", "success")],
        "data_steward",
        "identity:manage",
    ),
    ("POST", "/v1/identity/entities/{entity_id}/splits"): Case(
        _post_json(
            lambda w: f"/v1/identity/entities/{_entity_of(w, w.customers.maria_helpdesk_record)}/splits",
            lambda w: {
                "record_ids": [str(w.customers.maria_helpdesk_record)],
                "reason": "not the same person",
            },
        ),
        [("identity.split", "success")],
        "data_steward",
        "identity:manage",
    ),
    # data-subject requests
    ("GET", "/v1/dsr/downloads/{token}"): Case(
        _get(_download_path),
        [("dsr.export.download", "success")],  # the link is the credential
    ),
    ("POST", "/v1/dsr/requests"): Case(
        _post_json(
            lambda w: "/v1/dsr/requests",
            lambda w: (_clear(w, w.customers.john), {"customer_id": str(w.customers.john), "kind": "access"})[
                1
            ],
        ),
        [("dsr.request", "success"), ("work.route", "success")],
        "dpo",
        "dsr:manage",
    ),
    ("GET", "/v1/dsr/requests"): Case(
        _get(lambda w: "/v1/dsr/requests?limit=5"), [("dsr.read", "success")], "dpo", "dsr:manage"
    ),
    ("GET", "/v1/dsr/requests/{request_id}"): Case(
        _get(lambda w: f"/v1/dsr/requests/{_on_behalf(w, 'access')}"),
        [("dsr.read", "success")],
        "dpo",
        "dsr:manage",
    ),
    ("POST", "/v1/dsr/requests/{request_id}/verify"): Case(
        _post_json(
            lambda w: f"/v1/dsr/requests/{_on_behalf(w, 'access')}/verify",
            lambda w: {"code": _verification_code(w)},
        ),
        [("dsr.verify", "success")],
        "dpo",
        "dsr:manage",
    ),
    ("POST", "/v1/dsr/requests/{request_id}/approve"): Case(
        _post(lambda w: f"/v1/dsr/requests/{_on_behalf(w, 'erasure', verified=True)}/approve"),
        [("dsr.approve", "success")],
        "dpo",
        "dsr:manage",
    ),
    ("POST", "/v1/dsr/requests/{request_id}/reject"): Case(
        _post(lambda w: f"/v1/dsr/requests/{_on_behalf(w, 'access')}/reject", {"reason": "duplicate"}),
        [("dsr.reject", "success"), ("work.close", "success")],
        "dpo",
        "dsr:manage",
    ),
    ("POST", "/v1/dsr/requests/{request_id}/process"): Case(
        _post(lambda w: f"/v1/dsr/requests/{_on_behalf(w, 'access', verified=True)}/process"),
        [("profile.read", "success"), ("dsr.export", "success"), ("work.close", "success")],
        "dpo",
        "dsr:manage",
    ),
    ("GET", "/v1/me/requests"): Case(
        _get(lambda w: "/v1/me/requests"), [("dsr.read", "success")], "customer", "self:read"
    ),
    ("GET", "/v1/me/requests/{request_id}"): Case(
        _get(lambda w: f"/v1/me/requests/{_own_request(w)}"),
        [("dsr.read", "success")],
        "customer",
        "self:read",
    ),
    ("POST", "/v1/me/requests"): Case(
        _post_json(lambda w: "/v1/me/requests", _own_access),
        [
            ("dsr.request", "success"),
            ("work.route", "success"),
            ("profile.read", "success"),
            ("dsr.export", "success"),
            ("work.close", "success"),
        ],
        "customer",
        "self:write",
    ),
    ("GET", "/v1/receipts"): Case(
        _get(lambda w: "/v1/receipts?limit=5"),
        [("dsr.receipt", "success")],
        "compliance_officer",
        "audit:read",
    ),
    ("GET", "/v1/receipts/{receipt_id}"): Case(
        _get(_receipt_path), [("dsr.receipt", "success")], "dpo", "audit:read"
    ),
    # retention
    ("GET", "/v1/retention/policy"): Case(
        _get(lambda w: "/v1/retention/policy"), [("retention.read", "success")], "dpo", "retention:manage"
    ),
    ("POST", "/v1/retention/sweeps"): Case(
        _post(lambda w: "/v1/retention/sweeps", {"dry_run": True}),
        [("retention.sweep", "success")],
        "dpo",
        "retention:manage",
    ),
    ("GET", "/v1/retention/sweeps"): Case(
        _get(lambda w: "/v1/retention/sweeps"), [("retention.read", "success")], "dpo", "retention:manage"
    ),
    ("POST", "/v1/retention/holds"): Case(
        _post_json(
            lambda w: "/v1/retention/holds",
            lambda w: {"customer_id": str(w.customers.john), "reason": "case 8"},
        ),
        [("retention.hold", "success")],
        "dpo",
        "retention:manage",
    ),
    ("GET", "/v1/retention/holds"): Case(
        _get(lambda w: "/v1/retention/holds"), [("retention.read", "success")], "dpo", "retention:manage"
    ),
    ("POST", "/v1/retention/holds/{hold_id}/release"): Case(
        _post(_hold_release_path, {"reason": "case closed"}),
        [("retention.release", "success")],
        "dpo",
        "retention:manage",
    ),
    # work queues
    ("GET", "/v1/work/items"): Case(
        _get(lambda w: "/v1/work/items"), [("work.read", "success")], "department_agent", "work:manage"
    ),
    ("GET", "/v1/work/items/{item_id}"): Case(
        _get(_work_item), [("work.read", "success")], "dpo", "work:manage"
    ),
    ("POST", "/v1/work/items/{item_id}/assign"): Case(
        _post_json(lambda w: f"{_work_item(w)}/assign", lambda w: {"assignee": f"user:{uuid.uuid4()}"}),
        [("work.assign", "success")],
        "dpo",
        "work:manage",
    ),
    ("POST", "/v1/work/items/{item_id}/close"): Case(
        _post(lambda w: f"{_work_item(w)}/close"), [("work.close", "success")], "dpo", "work:manage"
    ),
    # analytics
    ("GET", "/v1/analytics/segments"): Case(
        _get(lambda w: "/v1/analytics/segments"),
        [("analytics.read", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    ("POST", "/v1/analytics/segments"): Case(
        _post_json(lambda w: "/v1/analytics/segments", _segment_body),
        [("analytics.segments", "success")],
        "marketing_analyst",
        "analytics:manage",
    ),
    ("POST", "/v1/analytics/segments/preview"): Case(
        _post_json(lambda w: "/v1/analytics/segments/preview", _segment_body),
        [("analytics.run", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    ("GET", "/v1/analytics/segments/{segment}"): Case(
        _get(lambda w: f"/v1/analytics/segments/{_segment(w)}"),
        [("analytics.read", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    ("PUT", "/v1/analytics/segments/{segment}"): Case(
        _send("PUT", lambda w: f"/v1/analytics/segments/{_segment(w)}", _segment_body),
        [("analytics.segments", "success")],
        "marketing_analyst",
        "analytics:manage",
    ),
    ("DELETE", "/v1/analytics/segments/{segment}"): Case(
        _send("DELETE", lambda w: f"/v1/analytics/segments/{_segment(w)}"),
        [("analytics.segments", "success")],
        "marketing_analyst",
        "analytics:manage",
    ),
    ("POST", "/v1/analytics/segments/{segment}/evaluate"): Case(
        _post(lambda w: f"/v1/analytics/segments/{_segment(w)}/evaluate"),
        [("analytics.run", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    ("GET", "/v1/analytics/segments/{segment}/history"): Case(
        _get(lambda w: f"/v1/analytics/segments/{_segment(w)}/history"),
        [("analytics.read", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    ("GET", "/v1/analytics/{analysis}"): Case(
        _get(lambda w: "/v1/analytics/rfm"),
        [("analytics.run", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    ("GET", "/v1/analytics/charts/{chart}.{fmt}"): Case(
        _get(lambda w: "/v1/analytics/charts/channel-mix.svg"),
        [("analytics.run", "success")],
        "marketing_analyst",
        "analytics:read",
    ),
    # the audit log
    ("GET", "/v1/audit/entries"): Case(
        _get(lambda w: "/v1/audit/entries?limit=5"),
        [("audit.search", "success")],
        "compliance_officer",
        "audit:read",
    ),
    ("GET", "/v1/audit/reports/access"): Case(
        _get(lambda w: "/v1/audit/reports/access"), [("audit.report", "success")], "dpo", "audit:read"
    ),
    ("GET", "/v1/audit/export"): Case(
        _get(lambda w: "/v1/audit/export?format=csv"), [("audit.export", "success")], "dpo", "audit:read"
    ),
    ("GET", "/v1/keys/status"): Case(
        _get(lambda w: "/v1/keys/status"), [("key.status", "success")], "compliance_officer", "audit:read"
    ),
    ("GET", "/v1/audit/status"): Case(
        _get(lambda w: "/v1/audit/status"), [("audit.status", "success")], "compliance_officer", "audit:read"
    ),
    ("GET", "/v1/audit/checkpoints"): Case(
        _get(lambda w: "/v1/audit/checkpoints"), [("audit.status", "success")], "admin", "audit:read"
    ),
}


def _entity_of(w: World, record_id: uuid.UUID) -> str:
    response = w.client.get(
        f"/v1/identity/records/{record_id}/entity",
        headers={"Authorization": f"Bearer {w.tokens['data_steward']}"},
    )
    assert response.status_code == 200
    return str(response.get_json()["entity_id"])


def _routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if path.startswith(WEB_PATH_PREFIXES):
            continue  # web pages are audited through the API calls they make (tests/web)
        for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
            found.add((method, path))
    return found


def _entries(world: World, request_id: str) -> list[AuditEntry]:
    with world.platform.db.read() as session:
        return list(
            session.execute(select(AuditEntry).where(AuditEntry.request_id == request_id)).scalars().all()
        )


def _headers(world: World, case: Case, request_id: str) -> dict[str, str]:
    headers = {"X-Request-ID": request_id}
    if case.token == "customer":
        headers["Authorization"] = f"Bearer {world.customer_token}"
    elif case.token is not None:
        headers["Authorization"] = f"Bearer {world.tokens[case.token]}"
    return headers


def _principal(world: World, case: Case) -> str:
    if case.token == "customer":
        return f"customer:{world.customer_record}"
    assert case.token is not None
    return world.clients[case.token][0]


def _assert_no_personal_data(entries: list[AuditEntry]) -> None:
    for entry in entries:
        text = " ".join(str(getattr(entry, column.key)) for column in AuditEntry.__table__.columns)
        leaked = [value for value in PERSONAL_VALUES if re.search(rf"\b{re.escape(value)}\b", text, re.I)]
        assert not leaked, (entry.action, leaked)


def test_every_route_has_an_audit_expectation(world: World) -> None:
    missing = sorted(_routes(world.app) - set(CASES))
    assert not missing, f"new routes without an audit expectation in CASES: {missing}"
    stale = sorted(set(CASES) - _routes(world.app))
    assert not stale, f"CASES names routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda route: f"{route[0]} {route[1]}")
def test_each_operation_records_exactly_its_entries(world: World, route: tuple[str, str]) -> None:
    case = CASES[route]
    request_id = f"cov-{uuid.uuid4().hex[:12]}"
    response = case.call(world, _headers(world, case, request_id))
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    entries = _entries(world, request_id)
    assert sorted((e.action, e.outcome) for e in entries) == sorted(case.expected), (
        response.status_code,
        [(e.action, e.outcome, json.loads(e.details)) for e in entries],
    )
    if case.token is not None:
        assert {e.actor for e in entries} == {_principal(world, case)}
    _assert_no_personal_data(entries)


PROTECTED = sorted(route for route, case in CASES.items() if case.scope is not None)


@pytest.mark.parametrize("route", PROTECTED, ids=lambda route: f"{route[0]} {route[1]}")
def test_a_protected_operation_without_a_token_records_one_rejection(
    world: World, route: tuple[str, str]
) -> None:
    case = CASES[route]
    request_id = f"anon-{uuid.uuid4().hex[:12]}"
    response = case.call(world, {"X-Request-ID": request_id})
    assert response.status_code == 401
    entries = _entries(world, request_id)
    assert [(e.action, e.outcome, e.actor_kind) for e in entries] == [
        ("auth.token_rejected", "denied", "anonymous")
    ]


@pytest.mark.parametrize("route", PROTECTED, ids=lambda route: f"{route[0]} {route[1]}")
def test_a_protected_operation_without_its_scope_records_one_scope_denial(
    world: World, route: tuple[str, str]
) -> None:
    case = CASES[route]
    lacking = next(role for role in sorted(SERVICE_ROLES) if case.scope not in ROLE_SCOPES[role])
    request_id = f"scope-{uuid.uuid4().hex[:12]}"
    headers = {"X-Request-ID": request_id, "Authorization": f"Bearer {world.tokens[lacking]}"}
    response = case.call(world, headers)
    assert response.status_code == 403
    entries = _entries(world, request_id)
    assert [(e.action, e.outcome, e.actor) for e in entries] == [
        ("auth.scope_denied", "denied", world.clients[lacking][0])
    ]
