"""Segments as data: a JSON definition of attribute, behaviour, consent and score conditions.

A definition is validated completely before anything runs, and every mistake is reported with the path to
it (``match.all[1].interactions.within_days``), so a bad definition is a clear 4xx, never a crash or a
silently empty segment. Example — billing customers with a complaint in the last 90 days who consented to
marketing email::

    {"name": "billing-complainers",
     "description": "Billing customers who complained recently and may be emailed",
     "purpose": "analytics",
     "schedule": "0 4 * * *",
     "match": {"all": [
         {"department": "billing"},
         {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
         {"consent": "marketing_email"}]}}

Conditions (each an object with exactly one of these keys, plus the options shown):

* ``all`` / ``any``: a list of conditions; ``not``: one condition.
* ``department``: the customer has a record in that line of business.
* ``interactions``: a filter (``kind``, ``channel``, ``direction``, ``department`` lists,
  ``within_days``), with ``min`` (default 1) and optional ``max`` matching interactions.
* ``consent``: the consent purpose holds for the customer now.
* ``metric`` with ``op`` (``<``, ``<=``, ``>``, ``>=``, ``between``) and ``value``: a score (see METRICS).
* ``rfm_segment``: one or more RFM segment names; ``preferred_channel``: one or more channels.
* ``country``: ISO 3166 alpha-2 codes; ``age``: ``{"min": .., "max": ..}`` in whole years.

Evaluation is vectorized over the consenting population (:class:`~cdp.analytics.frame.Dataset`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from marshmallow import Schema, ValidationError, fields, validate
from numpy.typing import NDArray

from cdp.analytics.dataset import ANALYTICS_PURPOSES
from cdp.analytics.frame import INBOUND, OUTBOUND, Dataset, from_day
from cdp.errors import CdpError

Mask = NDArray[np.bool_]

METRICS: dict[str, str] = {
    "days_since_last_activity": "Days since the customer last did something (inbound, a click, a payment)",
    "days_since_last_purchase": "Days since the last purchase",
    "purchases": "Purchase days, all time",
    "revenue": "Net revenue in the base currency, all time",
    "tenure_days": "Days since the customer was first seen",
    "clv": "Predicted discounted value over the CLV horizon (BG/NBD + Gamma-Gamma)",
    "p_alive": "Probability the customer is still buying (BG/NBD)",
    "churn_risk": "Probability of no activity over the churn horizon (logistic regression)",
    "profit": "Margin on net revenue minus cost to serve",
}
CHANNELS = ("email", "letter", "phone", "web", "chat", "in_person")
OPERATORS = ("<", "<=", ">", ">=", "between")
MAX_DEPTH = 6
MAX_CONDITIONS = 50
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{1,63}")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,31}")
_COUNTRY = re.compile(r"[A-Z]{2}")


class SegmentDefinitionError(CdpError):
    """A definition that cannot be evaluated; ``errors`` maps each bad path to what is wrong there."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = dict(errors)
        first = next(iter(self.errors.items()), ("definition", ["is invalid"]))
        super().__init__(f"invalid segment definition: {first[0]}: {first[1][0]}")


class MetricSource(Protocol):
    """Scores and groupings the conditions can use, computed on demand over the same dataset."""

    def values(self, metric: str) -> NDArray[np.float64]: ...

    def rfm_segments(self) -> Mapping[str, Mask]: ...

    def preferred_channels(self) -> Mapping[str, Mask]: ...

    def consent(self, purpose: str) -> Mask: ...


@dataclass(frozen=True)
class Needs:
    """What evaluating a definition requires beyond the interaction metadata."""

    attributes: frozenset[str] = frozenset()
    consents: frozenset[str] = frozenset()
    metrics: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.attributes | other.attributes, self.consents | other.consents, self.metrics | other.metrics
        )


class Condition(Protocol):
    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask: ...

    def needs(self) -> Needs: ...


# -- conditions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        mask = np.ones(dataset.size, dtype=bool)
        for condition in self.conditions:
            mask &= condition.evaluate(dataset, source)
        return mask

    def needs(self) -> Needs:
        return _union(self.conditions)


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        mask = np.zeros(dataset.size, dtype=bool)
        for condition in self.conditions:
            mask |= condition.evaluate(dataset, source)
        return mask

    def needs(self) -> Needs:
        return _union(self.conditions)


@dataclass(frozen=True)
class Not:
    condition: Condition

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        return ~self.condition.evaluate(dataset, source)

    def needs(self) -> Needs:
        return self.condition.needs()


@dataclass(frozen=True)
class InDepartment:
    department: str

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        return dataset.customers.in_department(self.department)

    def needs(self) -> Needs:
        return Needs()


@dataclass(frozen=True)
class InteractionCount:
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    direction: str | None = None
    departments: tuple[str, ...] = ()
    within_days: int | None = None
    minimum: int = 1
    maximum: int | None = None

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        frame = dataset.interactions
        rows = np.ones(len(frame), dtype=bool)
        if self.kinds:
            rows &= frame.kind_mask(self.kinds)
        if self.channels:
            rows &= np.isin(frame.channel, frame.channels.codes(self.channels))
        if self.direction is not None:
            rows &= frame.direction == (INBOUND if self.direction == "inbound" else OUTBOUND)
        if self.departments:
            rows &= np.isin(frame.department, frame.departments.codes(self.departments))
        if self.within_days is not None:
            rows &= frame.day > dataset.as_of - self.within_days
        counts = dataset.per_customer_count(rows)
        mask = counts >= self.minimum
        if self.maximum is not None:
            mask &= counts <= self.maximum
        return np.asarray(mask, dtype=bool)

    def needs(self) -> Needs:
        return Needs()


@dataclass(frozen=True)
class ConsentHolds:
    purpose: str

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        return source.consent(self.purpose)

    def needs(self) -> Needs:
        return Needs(consents=frozenset({self.purpose}))


@dataclass(frozen=True)
class MetricCompare:
    metric: str
    op: str
    value: tuple[float, ...]

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        values = source.values(self.metric)
        with np.errstate(invalid="ignore"):
            if self.op == "between":
                mask = (values >= self.value[0]) & (values <= self.value[1])
            else:
                mask = _COMPARE[self.op](values, self.value[0])
        return np.asarray(mask & ~np.isnan(values), dtype=bool)

    def needs(self) -> Needs:
        return Needs(metrics=frozenset({self.metric}))


@dataclass(frozen=True)
class InGroups:
    """Membership of named groups a source provides (RFM segments, preferred channels)."""

    grouping: str
    names: tuple[str, ...]

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        groups = source.rfm_segments() if self.grouping == "rfm_segment" else source.preferred_channels()
        mask = np.zeros(dataset.size, dtype=bool)
        for name in self.names:
            member = groups.get(name)
            if member is not None:
                mask |= member
        return mask

    def needs(self) -> Needs:
        return Needs(metrics=frozenset({self.grouping}))


@dataclass(frozen=True)
class InCountry:
    countries: tuple[str, ...]

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        country = dataset.customers.country
        if country is None:
            raise RuntimeError("the dataset was loaded without countries")
        return np.isin(country, list(self.countries))

    def needs(self) -> Needs:
        return Needs(attributes=frozenset({"country"}))


@dataclass(frozen=True)
class AgeBetween:
    minimum: int | None
    maximum: int | None

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        birth_year = dataset.customers.birth_year
        if birth_year is None:
            raise RuntimeError("the dataset was loaded without years of birth")
        age = from_day(dataset.as_of).year - birth_year
        mask = ~np.isnan(age)
        with np.errstate(invalid="ignore"):
            if self.minimum is not None:
                mask &= age >= self.minimum
            if self.maximum is not None:
                mask &= age <= self.maximum
        return np.asarray(mask, dtype=bool)

    def needs(self) -> Needs:
        return Needs(attributes=frozenset({"birth_year"}))


_COMPARE: dict[str, Callable[[NDArray[np.float64], float], Mask]] = {
    "<": lambda v, x: v < x,
    "<=": lambda v, x: v <= x,
    ">": lambda v, x: v > x,
    ">=": lambda v, x: v >= x,
}


def _union(conditions: tuple[Condition, ...]) -> Needs:
    out = Needs()
    for condition in conditions:
        out = out | condition.needs()
    return out


# -- the definition ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentDefinition:
    name: str
    description: str
    purpose: str
    schedule: str | None
    match: Condition
    raw: dict[str, Any] = field(compare=False, repr=False)

    def needs(self) -> Needs:
        return self.match.needs()

    def evaluate(self, dataset: Dataset, source: MetricSource) -> Mask:
        return self.match.evaluate(dataset, source)

    def unknown_names(self, dataset: Dataset) -> list[str]:
        """Kinds and departments the definition names that occur nowhere in ``dataset``: the vocabulary is
        open (each source maps its own), so a typo would otherwise just match nobody, silently."""
        seen = {
            "kind": set(dataset.interactions.kinds.names),
            "interaction department": set(dataset.interactions.departments.names),
            "department": set(dataset.customers.department_names.names),
        }
        wanted: dict[str, set[str]] = {name: set() for name in seen}
        _collect(self.match, wanted)
        return [
            f"{what} {name!r} occurs nowhere in this population"
            for what, names in wanted.items()
            for name in sorted(names - seen[what])
        ]


def _collect(condition: Condition, wanted: dict[str, set[str]]) -> None:
    if isinstance(condition, AllOf | AnyOf):
        for inner in condition.conditions:
            _collect(inner, wanted)
    elif isinstance(condition, Not):
        _collect(condition.condition, wanted)
    elif isinstance(condition, InDepartment):
        wanted["department"].add(condition.department)
    elif isinstance(condition, InteractionCount):
        wanted["kind"].update(condition.kinds)
        wanted["interaction department"].update(condition.departments)


class _Top(Schema):
    name = fields.String(
        required=True, validate=validate.Regexp(_NAME, error="use 2-64 lower-case letters, digits, - and _")
    )
    description = fields.String(load_default="", validate=validate.Length(max=500))
    purpose = fields.String(load_default="analytics", validate=validate.OneOf(ANALYTICS_PURPOSES))
    schedule = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))
    match = fields.Dict(required=True)


def _words(max_items: int = 20) -> fields.List[Any]:
    return fields.List(
        fields.String(validate=validate.Regexp(_WORD, error="a lower-case word")),
        validate=validate.Length(min=1, max=max_items),
    )


class _InteractionFilter(Schema):
    kind = _words()
    channel = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), validate=validate.Length(min=1))
    direction = fields.String(validate=validate.OneOf(("inbound", "outbound")))
    department = _words()
    within_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=3650))


class _InteractionCondition(Schema):
    interactions = fields.Nested(_InteractionFilter, required=True)
    min = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=0, max=100_000))
    max = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(min=0))


class _MetricCondition(Schema):
    metric = fields.String(required=True, validate=validate.OneOf(tuple(METRICS)))
    op = fields.String(required=True, validate=validate.OneOf(OPERATORS))
    value = fields.Raw(required=True)


class _AgeRange(Schema):
    min = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(0, 130))
    max = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(0, 130))


_KEYS = (
    "all",
    "any",
    "not",
    "department",
    "interactions",
    "consent",
    "metric",
    "rfm_segment",
    "preferred_channel",
    "country",
    "age",
)


class _Parser:
    def __init__(self, consent_purposes: frozenset[str], rfm_segments: frozenset[str]) -> None:
        self.consent_purposes = consent_purposes
        self.rfm_segments = rfm_segments
        self.errors: dict[str, list[str]] = {}
        self.count = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def condition(self, node: Any, path: str, depth: int) -> Condition | None:
        self.count += 1
        if self.count > MAX_CONDITIONS:
            if self.count == MAX_CONDITIONS + 1:
                self.fail(path, f"a definition may hold at most {MAX_CONDITIONS} conditions")
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions may nest at most {MAX_DEPTH} deep")
            return None
        if not isinstance(node, dict):
            self.fail(path, "must be an object with one of: " + ", ".join(_KEYS))
            return None
        kinds = [key for key in _KEYS if key in node]
        if len(kinds) != 1:
            self.fail(path, "must have exactly one of: " + ", ".join(_KEYS))
            return None
        key = kinds[0]
        handler = getattr(self, f"_{key}")
        result: Condition | None = handler(node, path if key == "metric" else f"{path}.{key}", depth)
        return result

    def _extra(self, node: dict[str, Any], allowed: set[str], path: str) -> bool:
        extra = sorted(set(node) - allowed)
        for name in extra:
            self.fail(f"{path.rsplit('.', 1)[0]}.{name}", "unknown field")
        return not extra

    def _group(self, node: dict[str, Any], path: str, depth: int, key: str) -> list[Condition] | None:
        if not self._extra(node, {key}, path):
            return None
        items = node[key]
        if not isinstance(items, list) or not items:
            self.fail(path, "must be a non-empty list of conditions")
            return None
        parsed = [self.condition(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(items)]
        if any(p is None for p in parsed):
            return None
        return [p for p in parsed if p is not None]

    def _all(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        found = self._group(node, path, depth, "all")
        return AllOf(tuple(found)) if found is not None else None

    def _any(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        found = self._group(node, path, depth, "any")
        return AnyOf(tuple(found)) if found is not None else None

    def _not(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        if not self._extra(node, {"not"}, path):
            return None
        inner = self.condition(node["not"], path, depth + 1)
        return Not(inner) if inner is not None else None

    def _department(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        value = node["department"]
        if not self._extra(node, {"department"}, path):
            return None
        if not isinstance(value, str) or not _WORD.fullmatch(value):
            self.fail(path, "must be a line of business, a lower-case word such as billing")
            return None
        return InDepartment(value)

    def _interactions(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        try:
            data = _InteractionCondition().load(node)
        except ValidationError as exc:
            self._marshmallow(exc.messages, path.rsplit(".", 1)[0])
            return None
        flt = data["interactions"]
        if data["max"] is not None and data["max"] < data["min"]:
            self.fail(f"{path.rsplit('.', 1)[0]}.max", "must not be less than min")
            return None
        return InteractionCount(
            kinds=tuple(flt.get("kind", ())),
            channels=tuple(flt.get("channel", ())),
            direction=flt.get("direction"),
            departments=tuple(flt.get("department", ())),
            within_days=flt.get("within_days"),
            minimum=data["min"],
            maximum=data["max"],
        )

    def _consent(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        if not self._extra(node, {"consent"}, path):
            return None
        value = node["consent"]
        if value not in self.consent_purposes:
            self.fail(path, "must be a consent purpose: " + ", ".join(sorted(self.consent_purposes)))
            return None
        return ConsentHolds(str(value))

    def _metric(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        try:
            data = _MetricCondition().load(node)
        except ValidationError as exc:
            self._marshmallow(exc.messages, path)
            return None
        value = data["value"]
        if data["op"] == "between":
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(_is_number(v) for v in value)
                or value[0] > value[1]
            ):
                self.fail(f"{path}.value", "between needs [low, high] numbers with low <= high")
                return None
            numbers: tuple[float, ...] = (float(value[0]), float(value[1]))
        else:
            if not _is_number(value):
                self.fail(f"{path}.value", "must be a number")
                return None
            numbers = (float(value),)
        return MetricCompare(data["metric"], data["op"], numbers)

    def _names(
        self, node: dict[str, Any], path: str, key: str, allowed: frozenset[str]
    ) -> tuple[str, ...] | None:
        if not self._extra(node, {key}, path):
            return None
        value = node[key]
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.fail(path, "must be a name or a non-empty list of names")
            return None
        unknown = sorted(set(names) - allowed)
        if unknown:
            self.fail(path, f"unknown: {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
            return None
        return tuple(names)

    def _rfm_segment(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        names = self._names(node, path, "rfm_segment", self.rfm_segments)
        return InGroups("rfm_segment", names) if names is not None else None

    def _preferred_channel(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        names = self._names(node, path, "preferred_channel", frozenset(CHANNELS))
        return InGroups("preferred_channel", names) if names is not None else None

    def _country(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        if not self._extra(node, {"country"}, path):
            return None
        value = node["country"]
        codes = [value] if isinstance(value, str) else value
        if (
            not isinstance(codes, list)
            or not codes
            or not all(isinstance(c, str) and _COUNTRY.fullmatch(c) for c in codes)
        ):
            self.fail(path, "must be ISO 3166 alpha-2 codes in capitals, such as DE or GB")
            return None
        return InCountry(tuple(codes))

    def _age(self, node: dict[str, Any], path: str, depth: int) -> Condition | None:
        if not self._extra(node, {"age"}, path):
            return None
        if not isinstance(node["age"], dict):
            self.fail(path, "must be an object with min, max or both (whole years)")
            return None
        try:
            data = _AgeRange().load(node["age"])
        except ValidationError as exc:
            self._marshmallow(exc.messages, path)
            return None
        if data["min"] is None and data["max"] is None:
            self.fail(path, "give min, max or both")
            return None
        if data["min"] is not None and data["max"] is not None and data["min"] > data["max"]:
            self.fail(path, "min must not be greater than max")
            return None
        return AgeBetween(data["min"], data["max"])

    def _marshmallow(self, messages: Any, path: str) -> None:
        if isinstance(messages, dict):
            for key, inner in messages.items():
                self._marshmallow(inner, f"{path}.{key}" if key != "_schema" else path)
        elif isinstance(messages, list):
            for message in messages:
                if isinstance(message, str):
                    self.fail(path, message)
                else:
                    self._marshmallow(message, path)
        else:
            self.fail(path, str(messages))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def parse_definition(
    data: Any, *, consent_purposes: frozenset[str], rfm_segments: frozenset[str]
) -> SegmentDefinition:
    """Validate a whole definition; raises :class:`SegmentDefinitionError` listing every problem."""
    if not isinstance(data, dict):
        raise SegmentDefinitionError({"definition": ["must be a JSON object"]})
    parser = _Parser(consent_purposes, rfm_segments)
    try:
        top = _Top().load(data)
    except ValidationError as exc:
        parser._marshmallow(exc.messages, "")
        parser.errors = {key.lstrip("."): value for key, value in parser.errors.items()}
        top = {**{"schedule": None}, **(exc.valid_data if isinstance(exc.valid_data, dict) else {})}
    schedule = top.get("schedule")
    if schedule is not None:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(schedule)
        except ValueError:
            parser.fail("schedule", "must be a cron expression of five fields, such as 0 4 * * *")
    match = parser.condition(top["match"], "match", 1) if "match" in top else None
    if parser.errors or match is None:
        raise SegmentDefinitionError(parser.errors or {"match": ["is invalid"]})
    return SegmentDefinition(
        name=top["name"],
        description=top["description"],
        purpose=top["purpose"],
        schedule=schedule,
        match=match,
        raw=data,
    )
