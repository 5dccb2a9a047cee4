"""The work queue API on SQLite and PostgreSQL: the DPO sees every queue; department staff see and work only
the queue named like their department (anything else is 404 to them, and stays untouched); assignment and
closing are explicit, audited transitions; refusals are problems."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from cdp.db.models import Interaction
from cdp.dsr.routing import RoutingRules, WorkQueue
from cdp.platform import Platform
from tests.api.test_dsr_api import Api, assert_problem, make_api


@dataclass
class Queues:
    api: Api
    billing_item: str
    support_items: set[str]
    privacy_item: str

    def ids(self, token: str, query: str = "") -> set[str]:
        response = self.api.call("GET", f"/v1/work/items{query}", token)
        assert response.status_code == 200, response.get_json()
        return {item["id"] for item in response.get_json()}


@pytest.fixture
def queues(platform: Platform, tmp_path: Path) -> Queues:
    """Three helpdesk complaints (one routed as a billing complaint, two to support) and one DSR item."""
    api = make_api(platform, tmp_path)
    api.add_staff("support", "support_agent", department="support")
    api.add_staff("billing", "department_agent", department="billing")
    api.add_staff("sales", "department_agent", department="sales")
    api.add_staff("no_department", "support_agent")
    with platform.db.transaction() as session:
        complaints = list(
            session.execute(
                select(Interaction.id)
                .where(Interaction.kind == "complaint")
                .order_by(Interaction.occurred_at)
            ).scalars()
        )
        queue = WorkQueue(session, RoutingRules.load())
        billing = queue.route("complaint", complaints[0], {"department": "billing"})
        assert queue.route_new_complaints() == len(complaints) - 1
        support = {str(item.id) for item in queue.items(queue="support")}
    opened = api.call(
        "POST", "/v1/dsr/requests", "dpo", {"customer_id": str(api.world.customers.john), "kind": "access"}
    )
    assert opened.status_code == 201
    with platform.db.read() as session:
        privacy = WorkQueue(session, RoutingRules.load()).find(
            "dsr_access", uuid.UUID(opened.get_json()["id"])
        )
    assert billing.queue == "billing" and len(support) == 2 and privacy is not None
    return Queues(api, str(billing.id), support, str(privacy.id))


def test_the_dpo_sees_every_queue(queues: Queues) -> None:
    everything = {queues.billing_item, queues.privacy_item, *queues.support_items}
    assert queues.ids("dpo") == everything
    assert queues.ids("dpo", "?queue=support") == queues.support_items
    items = queues.api.call("GET", f"/v1/work/items/{queues.privacy_item}", "dpo").get_json()
    assert (items["kind"], items["queue"], items["status"]) == ("dsr_access", "privacy", "open")


def test_department_staff_see_only_the_queue_of_their_department(queues: Queues) -> None:
    api = queues.api
    assert queues.ids("support") == queues.support_items
    assert queues.ids("billing") == {queues.billing_item}
    assert queues.ids("support", "?queue=billing") == set()
    assert queues.ids("support", "?status=all") == queues.support_items
    assert queues.ids("sales") == set()
    assert queues.ids("no_department") == set()  # no department, no queue: never a guess

    for token, item in (("support", queues.billing_item), ("billing", queues.privacy_item)):
        assert_problem(api.call("GET", f"/v1/work/items/{item}", token), 404)
    assert_problem(api.call("GET", f"/v1/work/items/{queues.billing_item}", "no_department"), 404)
    own = api.call("GET", f"/v1/work/items/{queues.billing_item}", "billing")
    assert own.status_code == 200 and own.get_json()["queue"] == "billing"


def test_department_staff_cannot_change_another_departments_items(queues: Queues) -> None:
    api = queues.api
    item = queues.billing_item
    assert_problem(api.call("POST", f"/v1/work/items/{item}/assign", "support", {"assignee": "user:x"}), 404)
    assert_problem(api.call("POST", f"/v1/work/items/{item}/close", "support"), 404)
    after = api.call("GET", f"/v1/work/items/{item}", "dpo").get_json()
    assert (after["assignee"], after["status"]) == (None, "open")
    assert not [e for e in api.entries("work.assign") + api.entries("work.close") if e.outcome == "success"]


def test_items_are_assigned_and_closed_once(queues: Queues) -> None:
    api = queues.api
    path = f"/v1/work/items/{queues.billing_item}"
    assignee = f"user:{uuid.uuid4()}"
    assigned = api.call("POST", f"{path}/assign", "billing", {"assignee": assignee})
    assert assigned.status_code == 200 and assigned.get_json()["assignee"] == assignee
    bad = assert_problem(
        api.call("POST", f"{path}/assign", "billing", {"assignee": "maria@example.com"}), 422
    )
    assert list(bad["errors"]["json"]) == ["assignee"] and "maria" not in json.dumps(bad)

    closed = api.call("POST", f"{path}/close", "billing")
    assert closed.status_code == 200
    assert closed.get_json()["status"] == "closed" and closed.get_json()["closed_at"]
    assert_problem(api.call("POST", f"{path}/close", "billing"), 409)
    assert_problem(api.call("POST", f"{path}/assign", "billing", {"assignee": assignee}), 409)
    assert queues.ids("billing") == set()
    assert queues.ids("billing", "?status=closed") == {queues.billing_item}
    assert_problem(api.call("POST", f"/v1/work/items/{uuid.uuid4()}/close", "dpo"), 404)
    assert_problem(api.call("GET", "/v1/work/items?status=pending&limit=0", "dpo"), 422)

    assigns = api.entries("work.assign")
    assert [
        (e.outcome, json.loads(e.details).get("assignee")) for e in assigns if e.outcome == "success"
    ] == [("success", assignee)]
    assert sorted(e.outcome for e in api.entries("work.close")) == ["failed", "not_found", "success"]


def test_work_queues_need_their_scope(queues: Queues) -> None:
    api = queues.api
    api.add_staff("analyst", "marketing_analyst")
    for token in ("analyst", "maria"):
        assert api.call("GET", "/v1/work/items", token).status_code == 403
        assert api.call("POST", f"/v1/work/items/{queues.billing_item}/close", token).status_code == 403
    assert api.call("GET", "/v1/work/items", None).status_code == 401
