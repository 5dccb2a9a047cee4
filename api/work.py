"""Department work queues over HTTP (``work:manage``): routed data-subject requests and complaints.

A work item carries ids, a queue, the rule that routed it and its times — never a customer's data
(:mod:`cdp.dsr.routing`). Who sees which queue:

* the DPO sees every queue (data-subject requests land in ``privacy``; overdue items of every queue end
  in the leads' queues, which only the DPO oversees here);
* anyone else with ``work:manage`` (a department or support agent) sees only the queue named like their
  department (``billing``, ``support``, ``sales``, ``marketing``): items of other queues are ``404`` to
  them, as if they did not exist, and a principal without such a department sees no queue at all (deny
  by default rather than guess a department from a role's name).

Assigning and closing are audited by :class:`~cdp.dsr.routing.WorkQueue` in the transaction that makes the
change (``work.assign``, ``work.close``); reads record ``work.read`` with the items' ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from api.context import current_platform
from api.dsr import audit_read, dsr_service
from api.errors import PROBLEM_JSON, Problem, ProblemSchema
from api.oauth import Principal, current_principal, require_scope
from api.paths import invalid, path_id, uuid_parameter
from api.smorest import Blueprint
from cdp.dsr.routing import (
    CLOSED,
    OPEN,
    InvalidWorkRequest,
    RoutingRules,
    WorkItemConflict,
    WorkItemNotFound,
    WorkItemView,
    WorkQueue,
)

blp = Blueprint(
    "work",
    __name__,
    url_prefix="/v1/work",
    description="Department work queues: routed data-subject requests and complaints, with SLAs",
)

DEPARTMENT_QUEUES = ("billing", "support", "sales", "marketing")
"""Departments with a queue of their own, named like the department."""
ALL_QUEUES_ROLES = frozenset({"dpo"})
MAX_PAGE = 200
_MANAGE = [{"oauth2": ["work:manage"]}]
_PROBLEM = {"schema": ProblemSchema, "content_type": PROBLEM_JSON}
_TIME = {"format": "date-time"}
_ITEM_ID = uuid_parameter("item_id", "The work item's id")


# -- schemas ------------------------------------------------------------------------------------------


class WorkItemSchema(ma.Schema):
    id = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "`dsr_access`, `dsr_erasure` or `complaint`"})
    ref_id = ma.fields.String(metadata={"description": "The data-subject request or complaint interaction"})
    queue = ma.fields.String()
    rule = ma.fields.String(metadata={"description": "The routing rule that placed it"})
    status = ma.fields.String(metadata={"description": "`open` or `closed`"})
    assignee = ma.fields.String(allow_none=True, metadata={"description": "A staff principal id"})
    created_at = ma.fields.String(metadata=_TIME)
    due_at = ma.fields.String(metadata=_TIME)
    escalation_level = ma.fields.Integer()
    escalated_at = ma.fields.String(allow_none=True, metadata=_TIME)
    closed_at = ma.fields.String(allow_none=True, metadata=_TIME)
    overdue = ma.fields.Boolean()


class ItemsQuerySchema(ma.Schema):
    queue = ma.fields.String(
        load_default=None,
        validate=ma.validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$"),
        metadata={"description": "One queue (department staff: only their own)"},
    )
    status = ma.fields.String(load_default=OPEN, validate=ma.validate.OneOf([OPEN, CLOSED, "all"]))
    overdue = ma.fields.Boolean(load_default=False, metadata={"description": "Only open items past due"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, MAX_PAGE))


class AssignSchema(ma.Schema):
    assignee = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$"),
        metadata={"description": "A staff principal id such as `user:<uuid>` (never a name or an email)"},
    )


# -- helpers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """Which queues a principal works: every queue, or one (or none, ``queue`` None and not ``every``)."""

    every: bool
    queue: str | None = None

    def sees(self, queue: str) -> bool:
        return self.every or queue == self.queue


def reach_of(principal: Principal) -> Reach:
    if len(principal.roles) != 1:
        raise Problem(403, title="Forbidden", detail="The access token must carry exactly one role")
    if principal.roles[0] in ALL_QUEUES_ROLES:
        return Reach(every=True)
    department = principal.department
    return Reach(every=False, queue=department if department in DEPARTMENT_QUEUES else None)


def _rules() -> RoutingRules:
    rules = dsr_service().routing
    return rules if rules is not None else RoutingRules.load()


def _not_found() -> Problem:
    return Problem(404, title="Not Found", detail="No such work item in your queues")


def _visible(queue: WorkQueue, item_id: uuid.UUID, reach: Reach) -> WorkItemView:
    item = queue.get(item_id)
    if not reach.sees(item.queue):
        raise _not_found()
    return item


@contextmanager
def _work_problems() -> Iterator[None]:
    """The queue's refusals as problems; its messages name ids, states and rules, never a value given."""
    try:
        yield
    except WorkItemNotFound:
        raise _not_found() from None
    except WorkItemConflict as exc:
        raise Problem(409, title="Conflict", detail=str(exc)) from None
    except InvalidWorkRequest as exc:
        raise invalid("json", "_schema", str(exc)) from None


def _subjects(items: list[WorkItemView]) -> list[str]:
    prefix = {"complaint": "interaction"}
    subjects: list[str] = []
    for item in items:
        subjects += [f"work_item:{item.id}", f"{prefix.get(item.kind, 'dsr_request')}:{item.ref_id}"]
    return subjects


def _transition(item_id: str, change: Callable[[WorkQueue, uuid.UUID], WorkItemView]) -> dict[str, Any]:
    """Check the item is in the caller's queues, then change it in one transaction; the change's view
    (taken under the row lock) must still be in them, or the whole change rolls back as a 404."""
    wanted = path_id("item_id", item_id)
    reach = reach_of(current_principal())
    with _work_problems(), current_platform().db.transaction() as session:
        queue = WorkQueue(session, _rules())
        _visible(queue, wanted, reach)
        item = change(queue, wanted)
        if not reach.sees(item.queue):
            raise _not_found()
        return item.to_dict()


def _read(session: Session, query: dict[str, Any], reach: Reach) -> list[WorkItemView]:
    wanted = query["queue"]
    if not reach.every:
        if reach.queue is None or wanted not in (None, reach.queue):
            return []
        wanted = reach.queue
    with _work_problems():
        return WorkQueue(session, _rules()).items(
            queue=wanted,
            status=None if query["status"] == "all" else query["status"],
            overdue_only=query["overdue"],
            limit=query["limit"],
        )


# -- views --------------------------------------------------------------------------------------------


@blp.route("/items", methods=["GET"])
@require_scope("work:manage", "work.read")
@blp.arguments(ItemsQuerySchema, location="query")
@blp.response(200, WorkItemSchema(many=True))
@blp.doc(security=_MANAGE)
def list_items(query: dict[str, Any]) -> ResponseReturnValue:
    """Items of your queues, earliest due first (department staff: their department's queue only)."""
    reach = reach_of(current_principal())
    with current_platform().db.read() as session:
        items = _read(session, query, reach)
    audit_read("work.read", _subjects(items), items=len(items), queue=query["queue"] or reach.queue or "*")
    return [item.to_dict() for item in items]


@blp.route("/items/<item_id>", methods=["GET"], parameters=[_ITEM_ID])
@require_scope("work:manage", "work.read")
@blp.response(200, WorkItemSchema)
@blp.alt_response(404, description="No such work item in your queues", **_PROBLEM)
@blp.doc(security=_MANAGE)
def read_item(item_id: str) -> ResponseReturnValue:
    """One work item of your queues."""
    wanted = path_id("item_id", item_id)
    reach = reach_of(current_principal())
    with _work_problems(), current_platform().db.read() as session:
        item = _visible(WorkQueue(session, _rules()), wanted, reach)
    audit_read("work.read", _subjects([item]), items=1, queue=item.queue)
    return item.to_dict()


@blp.route("/items/<item_id>/assign", methods=["POST"], parameters=[_ITEM_ID])
@require_scope("work:manage", "work.assign")
@blp.arguments(AssignSchema)
@blp.response(200, WorkItemSchema)
@blp.alt_response(404, description="No such work item in your queues", **_PROBLEM)
@blp.alt_response(409, description="The item is closed", **_PROBLEM)
@blp.doc(security=_MANAGE)
def assign_item(body: dict[str, Any], item_id: str) -> ResponseReturnValue:
    """Give an open item to a member of staff, named by principal id."""
    return _transition(item_id, lambda queue, wanted: queue.assign(wanted, body["assignee"]))


@blp.route("/items/<item_id>/close", methods=["POST"], parameters=[_ITEM_ID])
@require_scope("work:manage", "work.close")
@blp.response(200, WorkItemSchema)
@blp.alt_response(404, description="No such work item in your queues", **_PROBLEM)
@blp.alt_response(409, description="The item is already closed", **_PROBLEM)
@blp.doc(security=_MANAGE)
def close_item(item_id: str) -> ResponseReturnValue:
    """Close an open item: the request was answered or the complaint resolved."""
    return _transition(item_id, lambda queue, wanted: queue.close(wanted))
