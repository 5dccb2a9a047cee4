"""Golden profile: one surviving value per attribute for a resolved entity, and where it came from.

Identity resolution groups source records (sales CRM, support helpdesk, billing, marketing newsletter)
into one entity; the 360° profile must then show *one* value per attribute. Which value survives is a
business decision that differs per attribute and per company, so it is configured as data
(:class:`SurvivorshipRules`, defaults in ``survivorship.toml``) rather than coded:

* a **rule** per attribute is an ordered list of strategies — the first decides, later ones only break its
  ties — followed by a fixed final tie-break on ``record_id`` so the result never depends on the order in
  which members were loaded (the same entity must not flicker between two golden values across runs);
* **groups** (the address) survive as a unit from one record, because a street from one record and a
  postcode from another is an address where nobody lives;
* **quality flags** from ingestion (placeholder dates, junk phones, invalid postcodes) make a value lose
  against any unflagged one, whatever the strategies say: a known-bad value must never beat a good one
  just because it is newer or from a trusted source.

Every surviving value carries its provenance (record, source, the strategy that decided) and the
alternatives it beat, so a person can see — and challenge — the conflict instead of trusting a black box.

Pure domain code: no I/O except reading the packaged defaults, no clock, no database, no crypto. Member
values are personal data, so no ``repr`` and no error message here ever shows one.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Any, Final, NamedTuple, cast

from cdp.canonical import CANONICAL_FIELDS
from cdp.errors import CdpError
from cdp.identity.memo import name_match_key
from cdp.identity.normalize import NormalizationError

__all__ = [
    "CANONICAL_ATTRIBUTES",
    "DECIDERS",
    "GoldenProfile",
    "GoldenValue",
    "MemberRecord",
    "Provenance",
    "Rule",
    "Strategy",
    "SurvivorshipConfigError",
    "SurvivorshipRules",
    "golden_profile",
]

CANONICAL_ATTRIBUTES: Final[tuple[str, ...]] = CANONICAL_FIELDS
"""The canonical customer attributes (:mod:`cdp.canonical`). Other keys in :attr:`MemberRecord.values`
are ignored."""

ADDRESS_ATTRIBUTES: Final[tuple[str, ...]] = (
    "street_number",
    "address_line1",
    "address_line2",
    "city",
    "postcode",
    "state",
    "country",
)

_FALLBACK_GROUPS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({"address": ADDRESS_ATTRIBUTES})
"""Used when a configuration has no ``[groups]`` table at all: forgetting the table must not silently
allow mixed addresses. An explicit empty ``[groups]`` table is the way to opt out."""

_FALLBACK_QUALITY_FLAGS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "placeholder_date": frozenset({"date_of_birth"}),
        "implausible_date": frozenset({"date_of_birth"}),
        "junk_phone": frozenset({"phone"}),
        "invalid_postcode": frozenset({"postcode"}),
        "invalid_national_id": frozenset({"national_id"}),
    }
)
"""The soft flags :mod:`cdp.sources.prepare` sets and the attribute each one discredits; used when a
configuration has no ``[quality_flags]`` table."""

_NAME_KEY_ATTRIBUTES: Final = frozenset({"first_name", "last_name", "full_name", "city"})
"""Compared by :func:`name_match_key`, so ``MÜLLER``/``Müller`` and ``Dr. Smith``/``Smith`` agree."""

_PROSE_ATTRIBUTES: Final = frozenset(
    {"first_name", "last_name", "full_name", "address_line1", "address_line2", "city", "state"}
)
"""Attributes whose casing carries information: when several records hold the same surviving value, the
one written in mixed case is shown (``Müller`` rather than a legacy system's ``MÜLLER``)."""


class Strategy(StrEnum):
    """How a rule ranks competing values; see :data:`DECIDERS` for what else can decide."""

    MOST_RECENT = "most_recent"
    """Latest ``last_activity_at`` (falling back to ``updated_at``): people change email, phone, address,
    and the source that saw them last is most likely current."""
    MOST_TRUSTED_SOURCE = "most_trusted_source"
    """Earliest in the source priority list (unlisted sources rank last): billing verifies what it bills."""
    MOST_FREQUENT = "most_frequent"
    """Most records agree (compared by a normalized key): independent sources rarely share a typo."""
    MOST_COMPLETE = "most_complete"
    """Most informative value (``Jonathan`` over ``J.``; for a group, most filled attributes)."""


UNANIMOUS: Final = "unanimous"
QUALITY: Final = "quality"
TIE_BREAK: Final = "tie_break"
DECIDERS: Final[tuple[str, ...]] = (*(s.value for s in Strategy), UNANIMOUS, QUALITY, TIE_BREAK)
"""What :attr:`GoldenValue.strategy` can say: a strategy name, or ``unanimous`` (all members agree up to
normalization), ``quality`` (the others were flagged), ``tie_break`` (the strategies could not separate
the values and the lowest ``record_id`` won — a sign the rule needs another strategy)."""


class SurvivorshipConfigError(CdpError, ValueError):
    """The survivorship configuration is unusable. ``path`` names the offending key
    (``rules.email.strategies[1]``); messages name keys and types, never a data value."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def __reduce__(self) -> tuple[type[SurvivorshipConfigError], tuple[str, str]]:
        return (type(self), (self.path, self.problem))


# --------------------------------------------------------------------------------------------------------
# Members
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MemberRecord:
    """One source record of a resolved entity, as survivorship needs it.

    ``values`` maps canonical attributes to display values (a ``date`` for ``date_of_birth``); ``None`` and
    blank strings count as absent. ``quality`` holds ingestion's soft flags for the record; the rules map
    each flag to the attributes it discredits. Identity is ``record_id`` (compared and hashed by it), which
    also serves as the final tie-break, so it must be unique within an entity.
    """

    record_id: str
    source: str
    source_record_id: str
    updated_at: datetime
    last_activity_at: datetime | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    quality: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("record_id", "source", "source_record_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"MemberRecord.{name} must be a non-empty string")
        if not isinstance(self.updated_at, datetime):
            raise ValueError("MemberRecord.updated_at must be a datetime")
        if self.last_activity_at is not None and not isinstance(self.last_activity_at, datetime):
            raise ValueError("MemberRecord.last_activity_at must be a datetime or None")
        if not isinstance(self.values, Mapping) or not all(isinstance(k, str) for k in self.values):
            raise ValueError("MemberRecord.values must be a mapping with string keys")
        quality = frozenset(self.quality)
        if not all(isinstance(flag, str) for flag in quality):
            raise ValueError("MemberRecord.quality must hold strings")
        # A private, read-only copy: the caller mutating its dict later must not change a computed profile.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "quality", quality)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemberRecord) and other.record_id == self.record_id

    def __hash__(self) -> int:
        return hash(self.record_id)

    def __repr__(self) -> str:
        # Members end up in tracebacks, test output and debuggers: attribute names only, never values.
        present = [name for name in self.values if _present(self.values[name])]
        return (
            f"MemberRecord(record_id={self.record_id!r}, source={self.source!r}, "
            f"attributes={present}, quality={sorted(self.quality)})"
        )

    @property
    def activity(self) -> datetime:
        """When the person was last seen through this record: what :attr:`Strategy.MOST_RECENT` compares."""
        return self.last_activity_at if self.last_activity_at is not None else self.updated_at


def _present(value: Any) -> bool:
    if value is None:
        return False
    return not (isinstance(value, str) and not value.strip())


# --------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one attribute (or group) survives: strategies in order, the first decides, later ones break its
    ties. ``source_priority`` overrides the global order for this rule (trust can differ per attribute:
    billing for the address, the CRM for names)."""

    strategies: tuple[Strategy, ...]
    source_priority: tuple[str, ...] | None = None


_TOP_KEYS: Final = ("source_priority", "default_strategies", "groups", "quality_flags", "rules")
_RULE_KEYS: Final = ("strategies", "source_priority")
_FALLBACK_DEFAULT_STRATEGIES: Final = (Strategy.MOST_RECENT,)


@dataclass(frozen=True)
class SurvivorshipRules:
    """Validated survivorship configuration. Build with :meth:`from_toml`, :meth:`from_mapping` or
    :meth:`default`; every target (ungrouped attribute or group) has a rule, defaulted where omitted."""

    source_priority: tuple[str, ...]
    rules: Mapping[str, Rule]
    groups: Mapping[str, tuple[str, ...]]
    quality_flags: Mapping[str, frozenset[str]]

    @classmethod
    def default(cls) -> SurvivorshipRules:
        """The packaged defaults (``cdp/identity/survivorship.toml``), parsed once."""
        return _default_rules()

    @classmethod
    def from_toml(cls, text: str) -> SurvivorshipRules:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib reports positions, not content, so its message is safe to keep.
            raise SurvivorshipConfigError("", f"survivorship rules are not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SurvivorshipRules:
        """Validate a parsed configuration.

        Keys: ``source_priority`` (list of source names, most trusted first), ``default_strategies`` (rule
        for targets without one; ``["most_recent"]`` if omitted), ``[groups]`` (name → attributes that
        survive together; the address group if the table is omitted), ``[quality_flags]`` (flag →
        attributes it discredits; ingestion's flags if omitted) and ``[rules.<attribute or group>]`` with
        ``strategies`` and an optional ``source_priority``. Unknown keys are errors, because a typo that
        is silently ignored leaves the rule it meant to change in force.
        """
        root = _table(data, "")
        _no_unknown_keys(root, _TOP_KEYS, "")
        priority = _source_list(root.get("source_priority", []), "source_priority")
        groups = _parse_groups(root.get("groups"))
        grouped = {attr: name for name, attrs in groups.items() for attr in attrs}
        flags = _parse_quality_flags(root.get("quality_flags"))
        if "default_strategies" in root:
            default = Rule(_strategy_list(root["default_strategies"], "default_strategies"))
        else:
            default = Rule(_FALLBACK_DEFAULT_STRATEGIES)
        _check_priority(default, priority, "default_strategies")

        targets = [a for a in CANONICAL_ATTRIBUTES if a not in grouped] + list(groups)
        rules: dict[str, Rule] = {}
        for key, value in _table(root.get("rules", {}), "rules").items():
            path = f"rules.{key}"
            if key in grouped:
                raise SurvivorshipConfigError(
                    path, f"{_show(key)} is in group {_show(grouped[key])}; configure rules.{grouped[key]}"
                )
            if key not in targets:
                raise SurvivorshipConfigError(path, f"unknown attribute or group {_show(key)}")
            rules[key] = _parse_rule(value, path, priority)
        for target in targets:
            rules.setdefault(target, default)
        return cls(
            source_priority=priority,
            rules=MappingProxyType(rules),
            groups=MappingProxyType(groups),
            quality_flags=MappingProxyType(flags),
        )

    def group_of(self, attribute: str) -> str | None:
        """The group an attribute survives with, if any."""
        for name, attributes in self.groups.items():
            if attribute in attributes:
                return name
        return None

    def priority_for(self, target: str) -> tuple[str, ...]:
        rule = self.rules[target]
        return rule.source_priority if rule.source_priority is not None else self.source_priority


@functools.cache
def _default_rules() -> SurvivorshipRules:
    text = resources.files("cdp.identity").joinpath("survivorship.toml").read_text(encoding="utf-8")
    return SurvivorshipRules.from_toml(text)


def _show(name: object) -> str:
    """A configuration key or name for a message: quoted, and cut short so a pasted blob stays a line."""
    text = str(name)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _type(value: object) -> str:
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SurvivorshipConfigError(path, f"expected a table, got {_type(value)}")
    for key in value:
        if not isinstance(key, str):
            raise SurvivorshipConfigError(path, f"keys must be strings, got {_type(key)}")
    return value


def _no_unknown_keys(table: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            raise SurvivorshipConfigError(
                _join(path, key), f"unknown key (expected one of {', '.join(allowed)})"
            )


def _string_list(value: object, path: str, *, allow_empty: bool = True) -> list[str]:
    if not isinstance(value, list | tuple):
        raise SurvivorshipConfigError(path, f"expected a list of strings, got {_type(value)}")
    if not value and not allow_empty:
        raise SurvivorshipConfigError(path, "must not be empty")
    items: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            what = "an empty string" if isinstance(item, str) else _type(item)
            raise SurvivorshipConfigError(f"{path}[{index}]", f"expected a non-empty string, got {what}")
        if item in items:
            raise SurvivorshipConfigError(f"{path}[{index}]", f"duplicate entry {_show(item)}")
        items.append(item)
    return items


def _source_list(value: object, path: str) -> tuple[str, ...]:
    return tuple(_string_list(value, path))


def _strategy_list(value: object, path: str) -> tuple[Strategy, ...]:
    names = _string_list(value, path, allow_empty=False)
    known = {s.value: s for s in Strategy}
    for index, name in enumerate(names):
        if name not in known:
            raise SurvivorshipConfigError(f"{path}[{index}]", f"unknown strategy {_show(name)}")
    return tuple(known[name] for name in names)


def _check_priority(rule: Rule, priority: tuple[str, ...], path: str) -> None:
    effective = rule.source_priority if rule.source_priority is not None else priority
    if Strategy.MOST_TRUSTED_SOURCE in rule.strategies and not effective:
        index = rule.strategies.index(Strategy.MOST_TRUSTED_SOURCE)
        strategies_path = path if path == "default_strategies" else f"{path}.strategies"
        raise SurvivorshipConfigError(
            f"{strategies_path}[{index}]", "most_trusted_source needs a non-empty source_priority"
        )


def _parse_rule(value: object, path: str, priority: tuple[str, ...]) -> Rule:
    table = _table(value, path)
    _no_unknown_keys(table, _RULE_KEYS, path)
    if "strategies" not in table:
        raise SurvivorshipConfigError(f"{path}.strategies", "missing")
    strategies = _strategy_list(table["strategies"], f"{path}.strategies")
    own = (
        _source_list(table["source_priority"], f"{path}.source_priority")
        if "source_priority" in table
        else None
    )
    rule = Rule(strategies, own)
    _check_priority(rule, priority, path)
    return rule


def _attribute_list(value: object, path: str) -> tuple[str, ...]:
    names = _string_list(value, path, allow_empty=False)
    for index, name in enumerate(names):
        if name not in CANONICAL_ATTRIBUTES:
            raise SurvivorshipConfigError(f"{path}[{index}]", f"unknown attribute {_show(name)}")
    return tuple(names)


def _parse_groups(value: object) -> dict[str, tuple[str, ...]]:
    if value is None:
        return dict(_FALLBACK_GROUPS)
    groups: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for name, members in _table(value, "groups").items():
        path = f"groups.{name}"
        if name in CANONICAL_ATTRIBUTES:
            raise SurvivorshipConfigError(path, "a group must not be named like an attribute")
        attributes = _attribute_list(members, path)
        for index, attribute in enumerate(attributes):
            if attribute in owner:
                raise SurvivorshipConfigError(
                    f"{path}[{index}]", f"{_show(attribute)} is already in group {_show(owner[attribute])}"
                )
            owner[attribute] = name
        groups[name] = attributes
    return groups


def _parse_quality_flags(value: object) -> dict[str, frozenset[str]]:
    if value is None:
        return dict(_FALLBACK_QUALITY_FLAGS)
    return {
        flag: frozenset(_attribute_list(attributes, f"quality_flags.{flag}"))
        for flag, attributes in _table(value, "quality_flags").items()
    }


# --------------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """A value and the record it came from. ``support`` counts the members holding the same value (up to
    normalization); ``flags`` are the quality flags that discredit it on the cited record."""

    value: Any
    record_id: str
    source: str
    source_record_id: str
    support: int = 1
    flags: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Provenance(<redacted>, record_id={self.record_id!r}, source={self.source!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _jsonable(self.value),
            "record_id": self.record_id,
            "source": self.source,
            "source_record_id": self.source_record_id,
            "support": self.support,
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class GoldenValue:
    """The surviving value of one attribute (or, in :attr:`GoldenProfile.groups`, a whole group as a
    mapping), where it came from, what decided it, and the distinct values it beat, best first."""

    value: Any
    record_id: str
    source: str
    source_record_id: str
    strategy: str
    alternatives: tuple[Provenance, ...] = ()
    support: int = 1
    flags: tuple[str, ...] = ()
    group: str | None = None

    def __repr__(self) -> str:
        return (
            f"GoldenValue(<redacted>, record_id={self.record_id!r}, source={self.source!r}, "
            f"strategy={self.strategy!r}, alternatives={len(self.alternatives)})"
        )

    @property
    def provenance(self) -> Provenance:
        return Provenance(
            self.value, self.record_id, self.source, self.source_record_id, self.support, self.flags
        )

    def to_dict(self) -> dict[str, Any]:
        out = self.provenance.to_dict()
        out["strategy"] = self.strategy
        out["group"] = self.group
        out["alternatives"] = [alt.to_dict() for alt in self.alternatives]
        return out


@dataclass(frozen=True)
class GoldenProfile:
    """The 360° view of one entity: ``attributes`` in canonical order (absent when no member has one, or
    when its group survived from a record without it), ``groups`` with each group's surviving record as
    one mapping, ``sources`` that supplied at least one surviving value, ``record_ids`` of all members."""

    attributes: dict[str, GoldenValue]
    groups: dict[str, GoldenValue]
    sources: tuple[str, ...]
    record_ids: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"GoldenProfile(attributes={list(self.attributes)}, sources={list(self.sources)}, "
            f"members={len(self.record_ids)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (dates and datetimes as ISO-8601) for the API and the 360° page."""
        return {
            "attributes": {name: gv.to_dict() for name, gv in self.attributes.items()},
            "groups": {name: gv.to_dict() for name, gv in self.groups.items()},
            "sources": list(self.sources),
            "record_ids": list(self.record_ids),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------------------
# Survivorship
# --------------------------------------------------------------------------------------------------------


class _Candidate(NamedTuple):
    """One member's value of an attribute (or group) in the running: a tuple, since survivorship makes
    one per member and attribute on every profile read, and a frozen dataclass cost 2.6 times as much
    to build."""

    member: MemberRecord
    value: Any
    key: Hashable
    flags: tuple[str, ...]


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _instant(moment: datetime) -> int:
    """Integer microseconds since the epoch; naive datetimes are taken as UTC (cdp stores UTC), so mixing
    them with aware ones ranks instead of raising ``TypeError``. Integers, unlike float timestamps, keep
    microsecond ties exact."""
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _value_key(attribute: str, value: Any) -> Hashable:
    """What "the same value" means for counting and for telling alternatives apart."""
    if isinstance(value, str):
        if attribute in _NAME_KEY_ATTRIBUTES:
            try:
                return name_match_key(value)
            except NormalizationError:
                pass  # e.g. a name that is only a title: compare it as plain text
        return " ".join(value.casefold().split())
    if isinstance(value, datetime | date):
        return value.isoformat()
    try:
        hash(value)
    except TypeError:
        return repr(value)
    hashable: Hashable = value
    return hashable


def _informativeness(value: Any) -> tuple[int, int, int]:
    """(attributes present, letters and digits, length): ``Jonathan`` beats ``J.``, a full address beats
    a bare city, and punctuation or padding never makes a value look more complete."""
    if isinstance(value, Mapping):
        parts = [_informativeness(v) for v in value.values()]
        return (len(parts), sum(p[1] for p in parts), sum(p[2] for p in parts))
    text = (value if isinstance(value, str) else str(value)).strip()
    return (1, sum(map(str.isalnum, text)), len(text))


def _single_case(attribute: str, value: Any) -> bool:
    """True for prose written all upper or all lower case (legacy exports), which loses the display."""
    if attribute in _PROSE_ATTRIBUTES and isinstance(value, str):
        return value == value.upper() or value == value.lower()
    return False


def _casing_penalty(attributes: Sequence[str], value: Any) -> int:
    if isinstance(value, Mapping):
        return sum(_single_case(a, value[a]) for a in attributes if a in value)
    return sum(_single_case(a, value) for a in attributes)


Score = Callable[[_Candidate], Any]


def _tally(keys: Iterable[Hashable]) -> dict[Hashable, int]:
    """How often each key occurs (``Counter`` without its construction cost, which showed in every read's
    profile: an entity has a handful of members, and this runs a few times per attribute)."""
    counts: dict[Hashable, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def _scorer(strategy: Strategy, priority: Sequence[str], counts: Mapping[Hashable, int]) -> Score:
    """A sort key for one strategy: lower is better."""
    if strategy is Strategy.MOST_RECENT:
        return lambda c: -_instant(c.member.activity)
    if strategy is Strategy.MOST_TRUSTED_SOURCE:
        rank = {source: index for index, source in enumerate(priority)}
        return lambda c: rank.get(c.member.source, len(priority))
    if strategy is Strategy.MOST_FREQUENT:
        return lambda c: -counts.get(c.key, 0)
    return lambda c: tuple(-n for n in _informativeness(c.value))


def _survive(
    candidates: list[_Candidate], rule: Rule, priority: Sequence[str], attributes: Sequence[str]
) -> tuple[_Candidate, list[_Candidate], str]:
    """Rank the candidates and pick the winner; returns (winner, full ranking, decider).

    Flagged candidates are set aside whenever an unflagged one exists. The remaining pool is narrowed
    strategy by strategy; the first strategy after which only one distinct value (by key) is left is
    the decider. The ranking is total (``record_id`` last), so it is the same for any input order.
    """
    if len(candidates) == 1:  # what the ranking below concludes for one candidate, without ranking
        return candidates[0], candidates, UNANIMOUS
    clean = [c for c in candidates if not c.flags]
    eligible = clean or candidates
    counts = _tally(c.key for c in eligible)
    scorers = [_scorer(s, priority, counts) for s in rule.strategies]
    set_aside = bool(clean) and len(clean) < len(candidates)
    # Every candidate scored once, by every strategy: ranking and narrowing both read these.
    scores = {id(c): tuple(score(c) for score in scorers) for c in candidates}

    def rank(c: _Candidate) -> tuple[Any, ...]:
        return (set_aside and bool(c.flags), *scores[id(c)], c.member.record_id)

    ranked = sorted(candidates, key=rank)

    pool = eligible
    decider = TIE_BREAK
    if len({c.key for c in pool}) == 1:
        decider = UNANIMOUS if len({c.key for c in candidates}) == 1 else QUALITY
    else:
        for position, strategy in enumerate(rule.strategies):
            best = min(scores[id(c)][position] for c in pool)
            pool = [c for c in pool if scores[id(c)][position] == best]
            if len({c.key for c in pool}) == 1:
                decider = strategy.value
                break

    # The value is decided; among the records holding it, show a mixed-case spelling if there is one.
    best_key = ranked[0].key
    holders = [c for c in ranked if c.key == best_key and not (set_aside and c.flags)]
    winner = min(holders, key=lambda c: _casing_penalty(attributes, c.value))
    return winner, ranked, decider


def _alternatives(
    ranked: Sequence[_Candidate],
    winner_key: Hashable,
    key_of: Callable[[_Candidate], Hashable | None],
    value_of: Callable[[_Candidate], Any],
    flags_of: Callable[[_Candidate], tuple[str, ...]],
) -> tuple[Provenance, ...]:
    """One entry per other distinct value, citing its best-ranked holder, in ranking order."""
    support = _tally(k for c in ranked if (k := key_of(c)) is not None)
    seen: set[Hashable] = {winner_key}
    out: list[Provenance] = []
    for c in ranked:
        key = key_of(c)
        if key is None or key in seen:
            continue
        seen.add(key)
        m = c.member
        out.append(
            Provenance(value_of(c), m.record_id, m.source, m.source_record_id, support[key], flags_of(c))
        )
    return tuple(out)


def _flags_for(member: MemberRecord, attributes: Iterable[str], rules: SurvivorshipRules) -> tuple[str, ...]:
    # A flag only discredits an attribute the record actually has: an ``invalid_postcode`` flag must not
    # drag down an address candidate that holds no postcode.
    if not member.quality:
        return ()
    wanted = {a for a in attributes if _present(member.values.get(a))}
    return tuple(sorted(f for f in member.quality if rules.quality_flags.get(f, frozenset()) & wanted))


def golden_profile(
    members: Sequence[MemberRecord], rules: SurvivorshipRules, *, alternatives: bool = True
) -> GoldenProfile:
    """Choose one value per attribute for an entity's members, with provenance and alternatives.

    ``alternatives=False`` leaves every :attr:`GoldenValue.alternatives` empty (the same winners,
    strategies and support): for the profile read, which discloses the surviving values only and was
    spending an eighth of survivorship's time listing the values they beat.

    Raises ``ValueError`` for duplicate ``record_id``s: the final tie-break relies on them being unique,
    and duplicates would make the result depend on input order.
    """
    ids = [m.record_id for m in members]
    if len(set(ids)) != len(ids):
        raise ValueError("member record_ids must be unique within an entity")

    attributes: dict[str, GoldenValue] = {}
    groups: dict[str, GoldenValue] = {}
    for attribute in CANONICAL_ATTRIBUTES:
        group = rules.group_of(attribute)
        if group is None:
            gv = _single(attribute, members, rules, alternatives)
            if gv is not None:
                attributes[attribute] = gv
        elif group not in groups:
            result = _group(group, members, rules, alternatives)
            if result is not None:
                groups[group], parts = result
                attributes.update(parts)
    # Keep canonical order whatever order the groups were resolved in.
    attributes = {a: attributes[a] for a in CANONICAL_ATTRIBUTES if a in attributes}
    sources = tuple(sorted({gv.source for gv in attributes.values()}))
    return GoldenProfile(attributes, groups, sources, tuple(sorted(ids)))


def _single(
    attribute: str, members: Sequence[MemberRecord], rules: SurvivorshipRules, alternatives: bool
) -> GoldenValue | None:
    candidates = [
        _Candidate(m, v, _value_key(attribute, v), _flags_for(m, (attribute,), rules))
        for m in members
        if _present(v := m.values.get(attribute))
    ]
    if not candidates:
        return None
    winner, ranked, decider = _survive(
        candidates, rules.rules[attribute], rules.priority_for(attribute), (attribute,)
    )
    m = winner.member
    return GoldenValue(
        value=winner.value,
        record_id=m.record_id,
        source=m.source,
        source_record_id=m.source_record_id,
        strategy=decider,
        alternatives=_alternatives(ranked, winner.key, lambda c: c.key, lambda c: c.value, lambda c: c.flags)
        if alternatives
        else (),
        support=sum(c.key == winner.key for c in candidates),
        flags=winner.flags,
    )


def _group(
    name: str, members: Sequence[MemberRecord], rules: SurvivorshipRules, alternatives: bool
) -> tuple[GoldenValue, dict[str, GoldenValue]] | None:
    attrs = rules.groups[name]
    candidates: list[_Candidate] = []
    for m in members:
        present = {a: m.values[a] for a in attrs if a in m.values and _present(m.values[a])}
        if present:
            group_key = tuple((a, _value_key(a, v)) for a, v in present.items())
            candidates.append(
                _Candidate(m, MappingProxyType(present), group_key, _flags_for(m, attrs, rules))
            )
    if not candidates:
        return None
    winner, ranked, decider = _survive(candidates, rules.rules[name], rules.priority_for(name), attrs)
    # Each part's key, read back from the group key computed above instead of normalized again.
    part_keys: dict[int, dict[str, Hashable]] = {
        id(c): dict(cast(tuple[tuple[str, Hashable], ...], c.key)) for c in candidates
    }
    m = winner.member
    whole = GoldenValue(
        value=winner.value,
        record_id=m.record_id,
        source=m.source,
        source_record_id=m.source_record_id,
        strategy=decider,
        alternatives=_alternatives(
            ranked, winner.key, lambda c: c.key, lambda c: dict(c.value), lambda c: c.flags
        )
        if alternatives
        else (),
        support=sum(c.key == winner.key for c in candidates),
        flags=winner.flags,
        group=name,
    )
    parts: dict[str, GoldenValue] = {}
    for attribute in attrs:
        if attribute not in winner.value:
            continue
        value = winner.value[attribute]
        key = part_keys[id(winner)][attribute]

        def key_of(c: _Candidate, a: str = attribute) -> Hashable | None:
            return part_keys[id(c)].get(a)

        def value_of(c: _Candidate, a: str = attribute) -> Any:
            return c.value[a]

        def flags_of(c: _Candidate, a: str = attribute) -> tuple[str, ...]:
            return _flags_for(c.member, (a,), rules)

        parts[attribute] = GoldenValue(
            value=value,
            record_id=m.record_id,
            source=m.source,
            source_record_id=m.source_record_id,
            strategy=decider,
            alternatives=_alternatives(ranked, key, key_of, value_of, flags_of) if alternatives else (),
            support=sum(key_of(c) == key for c in candidates),
            flags=_flags_for(m, (attribute,), rules),
            group=name,
        )
    return whole, parts
