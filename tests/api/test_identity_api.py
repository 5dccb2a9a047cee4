"""The identity API with real OAuth tokens: lookups, explanations, the review queue, merges and splits,
their errors as problems, the scope policy, and that no response carries a value from a record.

One seeded vault per backend and module (seeding and batch resolution take seconds, the tests
milliseconds); the merge/split test changes entities, so the other tests read whatever is current.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.access.roles import ROLE_SCOPES, SCOPES, PolicyError, check_grantable
from cdp.config import Settings
from cdp.demo.seed import seed
from cdp.identity.service import IdentityError, IdentityService
from cdp.platform import Platform
from tests.conftest import _libpq_dsn, postgres_base_url

REVIEW_KEYS = {"record_a", "record_b", "match_weight", "linked", "refused"}
IDENTITY_PATHS = {
    "/v1/identity/records/{record_id}/entity",
    "/v1/identity/entities/{entity_id}/explanation",
    "/v1/identity/explanations",
    "/v1/identity/review",
    "/v1/identity/merges",
    "/v1/identity/entities/{entity_id}/splits",
}


@dataclass
class Seeded:
    platform: Platform
    http: FlaskClient
    service: IdentityService
    _tokens: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = field(default_factory=dict)

    def client_and_token(self, role: str, *scopes: str) -> tuple[str, str]:
        """(client_id, access token) of a client credentials client, cached per role and scopes."""
        key = (role, scopes)
        if key not in self._tokens:
            with self.platform.db.transaction() as session:
                client, secret = ClientRepository(session).create(
                    name=f"identity test {role}", role=role, scopes=scopes, grant="client_credentials"
                )
            response = self.http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
            )
            assert response.status_code == 200, response.text
            self._tokens[key] = (client.client_id, response.json["access_token"])  # type: ignore[index]
        return self._tokens[key]

    def headers(self, role: str = "data_steward", *scopes: str) -> dict[str, str]:
        _, token = self.client_and_token(role, *(scopes or ("identity:read", "identity:manage")))
        return {"Authorization": f"Bearer {token}"}

    def reader(self) -> dict[str, str]:
        return self.headers("compliance_officer", "identity:read")

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.http.get(path, headers=kwargs.pop("headers", None) or self.reader(), **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> TestResponse:
        return self.http.post(
            path, json=body, headers=kwargs.pop("headers", None) or self.headers(), **kwargs
        )


def _pg_schema(base: str) -> tuple[str, str]:
    schema = f"cdp_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq_dsn(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    return schema, f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    work = tmp_path_factory.mktemp("identity-api")
    schema = None
    if request.param == "postgres":
        base = postgres_base_url()
        schema, url = _pg_schema(base)
        settings = Settings(data_dir=work / "cdp", database_url=url)
    else:
        settings = Settings(data_dir=work / "cdp")
    platform, _ = Platform.initialize(settings)
    try:
        seed(platform.db, platform.vault, work_dir=work, people=60, seed_value=3)
        app = create_app(platform=platform)
        yield Seeded(platform, app.test_client(), IdentityService(platform.db, platform.vault))
    finally:
        platform.close()
        if schema is not None:
            with psycopg.connect(_libpq_dsn(base), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _group(seeded: Seeded, size: int = 2) -> list[uuid.UUID]:
    """Record ids of the current largest entity (at least ``size`` records)."""
    largest = max(seeded.service.partition(), key=len)
    assert len(largest) >= size
    return sorted(largest, key=str)


def _problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert isinstance(body, dict) and body["status"] == status and body["request_id"]
    return body


# --- happy paths ------------------------------------------------------------------------------------


def test_record_entity_lists_every_record_of_the_entity(seeded: Seeded) -> None:
    group = _group(seeded)
    response = seeded.get(f"/v1/identity/records/{group[-1]}/entity")
    assert response.status_code == 200, response.text
    assert response.json == {
        "entity_id": str(seeded.service.entity_of(group[0])),
        "records": [str(r) for r in group],
    }


def test_entity_explanation_lists_members_links_and_decisions(seeded: Seeded) -> None:
    group = _group(seeded)
    entity = seeded.service.entity_of(group[0])
    response = seeded.get(f"/v1/identity/entities/{entity}/explanation")
    assert response.status_code == 200, response.text
    body = response.json
    assert body is not None and body == seeded.service.explain_entity(entity)
    assert body["records"] == [str(r) for r in group] and body["links"]
    assert set(body["sources"]) == set(body["records"]) and all(body["sources"].values())
    for link in body["links"]:
        assert set(link) == {"record_a", "record_b", "match_weight", "refused"}


def test_pair_explanation_is_a_waterfall_that_sums_to_the_weight(seeded: Seeded) -> None:
    a, b = _group(seeded)[:2]
    response = seeded.get("/v1/identity/explanations", query_string={"record_a": str(a), "record_b": str(b)})
    assert response.status_code == 200, response.text
    body = response.json
    assert body is not None and body == seeded.service.explain(a, b).to_dict()
    assert body["terms"][0]["comparison"] == "prior"
    assert sum(t["bits"] for t in body["terms"]) == pytest.approx(body["match_weight"], abs=1e-3)
    assert body["decision"] in ("match", "non-match")
    for term in body["terms"]:
        assert set(term) == {"comparison", "level", "bits", "m", "u", "tf_adjustment_bits"}


def test_review_items_have_exactly_the_pii_free_keys(seeded: Seeded) -> None:
    response = seeded.get("/v1/identity/review")
    assert response.status_code == 200, response.text
    body = response.json
    assert body is not None and set(body) == {"items"}
    assert body["items"], "the seeded data has pairs near the threshold"
    assert len(body["items"]) <= 50
    for item in body["items"]:
        assert set(item) == REVIEW_KEYS
        uuid.UUID(item["record_a"]), uuid.UUID(item["record_b"])
        assert isinstance(item["match_weight"], float) and isinstance(item["linked"], bool)
    one = seeded.get("/v1/identity/review", query_string={"limit": 1}).json
    # nearest the threshold first (pairs at equal distance may come in either order)
    assert one is not None and len(one["items"]) == 1
    threshold = seeded.service.settings.clustering.threshold
    nearest = abs(body["items"][0]["match_weight"] - threshold)
    assert abs(one["items"][0]["match_weight"] - threshold) == pytest.approx(nearest)


def test_merge_puts_two_records_in_one_entity_and_split_separates_them(seeded: Seeded) -> None:
    partition = seeded.service.partition()
    first, second = (sorted(group, key=str)[0] for group in sorted(partition, key=len)[:2])
    assert seeded.service.entity_of(first) != seeded.service.entity_of(second)

    response = seeded.post(
        "/v1/identity/merges",
        {"record_a": str(first), "record_b": str(second), "reason": "same person, confirmed by phone"},
    )
    assert response.status_code == 201, response.text
    merged = response.json["entity_id"]  # type: ignore[index]
    for record in (first, second):
        entity = seeded.get(f"/v1/identity/records/{record}/entity").json
        assert entity is not None and entity["entity_id"] == merged
    client_id, _ = seeded.client_and_token("data_steward", "identity:read", "identity:manage")
    explained = seeded.get(f"/v1/identity/entities/{merged}/explanation").json
    assert explained is not None
    low, high = sorted((str(first), str(second)))
    decision = {"record_a": low, "record_b": high, "kind": "merge", "actor": f"client:{client_id}"}
    assert decision in explained["decisions"]

    response = seeded.post(
        f"/v1/identity/entities/{merged}/splits", {"record_ids": [str(second)], "reason": "twins"}
    )
    assert response.status_code == 201, response.text
    entity_ids = response.json["entity_ids"]  # type: ignore[index]
    assert len(entity_ids) == 2 and merged in entity_ids
    after_first = seeded.get(f"/v1/identity/records/{first}/entity").json
    after_second = seeded.get(f"/v1/identity/records/{second}/entity").json
    assert after_first is not None and after_second is not None
    assert after_first["entity_id"] != after_second["entity_id"]
    assert {after_first["entity_id"], after_second["entity_id"]} == set(entity_ids)
    kinds = {(d.kind, d.actor) for d in seeded.service.decisions()}
    assert kinds == {("split", f"client:{client_id}")}, "the split replaced the merge decision"


def test_read_responses_carry_no_value_from_the_records(seeded: Seeded) -> None:
    group = _group(seeded)
    entity = seeded.service.entity_of(group[0])
    profile = seeded.service.golden(entity).to_dict()
    values = {
        str(value["value"]) for value in profile["attributes"].values() if len(str(value["value"])) >= 5
    }
    assert any("@" in v for v in values), "the largest seeded entity has an email"
    bodies = [
        seeded.get(f"/v1/identity/records/{group[0]}/entity").text,
        seeded.get(f"/v1/identity/entities/{entity}/explanation").text,
        seeded.get(
            "/v1/identity/explanations", query_string={"record_a": str(group[0]), "record_b": str(group[1])}
        ).text,
        seeded.get("/v1/identity/review", query_string={"limit": 500}).text,
    ]
    for body in bodies:
        assert "@" not in body
        for value in values:
            assert value not in body and json.dumps(value)[1:-1] not in body


# --- authorization ----------------------------------------------------------------------------------


def _every_endpoint(seeded: Seeded) -> list[tuple[str, str, Any]]:
    a, b = _group(seeded)[:2]
    entity = seeded.service.entity_of(a)
    return [
        ("GET", f"/v1/identity/records/{a}/entity", None),
        ("GET", f"/v1/identity/entities/{entity}/explanation", None),
        ("GET", f"/v1/identity/explanations?record_a={a}&record_b={b}", None),
        ("GET", "/v1/identity/review", None),
        ("POST", "/v1/identity/merges", {"record_a": str(a), "record_b": str(b), "reason": "x"}),
        ("POST", f"/v1/identity/entities/{entity}/splits", {"record_ids": [str(a)], "reason": "x"}),
    ]


def test_every_endpoint_needs_a_token(seeded: Seeded) -> None:
    for method, path, body in _every_endpoint(seeded):
        response = seeded.http.open(path, method=method, json=body)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_without_the_scope_is_403(seeded: Seeded) -> None:
    support = seeded.headers("support_agent", "sources:read", "profiles:read")
    for method, path, body in _every_endpoint(seeded):
        response = seeded.http.open(path, method=method, json=body, headers=support)
        assert response.status_code == 403, (method, path)
        assert response.json is not None and response.json["error"] == "insufficient_scope"
    # identity:read looks but does not touch
    for method, path, body in _every_endpoint(seeded)[4:]:
        response = seeded.http.open(path, method=method, json=body, headers=seeded.reader())
        assert response.status_code == 403, (method, path)
        assert 'scope="identity:manage"' in response.headers["WWW-Authenticate"]


def test_role_policy_for_the_identity_scopes() -> None:
    assert {"identity:read", "identity:manage"} <= set(SCOPES)
    assert ROLE_SCOPES["data_steward"] == {"identity:read", "identity:manage", "sources:read"}
    for role in ("compliance_officer", "dpo", "admin"):
        assert check_grantable(role, ["identity:read"], None) == {"identity:read"}
        with pytest.raises(PolicyError):
            check_grantable(role, ["identity:manage"], None)
    for role in ("department_agent", "support_agent", "marketing_analyst", "customer"):
        with pytest.raises(PolicyError):
            check_grantable(role, ["identity:read"], "sales")
    with pytest.raises(PolicyError):
        check_grantable("data_steward", ["profiles:read"], None)  # stewards never read profiles
    with pytest.raises(PolicyError):
        check_grantable("data_steward", ["identity:write"], None)  # unknown scopes are refused


# --- errors -----------------------------------------------------------------------------------------


def test_unknown_ids_are_404_problems(seeded: Seeded) -> None:
    nobody = uuid.uuid4()
    known = _group(seeded)[0]
    reads = [
        f"/v1/identity/records/{nobody}/entity",
        f"/v1/identity/entities/{nobody}/explanation",
        f"/v1/identity/explanations?record_a={known}&record_b={nobody}",
    ]
    for path in reads:
        body = _problem(seeded.get(path), 404)
        assert str(nobody) in body["detail"]
    merge = {"record_a": str(nobody), "record_b": str(known), "reason": "x"}
    _problem(seeded.post("/v1/identity/merges", merge), 404)
    split = {"record_ids": [str(known)], "reason": "x"}
    _problem(seeded.post(f"/v1/identity/entities/{nobody}/splits", split), 404)
    # the record id of a known record is not an entity id
    _problem(seeded.get(f"/v1/identity/entities/{known}/explanation"), 404)


def test_malformed_input_is_a_422_problem_with_field_errors(seeded: Seeded) -> None:
    a, b = _group(seeded)[:2]
    entity = seeded.service.entity_of(a)
    everyone = [str(r) for r in seeded.service.members(entity)]
    cases: list[tuple[TestResponse, str, str]] = [
        (seeded.get("/v1/identity/records/not-a-uuid/entity"), "path", "record_id"),
        (seeded.get("/v1/identity/entities/1234/explanation"), "path", "entity_id"),
        (seeded.get(f"/v1/identity/explanations?record_a=nope&record_b={b}"), "query", "record_a"),
        (seeded.get(f"/v1/identity/explanations?record_a={a}"), "query", "record_b"),
        (seeded.get(f"/v1/identity/explanations?record_a={a}&record_b={a}"), "query", "record_b"),
        (seeded.get("/v1/identity/review?limit=0"), "query", "limit"),
        (seeded.get("/v1/identity/review?limit=501"), "query", "limit"),
        (seeded.post("/v1/identity/merges", {"record_a": str(a), "record_b": str(b)}), "json", "reason"),
        (
            seeded.post("/v1/identity/merges", {"record_a": str(a), "record_b": str(b), "reason": "x" * 301}),
            "json",
            "reason",
        ),
        (
            seeded.post("/v1/identity/merges", {"record_a": "bad", "record_b": str(b), "reason": "x"}),
            "json",
            "record_a",
        ),
        (
            seeded.post("/v1/identity/merges", {"record_a": str(a), "record_b": str(a), "reason": "x"}),
            "json",
            "record_b",
        ),
        (seeded.post(f"/v1/identity/entities/{entity}/splits", {"record_ids": [str(a)]}), "json", "reason"),
        (
            seeded.post(f"/v1/identity/entities/{entity}/splits", {"record_ids": [], "reason": "x"}),
            "json",
            "record_ids",
        ),
        (
            seeded.post(f"/v1/identity/entities/{entity}/splits", {"record_ids": ["bad"], "reason": "x"}),
            "json",
            "record_ids",
        ),
        (
            seeded.post(
                f"/v1/identity/entities/{entity}/splits",
                {"record_ids": [str(uuid.uuid4())] * 1001, "reason": "x"},
            ),
            "json",
            "record_ids",
        ),
        (  # all of the entity's records, or records of another entity
            seeded.post(f"/v1/identity/entities/{entity}/splits", {"record_ids": everyone, "reason": "x"}),
            "json",
            "record_ids",
        ),
        (
            seeded.post(
                f"/v1/identity/entities/{entity}/splits", {"record_ids": [str(uuid.uuid4())], "reason": "x"}
            ),
            "json",
            "record_ids",
        ),
    ]
    for response, location, name in cases:
        body = _problem(response, 422)
        assert body["type"] == "https://cdp.example/problems/validation-error"
        assert name in body["errors"][location], body
    assert seeded.service.members(entity) == [uuid.UUID(r) for r in everyone], "nothing was changed"


def test_a_refused_identity_operation_is_a_409_problem_with_the_services_message(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise IdentityError("no match model yet: run `cdp resolve` first")

    monkeypatch.setattr(IdentityService, "explain", refuse)
    a, b = _group(seeded)[:2]
    body = _problem(seeded.get(f"/v1/identity/explanations?record_a={a}&record_b={b}"), 409)
    assert body["detail"] == "no match model yet: run `cdp resolve` first"


# --- OpenAPI ----------------------------------------------------------------------------------------


def test_openapi_lists_the_identity_paths_and_scopes(seeded: Seeded) -> None:
    spec = seeded.http.get("/openapi.json").json
    assert spec is not None
    assert spec["paths"].keys() >= IDENTITY_PATHS
    scopes = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    assert {"identity:read", "identity:manage"} <= scopes.keys()
    merges = spec["paths"]["/v1/identity/merges"]["post"]
    assert merges["security"] == [{"oauth2": ["identity:manage"]}]
    assert {"201", "404", "409", "422"} <= merges["responses"].keys()
    review = spec["paths"]["/v1/identity/review"]["get"]
    assert review["security"] == [{"oauth2": ["identity:read"]}]
    split_params = spec["paths"]["/v1/identity/entities/{entity_id}/splits"]["parameters"]
    assert split_params[0]["schema"] == {"type": "string", "format": "uuid"}
    assert not any("golden" in path or "profile" in path for path in spec["paths"]), "no PII endpoint here"
