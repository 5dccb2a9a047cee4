"""Matching configuration as data: blocking rules, comparisons and their levels, training, clustering,
merge protection.

Like Splink's settings, the whole model is declared in one TOML document (the default is
``cdp/identity/default_settings.toml``), so a data steward can read, diff and review how customers are
matched without reading code. Loading validates everything and names the exact key that is wrong
(``comparisons[2].levels[1].threshold: must be a number between 0 and 1``); no value from the data is
ever echoed, only configuration.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from cdp.errors import CdpError
from cdp.identity.features import MATCH_COLUMNS

DERIVED_COLUMNS: Final = {
    "first_initial": "first_name",
    "birth_year": "date_of_birth",
    "birth_month_day": "date_of_birth",
    "first_name_phonetic": "first_name",
    "last_name_phonetic": "last_name",
    "email_local": "email",
    "postcode_prefix": "postcode",
}
"""Columns computed from a base column (once per distinct value), usable in blocking rules."""

PAIR_DERIVED_COLUMNS: Final = {"name_set": ("first_name", "last_name")}
"""Columns computed from two base columns: ``name_set`` is the given and family name as an unordered
pair, so "Oliver Rickett" and "Rickett Oliver" (swapped by a form or a legacy system) share a key."""

BLOCKING_COLUMNS: Final = (
    frozenset(MATCH_COLUMNS) | frozenset(DERIVED_COLUMNS) | frozenset(PAIR_DERIVED_COLUMNS)
)

LEVEL_KINDS: Final = {
    "exact": "values equal",
    "nickname": "given names compatible (nickname, middle name)",
    "phonetic": "same metaphone code",
    "initial": "one is an initial of the other (J. / John)",
    "jaro_winkler": "Jaro-Winkler similarity at least threshold",
    "damerau_levenshtein": "Damerau-Levenshtein distance at most threshold",
    "levenshtein": "Levenshtein distance at most threshold",
    "date_transposed": "day and month exchanged",
    "date_within_days": "dates at most threshold days apart",
    "swapped": "value equals the other record's `with` column and vice versa",
}
_NEEDS_THRESHOLD: Final = frozenset(
    {"jaro_winkler", "damerau_levenshtein", "levenshtein", "date_within_days"}
)


class SettingsError(CdpError):
    """The matching settings are malformed; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class Level:
    kind: str
    threshold: float | None = None
    tf: bool = False
    other: str | None = None
    column: str | None = None
    """Test this level on another column than the comparison's own — e.g. an address comparison whose
    levels run from "same dwelling" (``street+street_number+postcode``) down to "same postcode", so that
    correlated attributes count once instead of three times."""

    @property
    def label(self) -> str:
        label = self._label()
        return f"{label} on {self.column.replace('+', ' + ')}" if self.column else label

    def _label(self) -> str:
        if self.kind == "exact":
            return "exact match" + (" (term-frequency adjusted)" if self.tf else "")
        if self.kind == "jaro_winkler":
            return f"Jaro-Winkler >= {self.threshold:g}"
        if self.kind in ("damerau_levenshtein", "levenshtein"):
            name = "Damerau-Levenshtein" if self.kind == "damerau_levenshtein" else "Levenshtein"
            return f"{name} <= {self.threshold:g}"
        if self.kind == "date_within_days":
            return f"within {self.threshold:g} days"
        if self.kind == "swapped":
            return f"swapped with {self.other}"
        return LEVEL_KINDS[self.kind]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One attribute's comparison: ordered levels from strongest agreement down; null and 'else' implied.

    A pair gets the first level it satisfies; a pair where either side is null gets the null level
    (weight 0: missing data is no evidence either way); anything else is the 'else' (disagreement) level.
    """

    name: str
    column: str
    levels: tuple[Level, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column this comparison reads; it has no evidence (null) only when, for each of them,
        one side is missing."""
        extra = [level.column for level in self.levels if level.column and level.column != self.column]
        return tuple(dict.fromkeys([self.column, *extra]))

    def level_column(self, level: Level) -> str:
        return level.column or self.column

    @property
    def level_count(self) -> int:
        """Non-null levels, the 'else' level included."""
        return len(self.levels) + 1

    def level_label(self, gamma: int) -> str:
        if gamma < 0:
            return "null (no evidence)"
        if gamma == 0:
            return "different"
        return self.levels[len(self.levels) - gamma].label


@dataclass(frozen=True, slots=True)
class BlockingRule:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Training:
    sessions: tuple[tuple[str, ...], ...] = ()
    """EM training sessions, Splink-style: each runs on the candidate pairs agreeing on these columns and
    learns m for the comparisons that do not use them. Empty: one session per blocking rule."""
    u_sample_pairs: int = 100_000
    max_iterations: int = 50
    tolerance: float = 1e-5
    seed: int = 42
    m_floor: float = 1e-4
    tf_floor: float = 1e-6


@dataclass(frozen=True, slots=True)
class Clustering:
    threshold: float = 12.0
    """Minimum match weight (log2 Bayes factor incl. prior) for a pair to link."""
    contradiction_weight: float = -8.0
    """Two records scored at or below this weight never end up in one entity, whatever chain joins them."""
    review_band: float = 4.0
    """Pairs within this many bits of the threshold are listed for manual review."""


@dataclass(frozen=True, slots=True)
class MergeProtection:
    junk_values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    junk_patterns: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    limits: Mapping[str, int] = field(default_factory=dict)
    """At most this many distinct values of an identifier per entity (``national_id = 1``)."""
    limit_override_weight: float | None = None
    """A link at least this strong (bits) may exceed an identifier limit — recorded as an override. Real
    data has people whose national id was mistyped beyond recognition in one system; strong agreement on
    everything else outweighs the belief that one person has one id. ``None``: limits are absolute."""
    contradiction_override_weight: float | None = None
    """A contradicted pair (see ``contradictions``) still links at or above this weight."""
    contradictions: tuple[Mapping[str, frozenset[int]], ...] = ()
    """Rules that mark two records as different people (unless the link is stronger than
    ``contradiction_override_weight``): comparison name -> the gammas it must be at (0 = 'different',
    -1 = null), all of them at once. The household rule — given names differ and no personal identifier
    agrees — stops partners and children, who share surname, address and landline, from adding up to one
    person."""
    contradiction_overrides: tuple[float | None, ...] = ()
    """Per rule (its table's ``override_weight``), else ``contradiction_override_weight`` applies."""
    priority: tuple[str, ...] = ()
    """Identifiers whose exact agreement links first: a link through a higher-priority identifier wins
    when two links would together break a limit."""

    def is_junk(self, column: str, value: str) -> bool:
        if value in self.junk_values.get(column, ()) or value in self.junk_values.get("*", ()):
            return True
        patterns = (*self.junk_patterns.get(column, ()), *self.junk_patterns.get("*", ()))
        return any(p.search(value) for p in patterns)


@dataclass(frozen=True, slots=True)
class MatchSettings:
    blocking: tuple[BlockingRule, ...]
    comparisons: tuple[Comparison, ...]
    training: Training = Training()
    clustering: Clustering = Clustering()
    protection: MergeProtection = MergeProtection()
    max_block_size: int = 1000
    """Blocks larger than this generate no pairs (and are reported): a key shared by thousands of
    records is junk or says nothing, and would cost quadratic time."""

    @classmethod
    def default(cls) -> MatchSettings:
        return cls.from_toml(cls.default_text())

    @staticmethod
    def default_text() -> str:
        """The default settings document (TOML), e.g. as a starting point for a custom file."""
        return resources.files("cdp.identity").joinpath("default_settings.toml").read_text("utf-8")

    @classmethod
    def from_file(cls, path: Path) -> MatchSettings:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {path.name}: {exc.strerror}") from None
        return cls.from_toml(text)

    @classmethod
    def from_toml(cls, text: str) -> MatchSettings:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings are not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MatchSettings:
        return _parse(data)

    def comparison(self, name: str) -> Comparison:
        for comparison in self.comparisons:
            if comparison.name == name:
                return comparison
        raise KeyError(name)


# ------------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------------


def _fail(path: str, message: str) -> SettingsError:
    return SettingsError(f"{path}: {message}")


def _table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "must be a table")
    return value


def _array(value: Any, path: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(path, "must be an array")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(f"{path}.{key}" if path else key, "unknown key")


def _number(value: Any, path: str, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, "must be a number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low:g} and {high:g}"
            if low is not None and high is not None
            else (f"at least {low:g}" if low is not None else f"at most {high:g}")
        )
        raise _fail(path, f"must be {bounds}")
    return float(value)


def _integer(value: Any, path: str, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, "must be an integer")
    if value < low:
        raise _fail(path, f"must be at least {low}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, "must be a non-empty string")
    return value


def _column(value: Any, path: str, allowed: frozenset[str] | tuple[str, ...]) -> str:
    name = _string(value, path)
    if name not in allowed:
        raise _fail(path, f"unknown column {name!r} (expected one of: {', '.join(sorted(allowed))})")
    return name


def _composite_column(value: Any, path: str) -> str:
    """A column, or several joined with '+' (``street+street_number+postcode``)."""
    name = _string(value, path)
    for part in name.split("+"):
        if part not in BLOCKING_COLUMNS:
            expected = ", ".join(sorted(BLOCKING_COLUMNS))
            raise _fail(
                path, f"unknown column {part!r} (expected one of: {expected}, or several joined by '+')"
            )
    return name


def _level(raw: Any, path: str, column: str) -> Level:
    table = _table(raw, path)
    _only(table, {"kind", "threshold", "tf", "with", "column"}, path)
    override = None
    if "column" in table:
        override = _composite_column(table["column"], f"{path}.column")
        column = override
    kind = _string(table.get("kind"), f"{path}.kind")
    if kind not in LEVEL_KINDS:
        raise _fail(
            f"{path}.kind", f"unknown level kind {kind!r} (expected one of: {', '.join(LEVEL_KINDS)})"
        )
    threshold = None
    if kind in _NEEDS_THRESHOLD:
        if "threshold" not in table:
            raise _fail(f"{path}.threshold", f"required for kind {kind!r}")
        if kind == "jaro_winkler":
            threshold = _number(table["threshold"], f"{path}.threshold", low=0, high=1)
        else:
            threshold = float(_integer(table["threshold"], f"{path}.threshold", low=0))
    elif "threshold" in table:
        raise _fail(f"{path}.threshold", f"not used by kind {kind!r}")
    tf = table.get("tf", False)
    if not isinstance(tf, bool):
        raise _fail(f"{path}.tf", "must be true or false")
    if tf and kind != "exact":
        raise _fail(f"{path}.tf", "term-frequency adjustment applies to 'exact' levels only")
    if kind in ("swapped", "nickname", "phonetic", "initial", "date_transposed", "date_within_days") and (
        "+" in column
    ):
        raise _fail(f"{path}.kind", f"{kind!r} does not apply to a composite column")
    other = None
    if kind == "swapped":
        other = _column(table.get("with"), f"{path}.with", MATCH_COLUMNS)
        if other == column:
            raise _fail(f"{path}.with", "must name another column")
    elif "with" in table:
        raise _fail(f"{path}.with", f"not used by kind {kind!r}")
    if kind in ("date_transposed", "date_within_days") and column != "date_of_birth":
        raise _fail(f"{path}.kind", f"{kind!r} applies to date_of_birth only")
    if kind in ("nickname",) and column != "first_name":
        raise _fail(f"{path}.kind", "'nickname' applies to first_name only")
    return Level(kind=kind, threshold=threshold, tf=tf, other=other, column=override)


def _comparison(raw: Any, path: str) -> Comparison:
    table = _table(raw, path)
    _only(table, {"name", "column", "levels"}, path)
    column = _column(table.get("column"), f"{path}.column", MATCH_COLUMNS)
    name = _string(table.get("name", column), f"{path}.name")
    levels = _array(table.get("levels"), f"{path}.levels")
    if not levels:
        raise _fail(f"{path}.levels", "needs at least one level")
    parsed = tuple(_level(level, f"{path}.levels[{i}]", column) for i, level in enumerate(levels))
    if len(parsed) > 8:
        raise _fail(f"{path}.levels", "at most 8 levels")
    return Comparison(name=name, column=column, levels=parsed)


def _blocking(raw: Any, path: str) -> BlockingRule:
    table = _table(raw, path)
    _only(table, {"name", "columns"}, path)
    columns = _array(table.get("columns"), f"{path}.columns")
    if not columns:
        raise _fail(f"{path}.columns", "needs at least one column")
    parsed = tuple(_column(c, f"{path}.columns[{i}]", BLOCKING_COLUMNS) for i, c in enumerate(columns))
    name = _string(table.get("name", "+".join(parsed)), f"{path}.name")
    return BlockingRule(name=name, columns=parsed)


def _protection(raw: Any, path: str) -> MergeProtection:
    table = _table(raw, path)
    _only(
        table,
        {
            "junk_values",
            "junk_patterns",
            "limits",
            "priority",
            "limit_override_weight",
            "contradictions",
            "contradiction_override_weight",
        },
        path,
    )
    columns = (*MATCH_COLUMNS, "*")
    junk_values: dict[str, frozenset[str]] = {}
    for column, values in _table(table.get("junk_values", {}), f"{path}.junk_values").items():
        key = f"{path}.junk_values.{column}"
        _column(column, key, columns)
        junk_values[column] = frozenset(_string(v, f"{key}[{i}]") for i, v in enumerate(_array(values, key)))
    junk_patterns: dict[str, tuple[re.Pattern[str], ...]] = {}
    for column, patterns in _table(table.get("junk_patterns", {}), f"{path}.junk_patterns").items():
        key = f"{path}.junk_patterns.{column}"
        _column(column, key, columns)
        compiled = []
        for i, pattern in enumerate(_array(patterns, key)):
            try:
                compiled.append(re.compile(_string(pattern, f"{key}[{i}]")))
            except re.error as exc:
                raise _fail(f"{key}[{i}]", f"not a valid regular expression ({exc.msg})") from None
        junk_patterns[column] = tuple(compiled)
    limits = {
        _column(column, f"{path}.limits.{column}", (*MATCH_COLUMNS, "source")): _integer(
            value, f"{path}.limits.{column}", low=1
        )
        for column, value in _table(table.get("limits", {}), f"{path}.limits").items()
    }
    priority = tuple(
        _column(c, f"{path}.priority[{i}]", MATCH_COLUMNS)
        for i, c in enumerate(_array(table.get("priority", []), f"{path}.priority"))
    )
    contradictions: list[Mapping[str, frozenset[int]]] = []
    contradiction_overrides: list[float | None] = []
    gamma_of = {"different": 0, "null": -1}
    for i, rule in enumerate(_array(table.get("contradictions", []), f"{path}.contradictions")):
        key = f"{path}.contradictions[{i}]"
        conditions = _table(rule, key)
        if not conditions:
            raise _fail(key, "needs at least one comparison")
        parsed: dict[str, frozenset[int]] = {}
        rule_override = None
        for name, states in conditions.items():
            if name == "override_weight":
                rule_override = _number(states, f"{key}.override_weight")
                continue
            listed = _array(states, f"{key}.{name}")
            if not listed or any(state not in gamma_of for state in listed):
                raise _fail(f"{key}.{name}", "must list 'different' and/or 'null'")
            parsed[name] = frozenset(gamma_of[state] for state in listed)
        if not parsed:
            raise _fail(key, "needs at least one comparison")
        contradictions.append(parsed)
        contradiction_overrides.append(rule_override)
    override = table.get("limit_override_weight")
    contradiction_override = table.get("contradiction_override_weight")
    return MergeProtection(
        junk_values=junk_values,
        junk_patterns=junk_patterns,
        limits=limits,
        contradictions=tuple(contradictions),
        contradiction_overrides=tuple(contradiction_overrides),
        contradiction_override_weight=None
        if contradiction_override is None
        else _number(contradiction_override, f"{path}.contradiction_override_weight"),
        limit_override_weight=None
        if override is None
        else _number(override, f"{path}.limit_override_weight"),
        priority=priority,
    )


def _parse(data: Mapping[str, Any]) -> MatchSettings:
    _only(
        data, {"blocking", "comparisons", "training", "clustering", "merge_protection", "max_block_size"}, ""
    )
    blocking = tuple(
        _blocking(rule, f"blocking[{i}]") for i, rule in enumerate(_array(data.get("blocking"), "blocking"))
    )
    if not blocking:
        raise _fail("blocking", "needs at least one rule")
    comparisons = tuple(
        _comparison(c, f"comparisons[{i}]")
        for i, c in enumerate(_array(data.get("comparisons"), "comparisons"))
    )
    if not comparisons:
        raise _fail("comparisons", "needs at least one comparison")
    names = [c.name for c in comparisons]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _fail(f"comparisons[{i}].name", f"duplicate comparison name {name!r}")
    for i, comparison in enumerate(comparisons):
        for j, level in enumerate(comparison.levels):
            if level.kind == "swapped" and not any(c.column == level.other for c in comparisons):
                raise _fail(f"comparisons[{i}].levels[{j}].with", "no comparison uses that column")
    protection = _protection(data.get("merge_protection", {}), "merge_protection")
    for i, combination in enumerate(protection.contradictions):
        for name in combination:
            if name not in names:
                raise _fail(f"merge_protection.contradictions[{i}].{name}", "no comparison of that name")

    training_raw = _table(data.get("training", {}), "training")
    _only(
        training_raw,
        {"sessions", "u_sample_pairs", "max_iterations", "tolerance", "seed", "m_floor", "tf_floor"},
        "training",
    )
    defaults = Training()
    sessions = []
    for i, session in enumerate(_array(training_raw.get("sessions", []), "training.sessions")):
        key = f"training.sessions[{i}]"
        columns = _array(session, key)
        if not columns:
            raise _fail(key, "needs at least one column")
        sessions.append(tuple(_composite_column(c, f"{key}[{j}]") for j, c in enumerate(columns)))
    training = Training(
        sessions=tuple(sessions),
        u_sample_pairs=_integer(
            training_raw.get("u_sample_pairs", defaults.u_sample_pairs), "training.u_sample_pairs", low=1000
        ),
        max_iterations=_integer(
            training_raw.get("max_iterations", defaults.max_iterations), "training.max_iterations", low=1
        ),
        tolerance=_number(training_raw.get("tolerance", defaults.tolerance), "training.tolerance", low=0),
        seed=_integer(training_raw.get("seed", defaults.seed), "training.seed"),
        m_floor=_number(training_raw.get("m_floor", defaults.m_floor), "training.m_floor", low=0, high=0.5),
        tf_floor=_number(training_raw.get("tf_floor", defaults.tf_floor), "training.tf_floor", low=0, high=1),
    )
    clustering_raw = _table(data.get("clustering", {}), "clustering")
    _only(clustering_raw, {"threshold", "contradiction_weight", "review_band"}, "clustering")
    cdefaults = Clustering()
    clustering = Clustering(
        threshold=_number(clustering_raw.get("threshold", cdefaults.threshold), "clustering.threshold"),
        contradiction_weight=_number(
            clustering_raw.get("contradiction_weight", cdefaults.contradiction_weight),
            "clustering.contradiction_weight",
        ),
        review_band=_number(
            clustering_raw.get("review_band", cdefaults.review_band), "clustering.review_band", low=0
        ),
    )
    if clustering.contradiction_weight >= clustering.threshold:
        raise _fail("clustering.contradiction_weight", "must be below clustering.threshold")
    max_block = _integer(data.get("max_block_size", 1000), "max_block_size", low=2)
    return MatchSettings(
        blocking=blocking,
        comparisons=comparisons,
        training=training,
        clustering=clustering,
        protection=protection,
        max_block_size=max_block,
    )
