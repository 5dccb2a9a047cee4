"""The analytics service over the real vault and consent ledger, on SQLite and PostgreSQL: a planted
high-churn cohort is found, consent decides who is counted, small groups are suppressed, segments keep
their sizes over time and run on schedule, and every run is audited with its purpose."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from cdp.analytics.errors import AnalyticsError, SegmentConflict, SegmentNotFound
from cdp.analytics.segments import SegmentDefinitionError
from cdp.analytics.service import AnalyticsService
from cdp.audit.queries import search
from cdp.config import Settings
from cdp.consent.ledger import ConsentLedger
from cdp.db.types import utcnow
from cdp.platform import Platform
from tests.analytics.world import World, seed_world
from tests.conftest import postgres_base_url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One seeded world per backend for the tests that only read."""
    data_dir = tmp_path_factory.mktemp("analytics") / "cdp"
    if request.param == "postgres":
        schema_url = _module_schema(request, postgres_base_url())
        settings = Settings(data_dir=data_dir, database_url=schema_url)
    else:
        settings = Settings(data_dir=data_dir)
    platform, _ = Platform.initialize(settings)
    try:
        yield seed_world(platform)
    finally:
        platform.close()


def _module_schema(request: pytest.FixtureRequest, base: str) -> str:
    from urllib.parse import quote

    import psycopg

    from tests.conftest import _libpq_dsn

    schema = f"cdp_test_{uuid.uuid4().hex[:16]}"
    dsn = _libpq_dsn(base)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    request.addfinalizer(drop)
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def world(platform: Platform) -> World:
    """A world of its own, for tests that change consent or segments."""
    return seed_world(platform)


def service_of(world: World) -> AnalyticsService:
    return AnalyticsService.for_platform(world.platform)


def consent(world: World, records: list[str], purpose: str, action: str) -> None:
    ledger = ConsentLedger(world.platform.db)
    channel = "email" if purpose == "marketing_email" else "any"
    with world.platform.db.transaction() as session:
        for natural in records:
            ledger.record(session, world.record_of[natural], purpose, channel, action, "privacy_center")


# -- models on real data -------------------------------------------------------------------------------


def test_the_planted_high_churn_cohort_is_found(shared: World) -> None:
    service = service_of(shared)
    dataset, scores = service.load("analytics")
    risk = scores.churn().risk
    index = {customer: i for i, customer in enumerate(dataset.customers.ids)}
    planted = np.array([index[c] for c in shared.customers(shared.population.planted)])
    active = set(shared.population.regulars) - set(shared.population.lapsed)
    others = np.array([index[c] for c in shared.customers(sorted(active))])
    assert risk[planted].mean() > 0.7
    assert risk[planted].mean() > risk[others].mean() + 0.3
    # Among the shop's customers who were buying until recently, the planted cohort ranks highest.
    buyers = np.concatenate([planted, others])
    top = buyers[np.argsort(-risk[buyers])[: len(planted)]]
    assert len(set(top.tolist()) & set(planted.tolist())) >= 0.8 * len(planted)

    report = service.analyse("churn")
    result = report["result"]
    assert report["purpose"] == "analytics"
    assert result["validation"]["auc"] is None or result["validation"]["auc"] > 0.7
    assert {row["segment"] for row in result["by_group"]["groups"]} >= {"champions"}
    json.dumps(report, allow_nan=False)


def test_value_and_channel_figures_follow_the_data(shared: World) -> None:
    service = service_of(shared)
    profit = service.analyse("profitability", group_by="department")["result"]
    groups = {g["segment"] if "segment" in g else g.get("group"): g for g in profit["by_group"]["groups"]}
    assert set(groups) == {"sales", "billing"}
    billing_revenue = sum(
        float(e["Amount"]) * 1.17 for e in shared.population.billing_events if e["Kind"] == "invoice"
    )
    assert groups["billing"]["revenue"] == pytest.approx(billing_revenue, rel=1e-6)

    dataset, scores = service.load("analytics")
    index = {customer: i for i, customer in enumerate(dataset.customers.ids)}
    preferred = scores.preferred_channels()
    phone_people = [index[c] for c in shared.customers(shared.population.phone_people)]
    assert preferred["phone"][phone_people].mean() > 0.9

    clv = scores.clv()
    buyers = [index[c] for c in shared.customers(shared.population.regulars)]
    browsers = [index[c] for c in shared.customers(shared.population.browsers)]
    assert clv.value[browsers].max() == 0
    assert clv.value[buyers].mean() > 0
    planted = [index[c] for c in shared.customers(shared.population.planted)]
    assert clv.p_alive[planted].mean() < np.nanmean(clv.p_alive[buyers])


def test_segment_reports_break_down_and_value_the_members(shared: World) -> None:
    report = service_of(shared).preview(
        {
            "name": "billing-complainers",
            "match": {
                "all": [
                    {"department": "billing"},
                    {"interactions": {"kind": ["complaint"], "within_days": 90}},
                ]
            },
        }
    )
    assert report["size"] == len(shared.population.billing_complainers)
    assert report["population"] == len(shared.customer_of)
    by_department = {row["department"]: row for row in report["by_department"]}
    assert by_department["billing"]["customers"] == report["size"]
    assert by_department["sales"]["customers"] == 0
    assert report["value"]["revenue"] > 0


# -- consent -----------------------------------------------------------------------------------------


def _invoiced(world: World, account: str) -> float:
    return sum(
        float(e["Amount"])
        for e in world.population.billing_events
        if e["Account"] == account and e["Kind"] == "invoice"
    )


def test_an_objection_takes_the_customer_out_of_every_result_at_once(world: World) -> None:
    service = service_of(world)
    everyone = len(world.customer_of)
    before = service.analyse("profitability")
    assert before["customers"] == everyone
    big_spender = max(world.population.billing, key=lambda a: _invoiced(world, a))
    consent(world, [big_spender], "analytics", "withdraw")

    after = service.analyse("profitability")
    assert after["customers"] == everyone - 1
    assert after["excluded_without_consent"] == 1
    spent = _invoiced(world, big_spender) * 1.17
    assert before["result"]["revenue"] - after["result"]["revenue"] == pytest.approx(spent, abs=0.02)
    dataset, _ = service.load("analytics")
    assert world.customer_of[big_spender] not in dataset.customers.ids

    consent(world, [big_spender], "analytics", "grant")
    assert service.analyse("rfm")["customers"] == everyone


def test_profiling_covers_only_customers_who_consented_to_it(world: World) -> None:
    service = service_of(world)
    chosen = world.population.regulars[:7]
    consent(world, chosen, "profiling", "grant")
    report = service.analyse("rfm", purpose="profiling")
    assert report["customers"] == 7
    assert report["excluded_without_consent"] == len(world.customer_of) - 7
    dataset, _ = service.load("profiling")
    assert set(dataset.customers.ids) == world.customers(chosen)


# -- small-cohort suppression ------------------------------------------------------------------------


def test_groups_smaller_than_k_and_their_complements_are_suppressed(world: World) -> None:
    service = service_of(world)
    consent(world, world.population.regulars[:3], "marketing_email", "grant")
    small = service.preview({"name": "emailable", "match": {"consent": "marketing_email"}})
    assert small["size"] is None and small["suppressed"] is True
    assert small["share"] is None and small["by_department"] == [] and small["value"] is None
    rest = service.preview({"name": "rest", "match": {"not": {"consent": "marketing_email"}}})
    assert rest["size"] is None and rest["suppressed"] is True

    consent(world, world.population.regulars[3:5], "marketing_email", "grant")
    shown = service.preview({"name": "emailable", "match": {"consent": "marketing_email"}})
    assert shown["size"] == 5 and shown["suppressed"] is False
    cells = {row["department"]: row for row in shown["by_department"]}
    assert cells["sales"]["customers"] == 5
    assert cells["billing"]["customers"] == 0

    report = service.analyse("rfm")
    for row in report["result"]["segments"]:
        assert row["suppressed"] or row["customers"] is None or row["customers"] >= 5 or row["customers"] == 0


# -- saved segments, history, schedule, audit ----------------------------------------------------------


def test_segments_keep_their_size_over_time_and_run_on_schedule(world: World) -> None:
    service = service_of(world)
    definition = {
        "name": "phone-complainers",
        "description": "Complained by phone in the last 200 days",
        "schedule": "0 4 * * *",
        "match": {"interactions": {"kind": ["complaint"], "channel": ["phone"], "within_days": 200}},
    }
    view = service.create_segment(definition, actor="user:analyst")
    assert view.version == 1 and view.next_run_at is not None
    with pytest.raises(SegmentConflict):
        service.create_segment(definition, actor="user:analyst")

    first = service.evaluate("phone-complainers", actor="user:analyst")
    assert first["size"] == len(world.population.planted)
    due = view.next_run_at
    assert due is not None
    assert service.evaluate_due(now=due - timedelta(minutes=1)) == []
    assert service.evaluate_due(now=due + timedelta(minutes=1)) == ["phone-complainers"]
    assert service.evaluate_due(now=due + timedelta(minutes=1)) == []  # claimed: runs once

    history = service.history(view.id)
    assert [p["trigger"] for p in history["history"]] == ["on_demand", "schedule"]
    assert [p["size"] for p in history["history"]] == [len(world.population.planted)] * 2
    assert service.segment(view.id).next_run_at > due  # type: ignore[operator]

    changed = service.update_segment(
        view.id, {**definition, "schedule": None}, actor="user:analyst", expected_version=1
    )
    assert changed.version == 2 and changed.next_run_at is None
    with pytest.raises(SegmentConflict):
        service.update_segment(view.id, definition, actor="user:analyst", expected_version=1)

    service.delete_segment(view.id)
    with pytest.raises(SegmentNotFound):
        service.history(view.id)


def test_a_bad_definition_saves_nothing(world: World) -> None:
    service = service_of(world)
    with pytest.raises(SegmentDefinitionError) as caught:
        service.create_segment({"name": "bad", "match": {"consent": "mind_reading"}}, actor="user:analyst")
    assert "match.consent" in caught.value.errors
    assert service.segments() == []


def test_every_run_is_audited_with_its_purpose_and_counts_only(world: World) -> None:
    service = service_of(world)
    started = utcnow()
    service.analyse("channels")
    consent(world, world.population.regulars[:6], "profiling", "grant")
    service.analyse("rfm", purpose="profiling")
    entries = search(world.platform.db, action="analytics.run", since=started - timedelta(seconds=1)).items
    assert [(e.purpose, e.details["analysis"]) for e in reversed(entries)] == [
        ("analytics", "channels"),
        ("profiling", "rfm"),
    ]
    assert [e.details["customers"] for e in reversed(entries)] == [len(world.customer_of), 6]
    for entry in entries:
        assert set(entry.details) == {"analysis", "customers", "population"}
        assert entry.subjects == ()


def test_scheduled_runs_survive_a_segment_whose_scores_cannot_be_computed(tmp_path: Path) -> None:
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    try:
        service = AnalyticsService.for_platform(platform)
        service.create_segment(
            {
                "name": "valuable",
                "schedule": "* * * * *",
                "match": {"metric": "clv", "op": ">", "value": 100},
            },
            actor="user:analyst",
        )
        service.create_segment(
            {"name": "everyone", "schedule": "* * * * *", "match": {"not": {"department": "nowhere"}}},
            actor="user:analyst",
        )
        later = utcnow() + timedelta(minutes=2)
        assert service.evaluate_due(now=later) == ["everyone"]
        failed = search(platform.db, action="analytics.run", outcome="failed").items
        assert len(failed) == 1
        assert failed[0].details["error"] == "AnalyticsError"
    finally:
        platform.close()


def test_a_look_back_sees_only_the_history_up_to_as_of_but_todays_consent(world: World) -> None:
    service = service_of(world)
    now = utcnow()
    year_ago = service.analyse("purchases", as_of=now - timedelta(days=365))["result"]
    today = service.analyse("purchases")["result"]
    assert 0 < year_ago["purchases"] < today["purchases"]
    consent(world, world.population.regulars[:1], "analytics", "withdraw")
    looked_back = service.analyse("rfm", as_of=now - timedelta(days=365))
    assert looked_back["customers"] == len(world.customer_of) - 1  # consent as it stands now
    with pytest.raises(AnalyticsError):
        service.analyse("rfm", as_of=now + timedelta(days=1))
