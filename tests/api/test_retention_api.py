"""The retention API on SQLite and PostgreSQL: the policy in force, legal holds placed, listed and released,
sweeps (a dry run destroys nothing; a real one answers with a signed certificate; a second one while
another runs is refused), and refusals as problems."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.db.models import LegalHold, RetentionSweep, SourceRecord
from cdp.db.types import utcnow
from cdp.platform import Platform
from cdp.retention.policy import RetentionPolicy
from tests.api.test_dsr_api import Api, assert_problem, make_api


@pytest.fixture
def api(platform: Platform, tmp_path: Path) -> Api:
    return make_api(platform, tmp_path)


def _records(api: Api) -> int:
    with api.platform.db.read() as session:
        return int(session.execute(select(func.count()).select_from(SourceRecord)).scalar_one())


def test_the_policy_in_force_is_readable_with_its_digest(api: Api) -> None:
    response = api.call("GET", "/v1/retention/policy", "dpo")
    assert response.status_code == 200
    body = response.get_json()
    policy = RetentionPolicy.load()
    assert (body["version"], body["sha256"]) == (policy.version, policy.digest)
    categories = {c["line_of_business"]: c for c in body["categories"]}
    assert set(categories) == {"sales", "support", "billing", "marketing"}
    assert categories["billing"]["keep"] == "10y" and categories["billing"]["anchor"] == "last_activity"
    assert [o["name"] for o in body["obligations"]] == ["bookkeeping"]
    assert "invoice" in body["obligations"][0]["interaction_kinds"]
    assert [(e.outcome, json.loads(e.details)) for e in api.entries("retention.read")] == [
        ("success", {"policy_version": policy.version})
    ]


def test_legal_holds_are_placed_listed_and_released_with_a_reason(api: Api) -> None:
    maria = str(api.world.maria)
    placed = api.call("POST", "/v1/retention/holds", "dpo", {"customer_id": maria, "reason": "Case 2026-114"})
    assert placed.status_code == 201, placed.get_json()
    holds = placed.get_json()
    assert {h["record_id"] for h in holds} == {str(r) for r in api.world.maria_records}
    assert all(
        h["active"] and h["customer_id"] == maria and h["created_by"] == api.client_ids["dpo"] for h in holds
    )

    listed = api.call("GET", f"/v1/retention/holds?customer_id={maria}", "dpo").get_json()
    assert sorted(h["id"] for h in listed) == sorted(h["id"] for h in holds)
    assert (
        api.call("GET", f"/v1/retention/holds?customer_id={api.world.customers.john}", "dpo").get_json() == []
    )

    first = holds[0]["id"]
    released = api.call("POST", f"/v1/retention/holds/{first}/release", "dpo", {"reason": "Case closed"})
    assert released.status_code == 200
    assert (released.get_json()["active"], released.get_json()["release_reason"]) == (False, "Case closed")
    assert_problem(api.call("POST", f"/v1/retention/holds/{first}/release", "dpo", {"reason": "again"}), 409)
    assert_problem(
        api.call("POST", f"/v1/retention/holds/{uuid.uuid4()}/release", "dpo", {"reason": "abc"}), 404
    )

    active = api.call("GET", "/v1/retention/holds", "dpo").get_json()
    everything = api.call("GET", "/v1/retention/holds?active=false", "dpo").get_json()
    assert len(active) == len(holds) - 1 and first not in {h["id"] for h in active}
    assert len(everything) == len(holds)

    one = api.call(
        "POST",
        "/v1/retention/holds",
        "dpo",
        {"record_id": str(api.world.maria_billing_record), "reason": "Tax audit 7"},
    )
    assert one.status_code == 201 and [h["record_id"] for h in one.get_json()] == [
        str(api.world.maria_billing_record)
    ]
    assert [e.outcome for e in api.entries("retention.hold")] == ["success", "success"]
    assert sorted(e.outcome for e in api.entries("retention.release")) == ["failed", "not_found", "success"]
    for entry in api.entries("retention.hold") + api.entries("retention.release"):
        assert "Case" not in entry.details and "Tax" not in entry.details  # reasons stay out of the log


def test_a_hold_names_exactly_one_customer_or_record_and_a_reason(api: Api) -> None:
    both = {
        "customer_id": str(api.world.maria),
        "record_id": str(api.world.maria_billing_record),
        "reason": "abc",
    }
    assert (
        "_schema"
        in assert_problem(api.call("POST", "/v1/retention/holds", "dpo", both), 422)["errors"]["json"]
    )
    assert_problem(api.call("POST", "/v1/retention/holds", "dpo", {"reason": "abc"}), 422)
    short = assert_problem(
        api.call(
            "POST", "/v1/retention/holds", "dpo", {"customer_id": str(api.world.maria), "reason": "  x "}
        ),
        422,
    )
    assert list(short["errors"]["json"]) == ["reason"]
    unknown = {"customer_id": str(uuid.uuid4()), "reason": "Case 1"}
    assert_problem(api.call("POST", "/v1/retention/holds", "dpo", unknown), 404)
    with api.platform.db.read() as session:
        assert session.execute(select(LegalHold.id)).first() is None


def test_a_dry_run_destroys_nothing_and_a_sweep_answers_with_a_signed_certificate(api: Api) -> None:
    records = _records(api)
    assert_problem(api.call("POST", "/v1/retention/sweeps", "dpo", {}), 422)  # dry_run is never implied

    dry = api.call("POST", "/v1/retention/sweeps", "dpo", {"dry_run": True})
    assert dry.status_code == 200, dry.get_json()
    report = dry.get_json()
    assert report["dry_run"] is True and report["sweep_id"] is None and report["certificate"] is None
    assert set(report["expired_by_category"]) == {c.name for c in RetentionPolicy.load().categories}
    assert _records(api) == records
    assert api.call("GET", "/v1/retention/sweeps", "dpo").get_json() == []

    real = api.call("POST", "/v1/retention/sweeps", "dpo", {"dry_run": False})
    assert real.status_code == 200, real.get_json()
    report = real.get_json()
    assert report["dry_run"] is False and report["certificate"]["valid"] is True
    assert report["certificate"]["kind"] == "destruction_certificate"
    assert report["certificate_id"] == report["certificate"]["id"]
    assert _records(api) == records  # nothing in this world is past its period yet

    sweeps = api.call("GET", "/v1/retention/sweeps", "dpo").get_json()
    assert [(s["id"], s["status"], s["certificate_id"]) for s in sweeps] == [
        (report["sweep_id"], "completed", report["certificate_id"])
    ]
    certificates = api.call("GET", "/v1/receipts?kind=destruction_certificate", "dpo").get_json()
    assert [(c["id"], c["valid"]) for c in certificates] == [(report["certificate_id"], True)]


def test_a_sweep_while_another_holds_the_lease_is_a_conflict(api: Api) -> None:
    now = utcnow()
    with api.platform.db.transaction() as session:
        session.add(
            RetentionSweep(
                id=uuid.uuid4(),
                status="running",
                policy_version=RetentionPolicy.load().version,
                as_of=now,
                started_at=now,
                holder="another-host:1:abc",
                lease_until=now + timedelta(minutes=5),
                counts="{}",
            )
        )
    busy = assert_problem(api.call("POST", "/v1/retention/sweeps", "dpo", {"dry_run": False}), 409)
    assert "already running" in busy["detail"]
    assert [(e.outcome, json.loads(e.details)) for e in api.entries("retention.sweep")] == [
        ("failed", {"status": 409})
    ]
    assert api.call("POST", "/v1/retention/sweeps", "dpo", {"dry_run": True}).status_code == 200


def test_retention_needs_its_scope(api: Api) -> None:
    api.add_staff("compliance", "compliance_officer")
    for method, path in (
        ("GET", "/v1/retention/policy"),
        ("POST", "/v1/retention/sweeps"),
        ("GET", "/v1/retention/holds"),
        ("POST", "/v1/retention/holds"),
    ):
        for token in ("compliance", "maria"):
            assert api.call(method, path, token, {"dry_run": True}).status_code == 403, (method, path, token)
    # receipts are evidence: readable with audit:read
    assert api.call("GET", "/v1/receipts", "compliance").status_code == 200
