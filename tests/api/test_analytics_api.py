"""The analytics API on SQLite and PostgreSQL: segments defined, evaluated and tracked over time; bad
definitions refused with every path named; the analyses and charts; scopes; small groups suppressed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from api import create_app
from cdp.consent.ledger import ConsentLedger
from cdp.db.models import AnalyticsSegment, AuditEntry
from cdp.platform import Platform
from tests.analytics.world import World, seed_world
from tests.api.test_dsr_api import assert_problem, staff_client

EXAMPLE = {
    "name": "billing-complainers",
    "description": "Billing customers with a complaint in the last 90 days who consented to marketing email",
    "schedule": "0 4 * * *",
    "match": {
        "all": [
            {"department": "billing"},
            {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
            {"consent": "marketing_email"},
        ]
    },
}


@dataclass
class Api:
    client: FlaskClient
    platform: Platform
    world: World
    tokens: dict[str, str]

    def call(self, method: str, path: str, who: str, body: Any = None) -> TestResponse:
        return self.client.open(
            path, method=method, json=body, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )

    def entries(self, action: str) -> list[AuditEntry]:
        with self.platform.db.read() as session:
            return list(session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


@pytest.fixture
def api(platform: Platform) -> Api:
    world = seed_world(platform, regulars=120, planted=40)
    app = create_app(platform=platform)
    client = app.test_client()
    tokens = {
        "analyst": staff_client(platform, client, "marketing_analyst")[1],
        "dpo": staff_client(platform, client, "dpo")[1],
    }
    return Api(client, platform, world, tokens)


def grant_marketing_email(api: Api, accounts: list[str]) -> None:
    ledger = ConsentLedger(api.platform.db)
    with api.platform.db.transaction() as session:
        for account in accounts:
            ledger.record(
                session, api.world.record_of[account], "marketing_email", "email", "grant", "web_form"
            )


def test_the_issue_example_segment_is_defined_evaluated_and_tracked(api: Api) -> None:
    created = api.call("POST", "/v1/analytics/segments", "analyst", EXAMPLE)
    assert created.status_code == 201, created.get_json()
    segment = created.get_json()
    assert (segment["name"], segment["version"], segment["schedule"]) == (
        "billing-complainers",
        1,
        "0 4 * * *",
    )

    complainers = api.world.population.billing_complainers
    assert len(complainers) >= 5
    grant_marketing_email(api, complainers + api.world.population.regulars[:3])
    evaluated = api.call("POST", "/v1/analytics/segments/billing-complainers/evaluate", "analyst")
    assert evaluated.status_code == 200, evaluated.get_json()
    report = evaluated.get_json()
    assert report["size"] == len(complainers)
    assert report["notes"] == []
    assert report["segment"]["id"] == segment["id"]
    assert {row["department"]: row["customers"] for row in report["by_department"]}["billing"] == len(
        complainers
    )

    history = api.call("GET", f"/v1/analytics/segments/{segment['id']}/history", "analyst").get_json()
    assert [(p["size"], p["trigger"]) for p in history["history"]] == [(len(complainers), "on_demand")]

    listed = api.call("GET", "/v1/analytics/segments", "analyst").get_json()
    assert [s["name"] for s in listed] == ["billing-complainers"]
    runs = api.entries("analytics.run")
    assert [(e.purpose, json.loads(e.details)["analysis"]) for e in runs] == [("analytics", "segment")]


def test_a_bad_definition_is_a_422_naming_every_mistake_and_saves_nothing(api: Api) -> None:
    bad = {
        "name": "Bad Name!",
        "match": {
            "all": [
                {"department": "billing"},
                {"interactions": {"kind": ["complaint"], "within_days": -3}},
                {"consent": "telepathy"},
            ]
        },
    }
    body = assert_problem(api.call("POST", "/v1/analytics/segments", "analyst", bad), 422)
    errors = body["errors"]["json"]
    assert {"name", "match.all[1].interactions.within_days", "match.all[2].consent"} <= set(errors)
    assert_problem(
        api.call("POST", "/v1/analytics/segments", "analyst", {"name": "x-y", "match": {}, "extra": 1}), 422
    )
    assert_problem(api.call("POST", "/v1/analytics/segments/preview", "analyst", [1, 2]), 422)
    with api.platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(AnalyticsSegment)).scalar_one() == 0


def test_segment_changes_conflict_and_missing_segments_are_404(api: Api) -> None:
    created = api.call("POST", "/v1/analytics/segments", "analyst", EXAMPLE).get_json()
    assert_problem(api.call("POST", "/v1/analytics/segments", "analyst", EXAMPLE), 409)
    changed = api.call(
        "PUT",
        "/v1/analytics/segments/billing-complainers?version=1",
        "analyst",
        {**EXAMPLE, "schedule": None},
    )
    assert changed.status_code == 200 and changed.get_json()["version"] == 2
    assert_problem(
        api.call("PUT", f"/v1/analytics/segments/{created['id']}?version=1", "analyst", EXAMPLE), 409
    )
    assert api.call("DELETE", f"/v1/analytics/segments/{created['id']}", "analyst").status_code == 204
    assert_problem(api.call("GET", f"/v1/analytics/segments/{created['id']}", "analyst"), 404)
    assert_problem(api.call("POST", "/v1/analytics/segments/nope/evaluate", "analyst"), 404)
    assert_problem(api.call("GET", "/v1/analytics/rfm?segment=nope", "analyst"), 404)


@pytest.mark.parametrize("analysis", ["rfm", "clv", "churn", "channels", "profitability", "purchases"])
def test_each_analysis_answers_with_aggregates_only(api: Api, analysis: str) -> None:
    response = api.call("GET", f"/v1/analytics/{analysis}", "analyst")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["analysis"] == analysis and body["purpose"] == "analytics"
    assert body["customers"] == len(api.world.customer_of)
    assert body["privacy"]["min_group_size"] == 5
    text = json.dumps(body)
    for customer in api.world.customer_of.values():
        assert str(customer) not in text
    for record in api.world.population.shop_records[:20]:
        assert record["Email"] not in text and record["Last"] not in text


def test_bad_query_parameters_and_unknown_analyses_are_refused(api: Api) -> None:
    assert_problem(api.call("GET", "/v1/analytics/rfm?purpose=marketing", "analyst"), 422)
    assert_problem(api.call("GET", "/v1/analytics/rfm?as_of=yesterday", "analyst"), 422)
    assert_problem(api.call("GET", "/v1/analytics/rfm?as_of=2999-01-01T00:00:00Z", "analyst"), 409)
    looked_back = api.call("GET", "/v1/analytics/purchases?as_of=2020-01-01T00:00:00Z", "analyst")
    assert looked_back.status_code == 200 and looked_back.get_json()["result"]["purchases"] == 0
    assert_problem(api.call("GET", "/v1/analytics/churn?group_by=star_sign", "analyst"), 422)
    assert_problem(api.call("GET", "/v1/analytics/horoscope", "analyst"), 404)
    assert_problem(api.call("GET", "/v1/analytics/charts/pie.svg", "analyst"), 404)
    assert_problem(api.call("GET", "/v1/analytics/charts/channel-mix.gif", "analyst"), 404)
    assert_problem(api.call("GET", "/v1/analytics/charts/segment-sizes.svg", "analyst"), 409)


def test_charts_render_as_svg_and_png(api: Api) -> None:
    api.call("POST", "/v1/analytics/segments", "analyst", {**EXAMPLE, "match": {"department": "billing"}})
    api.call("POST", "/v1/analytics/segments/billing-complainers/evaluate", "analyst")
    for path in (
        "/v1/analytics/charts/channel-mix.svg",
        "/v1/analytics/charts/clv-distribution.svg",
        "/v1/analytics/charts/churn-by-segment.svg?group_by=department",
        "/v1/analytics/charts/segment-sizes.svg?segment=billing-complainers",
    ):
        response = api.call("GET", path, "analyst")
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert response.mimetype == "image/svg+xml"
        assert response.headers["Cache-Control"] == "no-store"
        assert ET.fromstring(response.get_data()).tag.endswith("svg")  # noqa: S314 (our own output)
    png = api.call("GET", "/v1/analytics/charts/channel-mix.png", "analyst")
    assert png.mimetype == "image/png" and png.get_data().startswith(b"\x89PNG")


def test_only_analysts_reach_analytics_and_only_with_the_right_scope(api: Api) -> None:
    for response in (
        api.call("GET", "/v1/analytics/rfm", "dpo"),
        api.call("POST", "/v1/analytics/segments", "dpo", EXAMPLE),
    ):
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert api.client.get("/v1/analytics/rfm").status_code == 401
    with api.platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(AnalyticsSegment)).scalar_one() == 0
