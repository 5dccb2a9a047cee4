"""The authorization matrix, generated from the policy: every role by every protected endpoint, and every
role by purpose by profile field, asserting exactly the outcome the policy allows. Unknown roles and scopes
are denied.

Endpoints come from the OpenAPI document (each operation declares the scope it needs), so a new endpoint
joins the matrix without anyone remembering to add it; a route missing from the document fails the test.
Tokens are real: issued by the token endpoint (client credentials) or signed with the server's own key.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.access.gate import AccessGate, Actor
from cdp.access.masking import mask
from cdp.access.policy import PROFILE_FIELDS, TIMELINE_FIELDS, FieldPolicy, Mode
from cdp.access.roles import ROLE_SCOPES, SERVICE_ROLES
from cdp.config import Settings
from cdp.consent.catalog import ConsentCatalog
from cdp.consent.ledger import ConsentLedger, entity_records
from cdp.platform import Platform
from cdp.profiles.service import ProfileService
from cdp.vault.signing import ALG, SigningKeys
from tests.profiles.fixtures import Customers, seed_customers
from web.apps import WEB_PATH_PREFIXES

POLICY = FieldPolicy.default()
CATALOG = ConsentCatalog.default()
JOHN_GRANTS = {"marketing_email"}
DEPARTMENT = {"department_agent": "sales"}
PUBLIC = {"/", "/healthz", "/readyz", "/openapi.json", "/v1/dsr/downloads/{token}"}
"""Routes without an OAuth scope; the export download is authorized by its single-use token instead."""


@dataclass
class World:
    app: Flask
    client: FlaskClient
    platform: Platform
    customers: Customers
    tokens: dict[str, str]
    client_ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One seeded platform for the whole matrix (read-only requests; the few POSTs fail validation)."""
    tmp_path: Path = tmp_path_factory.mktemp("matrix")
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    customers = seed_customers(platform, tmp_path)
    with platform.db.transaction() as session:  # John opted in to marketing email, nothing else
        john_record = entity_records(session, customers.john)[0]
        ConsentLedger(platform.db).record(
            session, john_record, "marketing_email", "email", "grant", "web_form"
        )
    app = create_app(platform=platform)
    client = app.test_client()
    tokens, client_ids = {}, {}
    for role in sorted(SERVICE_ROLES):
        with platform.db.transaction() as session:
            registered, secret = ClientRepository(session).create(
                name=f"matrix {role}",
                role=role,
                department=DEPARTMENT.get(role),
                scopes=ROLE_SCOPES[role],
                grant="client_credentials",
            )
        assert secret is not None
        basic = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
        response = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200, response.get_json()
        tokens[role] = response.get_json()["access_token"]
        client_ids[role] = registered.client_id
    try:
        yield World(app, client, platform, customers, tokens, client_ids)
    finally:
        platform.close()


def operations(app: Flask) -> list[tuple[str, str, str]]:
    """(method, path template, required scope) of every protected operation in the OpenAPI document."""
    spec = app.test_client().get("/openapi.json").get_json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            security = operation.get("security")
            if path in PUBLIC:
                assert not security, f"{path} is public but declares security"
                continue
            assert security and len(security[0]["oauth2"]) == 1, f"{method} {path} declares no single scope"
            found.append((method.upper(), path, security[0]["oauth2"][0]))
    return found


def test_every_api_route_is_documented_with_its_scope(world: World) -> None:
    documented = {(m, p) for m, p, _ in operations(world.app)}
    for rule in world.app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if path in PUBLIC or path.startswith(("/oauth/", "/.well-known/", *WEB_PATH_PREFIXES)):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
            assert (method, path) in documented, f"{method} {path} is missing from the matrix"


def _url(world: World, path: str, purpose: str = "support") -> str:
    c = world.customers
    filled = (
        path.replace("{customer_id}", str(c.john))
        .replace("{entity_id}", str(c.maria))
        .replace("{record_id}", str(c.maria_crm_record))
        .replace("{source}", "crm")
    )
    if path.startswith(("/v1/customers", "/v1/me")):
        filled += f"?purpose={purpose}"
    if path == "/v1/identity/explanations":
        filled += f"?record_a={c.maria_crm_record}&record_b={c.maria_helpdesk_record}"
    return filled


def _call(world: World, method: str, url: str, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if method == "GET":
        return world.client.get(url, headers=headers)
    return world.client.open(url, method=method, json={}, headers=headers)


@pytest.mark.parametrize("role", sorted(SERVICE_ROLES))
def test_each_role_reaches_exactly_the_endpoints_its_scopes_allow(world: World, role: str) -> None:
    for method, path, scope in operations(world.app):
        if path.startswith("/v1/customers"):
            continue  # purpose-dependent: covered field by field below
        response = _call(world, method, _url(world, path, "self_service"), world.tokens[role])
        if scope in ROLE_SCOPES[role]:
            assert response.status_code not in (401, 403), (role, method, path, response.get_json())
        else:
            assert response.status_code == 403, (role, method, path)
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def consent_allows(purpose: str, field: str) -> bool:
    """What John's consents allow for ``purpose``, from the catalog alone: he granted marketing_email;
    purposes on legitimate interest hold (he never objected); ungoverned read purposes are not limited."""
    governing = CATALOG.governing(purpose)
    if not governing:
        return True
    holding = [c for c in governing if not c.needs_grant or c.name in JOHN_GRANTS]
    return any(field in c.attributes for c in holding)


def _truth(world: World) -> dict[str, Any]:
    """John's profile with nothing hidden (the DPO answering an access request), to compare against."""
    service = ProfileService(world.platform.db, world.platform.vault, AccessGate(POLICY))
    view = service.read(Actor("truth", "dpo"), world.customers.john, "dsr").to_dict()
    assert not view["redactions"]
    return {name: value["value"] for name, value in view["attributes"].items()}


@pytest.mark.parametrize("role", sorted(r for r in SERVICE_ROLES if "profiles:read" in ROLE_SCOPES[r]))
@pytest.mark.parametrize("purpose", sorted(POLICY.purposes))
def test_profile_fields_are_exactly_what_the_policy_allows(world: World, role: str, purpose: str) -> None:
    truth = _truth(world)
    response = world.client.get(
        _url(world, "/v1/customers/{customer_id}", purpose),
        headers={"Authorization": f"Bearer {world.tokens[role]}"},
    )
    if purpose not in POLICY.roles[role].purposes:
        assert response.status_code == 403, response.get_json()
        assert response.mimetype == "application/problem+json"
        return
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    attributes = body["attributes"]
    redactions = {r["field"]: r for r in body["redactions"]}
    for field in PROFILE_FIELDS:
        if field in TIMELINE_FIELDS:
            continue
        decision = POLICY.decide(role, purpose, field)
        if decision.disclosed and not consent_allows(purpose, field):
            assert field not in attributes, (role, purpose, field)
            assert redactions[field]["mode"] == "omitted" and redactions[field]["reason"] == "consent"
            continue
        if decision.mode is Mode.CLEAR:
            assert field not in redactions
            if field in truth:
                assert attributes[field]["value"] == truth[field], (role, purpose, field)
                assert attributes[field]["mode"] == "clear"
            else:
                assert field not in attributes
        elif decision.mode is Mode.MASKED:
            assert redactions[field]["mode"] == "masked" and redactions[field]["reason"] == "role_policy"
            if field in truth:
                expected = mask(field, truth[field])
                assert attributes[field] == {**attributes[field], "value": expected, "mode": "masked"}
                assert attributes[field]["value"] != truth[field]
        else:
            assert field not in attributes, (role, purpose, field)
            assert redactions[field]["mode"] == "omitted"
            assert redactions[field]["reason"] == decision.reason.value  # type: ignore[union-attr]
            assert redactions[field]["rule"] == decision.rule


@pytest.mark.parametrize("role", sorted(r for r in SERVICE_ROLES if "profiles:read" in ROLE_SCOPES[r]))
@pytest.mark.parametrize("purpose", sorted(POLICY.purposes))
def test_timeline_fields_are_exactly_what_the_policy_allows(world: World, role: str, purpose: str) -> None:
    response = world.client.get(
        _url(world, "/v1/customers/{customer_id}/timeline", purpose),
        headers={"Authorization": f"Bearer {world.tokens[role]}"},
    )
    history = POLICY.decide(role, purpose, "interactions")
    allowed = history.disclosed and consent_allows(purpose, "interactions")
    if purpose not in POLICY.roles[role].purposes or not allowed:
        assert response.status_code == 403, response.get_json()
        return
    assert response.status_code == 200, response.get_json()
    items = response.get_json()["items"]
    assert items and all(item["department"] for item in items)
    content = POLICY.decide(role, purpose, "interaction_content")
    shown = content.disclosed and consent_allows(purpose, "interaction_content")
    assert all(("content" in item) == shown for item in items), (role, purpose)


def _signed(world: World, *, role: str, scope: str, client_role: str = "support_agent") -> str:
    """A token with the server's own signing key, as if a client had obtained odd claims."""
    settings = world.platform.settings
    with world.platform.db.transaction() as session:
        material = SigningKeys(session, world.platform.vault).active()
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "sub": world.client_ids[client_role],
        "aud": settings.api_audience,
        "client_id": world.client_ids[client_role],
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
        "scope": scope,
        "roles": [role] if role else [],
    }
    header = {"alg": ALG, "typ": "at+jwt", "kid": material.kid}
    return jwt.encode(header, claims, material.private_key, algorithms=[ALG])


@pytest.mark.parametrize("role", ["wizard", "", "admin"])
def test_unknown_or_profile_less_roles_are_denied_even_with_the_scope(world: World, role: str) -> None:
    token = _signed(world, role=role, scope="profiles:read")
    response = world.client.get(
        _url(world, "/v1/customers/{customer_id}", "support"), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    assert "attributes" not in response.get_json()


def test_a_token_with_two_roles_is_denied_rather_than_guessed(world: World) -> None:
    settings = world.platform.settings
    with world.platform.db.transaction() as session:
        material = SigningKeys(session, world.platform.vault).active()
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "sub": world.client_ids["support_agent"],
        "aud": settings.api_audience,
        "client_id": world.client_ids["support_agent"],
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
        "scope": "profiles:read",
        "roles": ["support_agent", "dpo"],
    }
    token = jwt.encode({"alg": ALG, "typ": "at+jwt", "kid": material.kid}, claims, material.private_key)
    response = world.client.get(
        _url(world, "/v1/customers/{customer_id}", "dsr"), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize("scope", ["profiles:everything", "", "PROFILES:READ"])
def test_unknown_scopes_open_nothing(world: World, scope: str) -> None:
    token = _signed(world, role="support_agent", scope=scope)
    for method, path, _ in operations(world.app):
        response = _call(world, method, _url(world, path), token)
        assert response.status_code == 403, (scope, method, path)


def test_customer_id_must_be_a_uuid_and_purpose_is_required(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['support_agent']}"}
    bad_id = world.client.get("/v1/customers/42?purpose=support", headers=headers)
    assert bad_id.status_code == 422 and bad_id.get_json()["errors"]["path"]["customer_id"]
    no_purpose = world.client.get(f"/v1/customers/{uuid.uuid4()}", headers=headers)
    assert no_purpose.status_code == 422 and "purpose" in no_purpose.get_json()["errors"]["query"]
    unknown = world.client.get(f"/v1/customers/{world.customers.john}?purpose=curiosity", headers=headers)
    assert unknown.status_code == 400 and "unknown purpose" in unknown.get_json()["detail"]
    missing = world.client.get(f"/v1/customers/{uuid.uuid4()}?purpose=support", headers=headers)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "role", sorted(r for r in SERVICE_ROLES if "marketing" in getattr(POLICY.roles.get(r), "purposes", ()))
)
def test_without_consent_a_marketing_read_discloses_nothing_consent_governs(world: World, role: str) -> None:
    response = world.client.get(
        f"/v1/customers/{world.customers.ana}?purpose=marketing",
        headers={"Authorization": f"Bearer {world.tokens[role]}"},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    redactions = {r["field"]: r for r in body["redactions"]}
    governed = {field for c in CATALOG.governing("marketing") for field in c.attributes}
    for field in PROFILE_FIELDS:
        if POLICY.decide(role, "marketing", field).disclosed and field in governed:
            assert field not in body["attributes"], field
            assert redactions[field]["reason"] == "consent"
            assert "no current consent for marketing_email, marketing_phone" in redactions[field]["rule"]
