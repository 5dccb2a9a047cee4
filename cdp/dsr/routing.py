"""Routing of data-subject requests and customer complaints to department queues: workflow as data.

Why data and not code: who handles what, how fast and who hears about it when it is late changes with
the organisation, not with the software. ``routing.toml`` holds the queues and an ordered list of rules
(first match wins, a catch-all last) with an SLA and an escalation schedule each; it is checked on load
so a typo cannot route requests nowhere or let a data-subject request outlive the statutory month.

:class:`RoutingRules` is the pure part (attributes in, decision out). :class:`WorkQueue` applies it to
the ``work_item`` table inside the caller's transaction: routing is idempotent per (kind, reference),
assignment and closing are explicit transitions, and :meth:`WorkQueue.escalate_overdue` moves overdue
items up their queue's chain, once per level. Every change records one audit entry in the same
transaction, naming ids, queues, rules and levels only: a work item carries no personal data, and its
attributes (kind, department, channel, direction, line of business, source) are plaintext metadata.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tomllib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, record
from cdp.db.models import CHANNELS, DsrRequest, Interaction, Source, WorkItem
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.sources.mapping import DIRECTIONS

KINDS = ("dsr_access", "dsr_erasure", "complaint")
"""What a work item can be about: an access/export request, an erasure request, a complaint."""

DSR_KINDS = {"dsr_access": "access", "dsr_erasure": "erasure"}
"""Work item kind -> ``DsrRequest.kind``."""

DSR_CHANNELS = ("self_service", "on_behalf")
"""How a data-subject request arrived (``DsrRequest.channel``)."""

MATCH_KEYS = ("kind", "department", "channel", "direction", "line_of_business", "source")
"""The attributes a rule may test. All are plaintext metadata, never a customer's data."""

_MATCH_VALUES: Mapping[str, tuple[str, ...]] = {
    "kind": KINDS,
    "channel": (*CHANNELS, *DSR_CHANNELS),
    "direction": DIRECTIONS,
}
"""Keys whose values are a closed set: a misspelt value would make a rule silently never match."""

DSR_MAX_SLA_HOURS = 720
"""GDPR Art. 12(3): a data-subject request is answered within one month; the internal SLA may not be
longer, whichever rule a request could land on."""

OPEN = "open"
CLOSED = "closed"
STATUSES = (OPEN, CLOSED)

_QUEUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ASSIGNEE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A staff principal id such as ``user:<uuid>``: no spaces or ``@``, so names and emails do not fit."""

_MAX_LIMIT = 1000


class RoutingConfigError(CdpError):
    """The routing rules are invalid; the message names the queue, rule or key."""


class WorkItemNotFound(CdpError):
    """No work item has this id (or no request or complaint has this reference)."""


class WorkItemConflict(CdpError):
    """The transition is not allowed in the item's state (assigning or closing a closed item)."""


class InvalidWorkRequest(CdpError):
    """A routing call names an unknown kind, attribute, status or limit, or an assignee that is not an
    id; messages name keys and allowed values, never the value given."""


# -- the rules (pure) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSpec:
    name: str
    description: str
    escalates_to: str | None


@dataclass(frozen=True)
class RoutingRule:
    name: str
    match: Mapping[str, frozenset[str]]
    """Attribute -> accepted values; every condition must hold. Empty: the catch-all."""
    queue: str
    sla_hours: int
    escalate_after_hours: tuple[int, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(attributes.get(key) in accepted for key, accepted in self.match.items())

    def could_match_kind(self, kind: str) -> bool:
        accepted = self.match.get("kind")
        return accepted is None or kind in accepted


@dataclass(frozen=True)
class RouteDecision:
    """Which rule claimed the item, where it goes and how long the queue has."""

    rule: str
    queue: str
    sla_hours: int
    escalate_after_hours: tuple[int, ...]

    @property
    def sla(self) -> timedelta:
        return timedelta(hours=self.sla_hours)


@dataclass(frozen=True)
class RoutingRules:
    """The validated contents of a routing file."""

    version: int
    queues: Mapping[str, QueueSpec]
    rules: tuple[RoutingRule, ...]
    sha256: str
    """Of the file's text, so a decision can be traced to the exact rules that made it."""

    @classmethod
    def load(cls, path: Path | None = None) -> RoutingRules:
        """The rules in ``path``, or the packaged ``cdp/dsr/routing.toml``."""
        if path is None:
            text = resources.files("cdp.dsr").joinpath("routing.toml").read_text(encoding="utf-8")
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RoutingConfigError(f"cannot read routing rules {path}: {exc.strerror}") from None
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> RoutingRules:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RoutingConfigError(f"routing rules are not valid TOML: {exc}") from None
        return cls._from_mapping(document, hashlib.sha256(text.encode("utf-8")).hexdigest())

    @classmethod
    def _from_mapping(cls, document: Mapping[str, Any], sha256: str) -> RoutingRules:
        _no_unknown_keys(document, {"version", "queues", "rules"}, "routing rules")
        version = document.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RoutingConfigError("version: must be a positive integer")
        queues = _queues(document.get("queues"))
        rules = _rules(document.get("rules"), queues)
        return cls(version, queues, rules, sha256)

    @property
    def catch_all(self) -> RoutingRule:
        return self.rules[-1]

    def rule(self, name: str) -> RoutingRule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    def schedule(self, rule_name: str) -> tuple[int, ...]:
        """Escalation steps of an item routed by ``rule_name``; the catch-all's if that rule is gone."""
        found = self.rule(rule_name)
        return (found or self.catch_all).escalate_after_hours

    def escalation_target(self, queue: str) -> str:
        """Where an item in ``queue`` goes when it escalates: the queue's ``escalates_to``, else itself
        (also for a queue the file no longer has)."""
        spec = self.queues.get(queue)
        return spec.escalates_to if spec is not None and spec.escalates_to is not None else queue

    def route(self, attributes: Mapping[str, str]) -> RouteDecision:
        """The first rule whose conditions all hold (the catch-all if none other does)."""
        unknown = sorted(set(attributes) - set(MATCH_KEYS))
        if unknown:
            raise InvalidWorkRequest(
                f"unknown routing attribute {unknown[0]!r}; known: {', '.join(MATCH_KEYS)}"
            )
        for key, value in attributes.items():
            if not isinstance(value, str):
                raise InvalidWorkRequest(f"routing attribute {key!r} must be a string")
        for rule in self.rules:
            if rule.matches(attributes):
                return RouteDecision(rule.name, rule.queue, rule.sla_hours, rule.escalate_after_hours)
        raise AssertionError("validation guarantees a catch-all rule")  # pragma: no cover


def _no_unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RoutingConfigError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _queues(raw: Any) -> dict[str, QueueSpec]:
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        raise RoutingConfigError("queues: at least one [[queues]] table is required")
    queues: dict[str, QueueSpec] = {}
    for index, item in enumerate(raw):
        name = item.get("name")
        where = f"queues[{index}]"
        if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
            raise RoutingConfigError(f"{where}.name: must be a lower-case word of at most 32 characters")
        where = f"queue {name}"
        _no_unknown_keys(item, {"name", "description", "escalates_to"}, where)
        if name in queues:
            raise RoutingConfigError(f"{where}: defined twice")
        description = item.get("description", "")
        if not isinstance(description, str):
            raise RoutingConfigError(f"{where}.description: must be a string")
        escalates_to = item.get("escalates_to")
        if escalates_to is not None and not isinstance(escalates_to, str):
            raise RoutingConfigError(f"{where}.escalates_to: must be a queue name")
        queues[name] = QueueSpec(name, description, escalates_to)
    for spec in queues.values():
        if spec.escalates_to is not None and spec.escalates_to not in queues:
            raise RoutingConfigError(f"queue {spec.name}.escalates_to: unknown queue {spec.escalates_to!r}")
    for spec in queues.values():
        seen = [spec.name]
        target = spec.escalates_to
        while target is not None:
            if target in seen:
                chain = " -> ".join([*seen, target])
                raise RoutingConfigError(f"queue {spec.name}.escalates_to: escalation loops ({chain})")
            seen.append(target)
            target = queues[target].escalates_to
    return queues


def _rules(raw: Any, queues: Mapping[str, QueueSpec]) -> tuple[RoutingRule, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        raise RoutingConfigError("rules: at least one [[rules]] table is required (a catch-all last)")
    rules: list[RoutingRule] = []
    for index, item in enumerate(raw):
        rule = _rule(index, item, queues)
        if any(existing.name == rule.name for existing in rules):
            raise RoutingConfigError(f"rule {rule.name}: defined twice (rule names must be unique)")
        rules.append(rule)
    for rule in rules[:-1]:
        if not rule.match:
            raise RoutingConfigError(
                f"rule {rule.name}: an empty match is the catch-all and must be the last rule "
                "(the rules after it could never match)"
            )
    if rules[-1].match:
        raise RoutingConfigError(
            f"rules: the last rule ({rules[-1].name}) must be a catch-all with an empty match, "
            "so every request and complaint reaches a queue"
        )
    return tuple(rules)


def _rule(index: int, item: Mapping[str, Any], queues: Mapping[str, QueueSpec]) -> RoutingRule:
    name = item.get("name")
    if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
        raise RoutingConfigError(f"rules[{index}].name: must be a lower-case word of at most 64 characters")
    where = f"rule {name}"
    _no_unknown_keys(item, {"name", "match", "queue", "sla_hours", "escalate_after_hours"}, where)
    match = _match(item.get("match"), where)
    queue = item.get("queue")
    if not isinstance(queue, str) or queue not in queues:
        raise RoutingConfigError(f"{where}.queue: unknown queue {queue!r} (known: {', '.join(queues)})")
    sla_hours = item.get("sla_hours")
    if not isinstance(sla_hours, int) or isinstance(sla_hours, bool) or sla_hours < 1:
        raise RoutingConfigError(f"{where}.sla_hours: must be a positive whole number of hours")
    steps = item.get("escalate_after_hours", [])
    if not isinstance(steps, list) or not all(
        isinstance(step, int) and not isinstance(step, bool) and step >= 0 for step in steps
    ):
        raise RoutingConfigError(f"{where}.escalate_after_hours: must be a list of hours past the due time")
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise RoutingConfigError(f"{where}.escalate_after_hours: steps must increase")
    rule = RoutingRule(name, match, queue, sla_hours, tuple(steps))
    if sla_hours > DSR_MAX_SLA_HOURS and any(rule.could_match_kind(kind) for kind in DSR_KINDS):
        raise RoutingConfigError(
            f"{where}.sla_hours: a rule that can match a data-subject request must stay within "
            f"{DSR_MAX_SLA_HOURS} hours (the statutory month); add a kind condition or shorten it"
        )
    return rule


def _match(raw: Any, where: str) -> dict[str, frozenset[str]]:
    if raw is None:
        raise RoutingConfigError(f"{where}.match: required (use match = {{}} for the catch-all)")
    if not isinstance(raw, dict):
        raise RoutingConfigError(f"{where}.match: must be a table of conditions")
    match: dict[str, frozenset[str]] = {}
    for key, value in raw.items():
        if key not in MATCH_KEYS:
            raise RoutingConfigError(f"{where}.match: unknown key {key!r} (known: {', '.join(MATCH_KEYS)})")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise RoutingConfigError(f"{where}.match.{key}: must be a value or a non-empty list of values")
        allowed = _MATCH_VALUES.get(key)
        if allowed is not None:
            wrong = sorted(set(values) - set(allowed))
            if wrong:
                raise RoutingConfigError(
                    f"{where}.match.{key}: unknown value {wrong[0]!r} (known: {', '.join(allowed)})"
                )
        match[key] = frozenset(values)
    return match


# -- the queues (stateful) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItemView:
    """A work item as staff and the API see it: ids, queue, rule, times; never a customer's data."""

    id: uuid.UUID
    kind: str
    ref_id: uuid.UUID
    queue: str
    rule: str
    status: str
    assignee: str | None
    created_at: datetime
    due_at: datetime
    escalation_level: int
    escalated_at: datetime | None
    closed_at: datetime | None
    overdue: bool
    """Open and past its due time (as of when the view was made)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "kind": self.kind,
            "ref_id": str(self.ref_id),
            "queue": self.queue,
            "rule": self.rule,
            "status": self.status,
            "assignee": self.assignee,
            "created_at": self.created_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "escalation_level": self.escalation_level,
            "escalated_at": self.escalated_at.isoformat() if self.escalated_at else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "overdue": self.overdue,
        }


def _view(row: WorkItem, now: datetime) -> WorkItemView:
    return WorkItemView(
        id=row.id,
        kind=row.kind,
        ref_id=row.ref_id,
        queue=row.queue,
        rule=row.rule,
        status=row.status,
        assignee=row.assignee,
        created_at=row.created_at,
        due_at=row.due_at,
        escalation_level=row.escalation_level,
        escalated_at=row.escalated_at,
        closed_at=row.closed_at,
        overdue=row.status == OPEN and now > row.due_at,
    )


@dataclass(frozen=True)
class _Reference:
    """What the referenced request or complaint says about routing, and whom it concerns (ids)."""

    attributes: dict[str, str]
    received_at: datetime
    deadline: datetime | None
    """A hard limit the due time may not pass (a data-subject request's statutory due date)."""
    subjects: tuple[str, ...]


def _ref_subject(kind: str, ref_id: uuid.UUID) -> str:
    return f"{'dsr_request' if kind in DSR_KINDS else 'interaction'}:{ref_id}"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidWorkRequest(f"unknown work item kind; known: {', '.join(KINDS)}")


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return utcnow()
    if moment.tzinfo is None:
        raise InvalidWorkRequest("times must be timezone-aware")
    return moment


def _limit(limit: int) -> int:
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidWorkRequest(f"limit must be between 1 and {_MAX_LIMIT}")
    return limit


class WorkQueue:
    """Department queues over the ``work_item`` table, in the caller's transaction (the caller commits).

    Every change records one audit entry in the same transaction, so an item never moves unaudited and
    an audit entry never describes a change that was rolled back."""

    def __init__(self, session: Session, rules: RoutingRules) -> None:
        self.session = session
        self.rules = rules

    # -- routing ---------------------------------------------------------------------------------------

    def route(
        self,
        kind: str,
        ref_id: uuid.UUID,
        attributes: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
    ) -> WorkItemView:
        """Open the work item for a request or complaint, in the queue the rules choose.

        Idempotent on (kind, ref_id): a second call returns the existing item unchanged, whatever the
        attributes or rules say now. The attributes are read from the referenced row (a complaint's
        interaction and source, a request's channel); ``attributes`` adds to or overrides them. The due
        time counts from when the request or complaint was received, and a data-subject request's
        never lies past its statutory due date."""
        _check_kind(kind)
        now = _aware(now)
        existing = self._find_row(kind, ref_id)
        if existing is not None:
            return _view(existing, now)
        reference = self._reference(kind, ref_id, now)
        if reference is None:
            raise WorkItemNotFound(f"no {kind} with id {ref_id}")
        merged = {**reference.attributes, **(attributes or {})}
        if merged.get("kind") != kind:
            raise InvalidWorkRequest("routing attribute 'kind' must agree with the work item kind")
        view, _ = self._open(kind, ref_id, merged, reference, now)
        return view

    def route_new_complaints(
        self, *, now: datetime | None = None, since: datetime | None = None, limit: int = 1000
    ) -> int:
        """Route complaint interactions that have no work item yet, oldest first; returns how many.

        ``since`` skips complaints that happened earlier (a first run over years of history should not
        open, and at once escalate, every old complaint). Safe to run concurrently: a complaint another
        run routed first is skipped."""
        now = _aware(now)
        _limit(limit)
        query = (
            select(Interaction, Source.name, Source.line_of_business)
            .join(Source, Source.id == Interaction.source_id)
            .outerjoin(WorkItem, and_(WorkItem.kind == "complaint", WorkItem.ref_id == Interaction.id))
            .where(Interaction.kind == "complaint", WorkItem.id.is_(None))
            .order_by(Interaction.occurred_at, Interaction.id)
            .limit(limit)
        )
        if since is not None:
            query = query.where(Interaction.occurred_at >= _aware(since))
        routed = 0
        for interaction, source_name, line_of_business in self.session.execute(query).all():
            reference = _complaint_reference(interaction, source_name, line_of_business, now)
            _, created = self._open("complaint", interaction.id, reference.attributes, reference, now)
            routed += created
        return routed

    def _open(
        self,
        kind: str,
        ref_id: uuid.UUID,
        attributes: Mapping[str, str],
        reference: _Reference,
        now: datetime,
    ) -> tuple[WorkItemView, bool]:
        """Insert the item (in a savepoint, so losing a race to a concurrent router only undoes this
        insert) and audit it; returns the view and whether this call created it."""
        decision = self.rules.route(attributes)
        due_at = reference.received_at + decision.sla
        if reference.deadline is not None:
            due_at = min(due_at, reference.deadline)
        row = WorkItem(
            id=uuid.uuid4(),
            kind=kind,
            ref_id=ref_id,
            queue=decision.queue,
            rule=decision.rule,
            status=OPEN,
            assignee=None,
            created_at=now,
            due_at=due_at,
            escalation_level=0,
        )
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:  # routed concurrently by another transaction: theirs stands
            found = self._find_row(kind, ref_id)
            if found is None:
                raise
            return _view(found, now), False
        self._audit(
            "work.route",
            row,
            reference.subjects,
            queue=decision.queue,
            rule=decision.rule,
            rules_version=self.rules.version,
            sla_hours=decision.sla_hours,
        )
        return _view(row, now), True

    def _reference(self, kind: str, ref_id: uuid.UUID, now: datetime) -> _Reference | None:
        if kind == "complaint":
            found = self.session.execute(
                select(Interaction, Source.name, Source.line_of_business)
                .join(Source, Source.id == Interaction.source_id)
                .where(Interaction.id == ref_id, Interaction.kind == "complaint")
            ).first()
            if found is None:
                return None
            return _complaint_reference(found[0], found[1], found[2], now)
        request = self.session.get(DsrRequest, ref_id)
        if request is None or request.kind != DSR_KINDS[kind]:
            return None
        return _Reference(
            attributes={"kind": kind, "channel": request.channel},
            received_at=min(request.received_at, now),
            deadline=request.due_at,
            subjects=(str(request.entity_id), str(request.record_id)),
        )

    # -- transitions -----------------------------------------------------------------------------------

    def assign(self, item_id: uuid.UUID, assignee: str, *, now: datetime | None = None) -> WorkItemView:
        """Give an open item to a staff member, named by principal id (``user:<uuid>``), never by name
        or email. Assigning to the current assignee changes nothing and records nothing."""
        if not isinstance(assignee, str) or not _ASSIGNEE.fullmatch(assignee):
            raise InvalidWorkRequest(
                "assignee must be a staff principal id (letters, digits and . _ : - only, at most 64)"
            )
        now = _aware(now)
        row = self._locked(item_id)
        if row.status != OPEN:
            raise WorkItemConflict(f"work item {item_id} is closed and cannot be assigned")
        if row.assignee == assignee:
            return _view(row, now)
        previous = row.assignee
        row.assignee = assignee
        self.session.flush()
        self._audit("work.assign", row, (), queue=row.queue, assignee=assignee, previous_assignee=previous)
        return _view(row, now)

    def close(self, item_id: uuid.UUID, *, now: datetime | None = None) -> WorkItemView:
        """Close an open item (the request was answered, the complaint resolved)."""
        now = _aware(now)
        row = self._locked(item_id)
        if row.status != OPEN:
            raise WorkItemConflict(f"work item {item_id} is already closed")
        row.status = CLOSED
        row.closed_at = now
        self.session.flush()
        self._audit(
            "work.close",
            row,
            (),
            queue=row.queue,
            rule=row.rule,
            escalation_level=row.escalation_level,
            overdue=now > row.due_at,
        )
        return _view(row, now)

    def escalate_overdue(self, *, now: datetime | None = None, limit: int = 1000) -> list[WorkItemView]:
        """Escalate every open item that has passed its next escalation step; returns the escalated items.

        Step N of the item's rule fires once the item is ``escalate_after_hours[N-1]`` hours past due: the
        level becomes N, the item moves to its queue's ``escalates_to`` (assignee cleared if it moved),
        one audit entry per level. The query selects only items whose next step is due, locked for
        update, so concurrent runs (or a rerun) never raise the same level twice."""
        now = _aware(now)
        _limit(limit)
        condition = self._escalation_condition(now)
        rows = (
            self.session.execute(
                select(WorkItem)
                .where(WorkItem.status == OPEN, condition)
                .order_by(WorkItem.due_at, WorkItem.id)
                .limit(limit)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            .scalars()
            .all()
        )
        escalated: list[WorkItemView] = []
        for row in rows:
            steps = self.rules.schedule(row.rule)
            target = sum(1 for hours in steps if now > row.due_at + timedelta(hours=hours))
            if target <= row.escalation_level:
                continue
            for level in range(row.escalation_level + 1, target + 1):
                from_queue = row.queue
                row.queue = self.rules.escalation_target(from_queue)
                if row.queue != from_queue:
                    row.assignee = None
                row.escalation_level = level
                row.escalated_at = now
                self.session.flush()
                self._audit(
                    "work.escalate",
                    row,
                    (),
                    level=level,
                    from_queue=from_queue,
                    queue=row.queue,
                    rule=row.rule,
                    hours_overdue=int((now - row.due_at).total_seconds() // 3600),
                )
            escalated.append(_view(row, now))
        return escalated

    def _escalation_condition(self, now: datetime) -> ColumnElement[bool]:
        """Items whose next step (at their current level) is due: one term per (rule, level)."""
        terms: list[ColumnElement[bool]] = []
        named = [rule.name for rule in self.rules.rules]
        schedules: Iterable[tuple[ColumnElement[bool], Sequence[int]]] = [
            *((WorkItem.rule == rule.name, rule.escalate_after_hours) for rule in self.rules.rules),
            (WorkItem.rule.not_in(named), self.rules.catch_all.escalate_after_hours),
        ]
        for rule_condition, steps in schedules:
            for level, hours in enumerate(steps):
                terms.append(
                    and_(
                        rule_condition,
                        WorkItem.escalation_level == level,
                        WorkItem.due_at < now - timedelta(hours=hours),
                    )
                )
        return or_(*terms) if terms else false()

    # -- reads -----------------------------------------------------------------------------------------

    def get(self, item_id: uuid.UUID, *, now: datetime | None = None) -> WorkItemView:
        row = self.session.get(WorkItem, item_id)
        if row is None:
            raise WorkItemNotFound(f"work item {item_id} does not exist")
        return _view(row, _aware(now))

    def find(self, kind: str, ref_id: uuid.UUID, *, now: datetime | None = None) -> WorkItemView | None:
        """The item of a request or complaint, if it was routed (for the request's own service to close
        it when the request completes)."""
        _check_kind(kind)
        row = self._find_row(kind, ref_id)
        return _view(row, _aware(now)) if row is not None else None

    def items(
        self,
        *,
        queue: str | None = None,
        status: str | None = OPEN,
        overdue_only: bool = False,
        limit: int = 100,
        now: datetime | None = None,
    ) -> list[WorkItemView]:
        """A queue's items, most urgent (earliest due) first. ``status=None`` lists open and closed;
        ``overdue_only`` lists open items past their due time."""
        now = _aware(now)
        query = select(WorkItem).order_by(WorkItem.due_at, WorkItem.id).limit(_limit(limit))
        if queue is not None:
            query = query.where(WorkItem.queue == queue)
        if status is not None:
            if status not in STATUSES:
                raise InvalidWorkRequest(f"status must be one of {', '.join(STATUSES)}")
            query = query.where(WorkItem.status == status)
        if overdue_only:
            query = query.where(WorkItem.status == OPEN, WorkItem.due_at < now)
        return [_view(row, now) for row in self.session.execute(query).scalars()]

    # -- internals -------------------------------------------------------------------------------------

    def _find_row(self, kind: str, ref_id: uuid.UUID) -> WorkItem | None:
        return self.session.execute(
            select(WorkItem).where(WorkItem.kind == kind, WorkItem.ref_id == ref_id)
        ).scalar_one_or_none()

    def _locked(self, item_id: uuid.UUID) -> WorkItem:
        row = self.session.execute(
            select(WorkItem)
            .where(WorkItem.id == item_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if row is None:
            raise WorkItemNotFound(f"work item {item_id} does not exist")
        return row

    def _audit(self, action: str, row: WorkItem, subjects: Sequence[str], **details: Any) -> None:
        record(
            self.session,
            AuditEvent(
                action,
                subjects=(f"work_item:{row.id}", _ref_subject(row.kind, row.ref_id), *subjects),
                details={"work_item": str(row.id), "kind": row.kind, **details},
            ),
        )


def _complaint_reference(
    interaction: Interaction, source_name: str, line_of_business: str, now: datetime
) -> _Reference:
    return _Reference(
        attributes={
            "kind": "complaint",
            "department": interaction.department,
            "channel": interaction.channel,
            "direction": interaction.direction,
            "line_of_business": line_of_business,
            "source": source_name,
        },
        received_at=min(interaction.occurred_at, now),
        deadline=None,
        subjects=(str(interaction.record_id),),
    )
