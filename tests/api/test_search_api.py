"""``POST /v1/customers/search`` over HTTP: who may search, the body it takes (one kind of key), what
it answers (ids and sources, no values) and the audit entry it leaves (the customers found and the kinds
of key searched — never what was searched for)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import create_app
from cdp.audit.queries import Entry, search
from cdp.config import Settings
from cdp.platform import Platform
from tests.api.tokens import service_token
from tests.profiles.fixtures import Customers, seed_customers

MARIA_EMAIL = "maria.garcia@example.com"


@dataclass
class World:
    platform: Platform
    client: FlaskClient
    customers: Customers
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str, department: str | None = None) -> str:
        key = f"{role}:{department}"
        if key not in self.tokens:
            self.tokens[key] = service_token(
                self.platform, self.client, role, department=department, name=f"search {key}"
            )
        return self.tokens[key]

    def search(self, body: Any, role: str = "support_agent", department: str | None = None) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.token(role, department)}"}
        return self.client.post("/v1/customers/search", json=body, headers=headers)

    def entries(self) -> list[Entry]:
        return search(self.platform.db, action="profile.search", limit=1000).items


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp_path: Path = tmp_path_factory.mktemp("search-api")
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    customers = seed_customers(platform, tmp_path)
    app = create_app(platform=platform)
    try:
        yield World(platform, app.test_client(), customers)
    finally:
        platform.close()


def test_an_agent_finds_a_customer_by_email_and_the_audit_entry_holds_no_value(world: World) -> None:
    response = world.search({"email": "Maria.Garcia+news@Example.com"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["items"] == [
        {
            "id": str(world.customers.maria),
            "matched": ["email"],
            "records": 2,
            "sources": ["crm", "helpdesk"],
            "lines_of_business": ["sales", "support"],
        }
    ]
    assert body["count"] == 1 and body["capped"] is False and body["searched"] == ["email"]
    entry = world.entries()[0]
    assert entry.outcome == "success" and entry.role == "support_agent"
    assert entry.subjects == (str(world.customers.maria),)
    assert entry.details == {"kinds": "email", "count": 1, "capped": False}
    assert "maria" not in json.dumps(entry.to_dict()).lower()


def test_a_search_that_finds_nobody_is_recorded_too(world: World) -> None:
    response = world.search({"first_name": "Nobody", "last_name": "Anywhere"})
    assert response.status_code == 200 and response.get_json()["items"] == []
    entry = world.entries()[0]
    assert entry.subjects == () and entry.details == {
        "kinds": "first_name+last_name",
        "count": 0,
        "capped": False,
    }


def test_a_department_agent_finds_only_customers_their_department_holds(world: World) -> None:
    sales = world.search({"last_name": "Silva"}, "department_agent", "sales")
    support = world.search({"last_name": "Silva"}, "department_agent", "support")
    assert sales.status_code == 200 and sales.get_json()["items"] == []
    assert [item["id"] for item in support.get_json()["items"]] == [str(world.customers.ana)]
    maria = world.search({"phone": "07911 123456", "region": "GB"}, "department_agent", "sales")
    assert maria.get_json()["items"][0]["sources"] == ["crm"]  # not the support desk's record


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": MARIA_EMAIL, "phone": "+44 7911 123456"},
        {"first_name": "Maria"},
        {"email": "maria.garcia-at-example"},
        {"phone": "123 not a number"},
        {"region": "GB"},
        {"email": ["maria.garcia@example.com"]},
    ],
)
def test_a_bad_search_is_refused_without_repeating_the_value(world: World, body: dict[str, Any]) -> None:
    response = world.search(body)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert problem["errors"]
    assert "maria" not in response.get_data(as_text=True).lower()
    assert "not a number" not in response.get_data(as_text=True)


def test_roles_without_profile_access_may_not_search(world: World) -> None:
    for role in ("data_steward", "admin"):
        response = world.search({"email": MARIA_EMAIL}, role)
        assert response.status_code == 403, role
    assert world.client.post("/v1/customers/search", json={"email": MARIA_EMAIL}).status_code == 401


def test_the_search_takes_no_values_in_the_url(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.token('support_agent')}"}
    before = len(world.entries())
    in_url = world.client.get(f"/v1/customers/search?email={MARIA_EMAIL}", headers=headers)
    assert in_url.status_code != 200 and len(world.entries()) == before  # no GET search exists
    spec = world.client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/customers/search"]["post"]
    assert operation["security"] == [{"oauth2": ["profiles:read"]}]
    assert "parameters" not in operation or all(p["in"] != "query" for p in operation["parameters"])
