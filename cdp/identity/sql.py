"""The batch pipeline as SQL over tables: blocking, comparison vectors, Fellegi-Sunter scoring.

The vectorized NumPy pipeline (:mod:`cdp.identity.blocking`, :mod:`~cdp.identity.comparisons`,
:mod:`~cdp.identity.fellegi_sunter`) is fastest on one machine. Past one machine, the same stages have to
run on an existing distributed engine — Spark SQL, as Splink does — and an engine runs SQL, not NumPy.
This module compiles :class:`~cdp.identity.settings.MatchSettings` (and a trained
:class:`~cdp.identity.fellegi_sunter.MatchModel`) into portable SQL text with the *same* semantics, and
:func:`run_duckdb` proves it: the test suite checks that DuckDB (and SQLite) running this SQL reproduce
the NumPy engine's pairs, rule attribution, gammas and weights exactly.

Tables the SQL expects (names are parameters):

``records_base``
    ``row_id`` (integer, unique), ``source``, one column per :data:`~cdp.identity.features.MATCH_COLUMNS`
    entry (normalized strings or NULL), and the phonetic blocking codes
    :data:`PRECOMPUTED_COLUMNS` (metaphone is not SQL; compute them where the features are computed).
``records``
    ``records_base`` plus the derived blocking columns — :func:`derived_columns_sql` is the view.
``pairs``
    :func:`blocking_sql`'s output: ``left_row, right_row, rule, satisfied``.
``comparison_vectors``
    :func:`comparison_sql`'s output: ``pairs`` plus one ``gamma_<comparison name>`` per comparison.
``term_frequencies``
    ``column_name, value, frequency`` — :func:`term_frequencies_sql`'s output.

Portability: the SQL uses CTEs, inner and left joins, ``GROUP BY``, ``UNION ALL``, an uncorrelated scalar
subquery, ``CASE``, ``COALESCE``, ``NULLIF``, ``SUBSTR``, ``INSTR``, ``LENGTH``, ``ABS``, ``||`` and
``CAST`` only — all of which DuckDB, Spark SQL and SQLite share (the tests run it on DuckDB and SQLite).
What differs between engines is confined to the function names in :class:`SqlFunctions`: the string
metrics (no engine has rapidfuzz's exact Jaro-Winkler, nor cdp's nickname table) are user-defined
functions everywhere, and :func:`python_udfs` supplies Python implementations that are exactly the
engine's.

Safety: no value from the data is ever formatted into SQL text. Only identifiers that settings
validation already restricted (column names), comparison names checked against an identifier pattern,
and numeric model constants are; values travel as table rows.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein

from cdp.identity import normalize as norm
from cdp.identity.comparisons import EQUAL_SATISFIES, NICKNAME_KEY_CAP
from cdp.identity.features import MATCH_COLUMNS
from cdp.identity.settings import (
    BLOCKING_COLUMNS,
    DERIVED_COLUMNS,
    PAIR_DERIVED_COLUMNS,
    Comparison,
    Level,
    MatchSettings,
    SettingsError,
)

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

    from cdp.identity.fellegi_sunter import MatchModel
    from cdp.identity.table import RecordTable

__all__ = [
    "PRECOMPUTED_COLUMNS",
    "UDF_FUNCTIONS",
    "SqlFunctions",
    "SqlRun",
    "Udf",
    "blocking_sql",
    "comparison_sql",
    "derived_columns_sql",
    "frozen_term_frequencies",
    "load_duckdb",
    "patterns_sql",
    "python_udfs",
    "records_columns",
    "run_duckdb",
    "scoring_sql",
    "term_frequencies_sql",
]

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")

_NICKNAME_KEY_CAP: Final = NICKNAME_KEY_CAP
"""A nickname key held by more distinct given names than this is no evidence — the same cap as
``cdp.identity.comparisons._nickname_pairs`` (keep the two in step)."""

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

_SEPARATOR: Final = "\x1f"
"""Joins a composite column's parts into one value, as ``cdp.identity.table._composite`` does."""

_DERIVED_SQL: Final[dict[str, str]] = {
    # Same results as cdp.identity.table._DERIVE: Python slices → SUBSTR, "" → NULL.
    "first_initial": "NULLIF(SUBSTR({c}, 1, 1), '')",
    "birth_year": "NULLIF(SUBSTR({c}, 1, 4), '')",
    "birth_month_day": "NULLIF(SUBSTR({c}, 6), '')",
    "email_local": "NULLIF(CASE WHEN INSTR({c}, '@') > 0 THEN SUBSTR({c}, 1, INSTR({c}, '@') - 1) "
    "ELSE {c} END, '')",
    "postcode_prefix": "NULLIF(SUBSTR({c}, 1, 3), '')",
}

PRECOMPUTED_COLUMNS: Final = ("first_name_phonetic", "last_name_phonetic")
"""Derived blocking columns SQL cannot compute (metaphone): ``records_base`` must carry them."""


# ------------------------------------------------------------------------------------------------------
# Engine dialect: function names
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SqlFunctions:
    """Names of the SQL functions the compiled SQL calls — the only thing that differs between engines.

    Each is a scalar function; NULL in gives NULL out (and NULL never satisfies a level):

    * ``jaro_winkler(a, b) -> DOUBLE`` — rapidfuzz ``JaroWinkler.normalized_similarity``;
    * ``damerau_levenshtein(a, b) -> INTEGER``, ``levenshtein(a, b) -> INTEGER`` — edit distances;
    * ``nickname_compatible(a, b) -> BOOLEAN`` — the given names' nickname key sets intersect;
    * ``metaphone(a) -> VARCHAR`` — :func:`cdp.identity.normalize.phonetic_key`, NULL when it has none;
    * ``date_days(a) -> INTEGER`` — days since 1970-01-01 of an ISO date, NULL when not a valid date;
    * ``date_transposed_days(a) -> INTEGER`` — ``date_days`` of the date with day and month exchanged
      (NULL when that is no date): transposition becomes an equality an engine can evaluate anywhere;
    * ``log2(x) -> DOUBLE`` — built in on DuckDB and Spark; SQLite may need it registered.

    On Spark the metric functions would be registered UDFs (a Scala jar, as Splink ships, or pandas UDFs
    over rapidfuzz); built-ins such as Spark's ``levenshtein`` can be named here instead where they agree.
    """

    jaro_winkler: str = "cdp_jaro_winkler"
    damerau_levenshtein: str = "cdp_damerau_levenshtein"
    levenshtein: str = "cdp_levenshtein"
    nickname_compatible: str = "cdp_nickname_compatible"
    metaphone: str = "cdp_metaphone"
    date_days: str = "cdp_date_days"
    date_transposed_days: str = "cdp_date_transposed_days"
    log2: str = "log2"

    def __post_init__(self) -> None:
        for item in fields(self):
            name = getattr(self, item.name)
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise ValueError(f"SqlFunctions.{item.name}: must be a plain function name")


UDF_FUNCTIONS: Final = SqlFunctions()
"""The names :func:`python_udfs` implements and :func:`run_duckdb` registers."""


@dataclass(frozen=True, slots=True)
class Udf:
    """A Python implementation of one :class:`SqlFunctions` entry, ready to register with an engine."""

    field: str
    """The :class:`SqlFunctions` attribute it implements (its SQL name is ``getattr(functions, field)``)."""
    function: Callable[..., Any]
    parameters: tuple[str, ...]
    """SQL parameter types (DuckDB spelling)."""
    returns: str


def _metaphone(value: str) -> str | None:
    with contextlib.suppress(norm.NormalizationError, ValueError):
        return norm.phonetic_key(value) or None
    return None


def _iso_date(value: str) -> date | None:
    with contextlib.suppress(ValueError, TypeError):
        return date.fromisoformat(value)
    return None


def _date_days(value: str) -> int | None:
    parsed = _iso_date(value)
    return None if parsed is None else parsed.toordinal() - _EPOCH_ORDINAL


def _date_transposed_days(value: str) -> int | None:
    parsed = _iso_date(value)
    if parsed is None:
        return None
    with contextlib.suppress(ValueError):
        return date(parsed.year, parsed.day, parsed.month).toordinal() - _EPOCH_ORDINAL
    return None


def _jaro_winkler(a: str, b: str) -> float:
    return float(JaroWinkler.normalized_similarity(a, b))


def _damerau_levenshtein(a: str, b: str) -> int:
    return int(DamerauLevenshtein.distance(a, b))


def _levenshtein(a: str, b: str) -> int:
    return int(Levenshtein.distance(a, b))


def _nickname_compatible(vocabulary: Sequence[str] | None) -> Callable[[str, str], bool]:
    """``nickname_compatible`` with the engine's cap on keys shared by too many names.

    The NumPy engine ignores a nickname key held by more than 2000 distinct values of the column; a pair
    UDF cannot see the column, so the over-shared keys are computed up front from the column's
    vocabulary. Without a vocabulary (a UDF for an engine that only sees pairs), no key is capped.
    """

    @functools.lru_cache(maxsize=1 << 16)
    def keys(value: str) -> frozenset[str]:
        with contextlib.suppress(norm.NormalizationError, ValueError):
            return frozenset(norm.nickname_keys(value))
        return frozenset()

    overshared: frozenset[str] = frozenset()
    if vocabulary is not None:
        holders: dict[str, int] = {}
        for value in vocabulary:
            for key in keys(value):
                holders[key] = holders.get(key, 0) + 1
        overshared = frozenset(k for k, n in holders.items() if n > _NICKNAME_KEY_CAP)

    def compatible(a: str, b: str) -> bool:
        shared = keys(a) & keys(b)
        return bool(shared - overshared) if overshared else bool(shared)

    return compatible


def _null_propagating(function: Callable[..., Any]) -> Callable[..., Any]:
    """SQL semantics for a Python UDF: any NULL argument gives NULL without calling the metric.

    DuckDB does this itself; SQLite and Spark's Python UDFs pass None through."""

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        return None if any(arg is None for arg in args) else function(*args)

    return call


def python_udfs(table: RecordTable | None = None) -> list[Udf]:
    """Python implementations of every :class:`SqlFunctions` metric, exactly the NumPy engine's.

    ``table`` supplies the ``first_name`` vocabulary for the nickname key cap (see
    :func:`_nickname_compatible`). ``log2`` is not included: engines have it (SQLite may need
    ``math.log2`` registered). NULL arguments give NULL, as SQL expects of a scalar function.
    """
    vocabulary = table.column("first_name").vocab if table is not None else None
    udfs = [
        Udf("jaro_winkler", _jaro_winkler, ("VARCHAR", "VARCHAR"), "DOUBLE"),
        Udf("damerau_levenshtein", _damerau_levenshtein, ("VARCHAR", "VARCHAR"), "INTEGER"),
        Udf("levenshtein", _levenshtein, ("VARCHAR", "VARCHAR"), "INTEGER"),
        Udf("nickname_compatible", _nickname_compatible(vocabulary), ("VARCHAR", "VARCHAR"), "BOOLEAN"),
        Udf("metaphone", _metaphone, ("VARCHAR",), "VARCHAR"),
        Udf("date_days", _date_days, ("VARCHAR",), "INTEGER"),
        Udf("date_transposed_days", _date_transposed_days, ("VARCHAR",), "INTEGER"),
    ]
    return [Udf(u.field, _null_propagating(u.function), u.parameters, u.returns) for u in udfs]


# ------------------------------------------------------------------------------------------------------
# SQL text helpers
# ------------------------------------------------------------------------------------------------------


def _ident(name: str, where: str) -> str:
    """A settings identifier safe to format into SQL unquoted, or a SettingsError naming its key."""
    if not _IDENTIFIER.match(name):
        raise SettingsError(f"{where}: {name!r} is not a plain SQL identifier (letters, digits, underscore)")
    return name


def _relation(name: str, parameter: str) -> str:
    """A table name passed by the caller, checked like any identifier formatted into SQL."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{parameter}: {name!r} is not a plain SQL identifier (letters, digits, underscore)")
    return name


def _double(value: float) -> str:
    """A DOUBLE literal that round-trips exactly (17 significant digits, exponent form).

    The exponent form matters: ``0.92`` is a DECIMAL in DuckDB and Spark, ``9.2E-01`` a DOUBLE, and the
    weights must be the very doubles the NumPy engine adds.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("a model constant is not finite (is training.m_floor 0?); SQL cannot carry it")
    text = f"{value:.16E}"
    return f"({text})" if value < 0 else text


def _integer(value: float) -> str:
    return str(int(value))


def _gamma_column(comparison: Comparison, index: int) -> str:
    return "gamma_" + _ident(comparison.name, f"comparisons[{index}].name")


def _parts(name: str) -> list[str]:
    """The columns of a (possibly composite, ``street+postcode``) column name."""
    return name.split("+")


def _value(name: str, side: str) -> str:
    """A column's value on one side of the pair; a composite is its parts joined with the unit separator,
    as :func:`cdp.identity.table._composite` spells its vocabulary (``||`` is NULL when any part is)."""
    parts = _parts(name)
    if len(parts) == 1:
        return f"{side}.{name}"
    return "(" + f" || '{_SEPARATOR}' || ".join(f"{side}.{p}" for p in parts) + ")"


def _missing(name: str, side: str) -> str:
    """The column is NULL on this side (a composite when any part is)."""
    return " OR ".join(f"{side}.{p} IS NULL" for p in _parts(name))


def _equal(name: str) -> str:
    """Both sides present and equal (every part, for a composite); NULL compares as not TRUE."""
    return " AND ".join(f"l.{p} = r.{p}" for p in _parts(name))


def _differ(name: str) -> str:
    """Both sides present and different — the rows the engine computes fuzzy metrics on."""
    parts = _parts(name)
    if len(parts) == 1:
        return f"l.{name} <> r.{name}"
    present = " AND ".join(f"l.{p} IS NOT NULL AND r.{p} IS NOT NULL" for p in parts)
    return f"{present} AND NOT ({_equal(name)})"


def _check_column(name: str, where: str, allowed: frozenset[str] | tuple[str, ...]) -> None:
    for part in _parts(name):
        if part not in allowed:
            raise SettingsError(f"{where}: unknown column")
        _ident(part, where)


def _check_columns(settings: MatchSettings) -> None:
    """Defence in depth: settings validation already restricts columns; SQL text relies on it."""
    for i, rule in enumerate(settings.blocking):
        for j, column in enumerate(rule.columns):
            _check_column(column, f"blocking[{i}].columns[{j}]", BLOCKING_COLUMNS)
    for i, comparison in enumerate(settings.comparisons):
        _check_column(comparison.column, f"comparisons[{i}].column", MATCH_COLUMNS)
        for j, level in enumerate(comparison.levels):
            where = f"comparisons[{i}].levels[{j}]"
            _check_column(comparison.level_column(level), f"{where}.column", BLOCKING_COLUMNS)
            if level.other is not None:
                _check_column(level.other, f"{where}.with", MATCH_COLUMNS)
        _gamma_column(comparison, i)


# ------------------------------------------------------------------------------------------------------
# Derived columns
# ------------------------------------------------------------------------------------------------------


def derived_columns_sql(table: str = "records_base") -> str:
    """``SELECT *, <derived blocking columns> FROM table`` — create the ``records`` view from it.

    Every derived column SQL can express (prefixes, the e-mail local part) is computed here with the
    same results as :data:`cdp.identity.table._DERIVE`; the phonetic codes
    (:data:`PRECOMPUTED_COLUMNS`) must already be columns of ``table``.
    """
    source = _relation(table, "table")
    missing = set(DERIVED_COLUMNS) - set(_DERIVED_SQL) - set(PRECOMPUTED_COLUMNS)
    if missing:
        raise ValueError(f"derived columns without SQL: {', '.join(sorted(missing))}")
    derived = ",\n  ".join(
        f"{expression.format(c=DERIVED_COLUMNS[name])} AS {name}" for name, expression in _DERIVED_SQL.items()
    )
    pairs = ",\n  ".join(
        # An unordered pair, as cdp.identity.table._unordered_pair builds it: the smaller value first.
        f"CASE WHEN {a} IS NULL OR {b} IS NULL THEN NULL WHEN {a} <= {b} "
        f"THEN {a} || '{_SEPARATOR}' || {b} ELSE {b} || '{_SEPARATOR}' || {a} END AS {name}"
        for name, (a, b) in PAIR_DERIVED_COLUMNS.items()
    )
    return f"SELECT\n  *,\n  {derived},\n  {pairs}\nFROM {source}"


# ------------------------------------------------------------------------------------------------------
# Blocking
# ------------------------------------------------------------------------------------------------------


def _rule_agrees(index: int, width: int) -> str:
    """The pair agrees on rule ``index``'s key *and* that rule generated it (its block was not oversized).

    ``block_keys`` holds a rule's key columns only where the row took part in the rule, so equality of
    all of them is exactly "the rule paired these rows"; COALESCE turns the NULLs of a non-participating
    row into FALSE (``NOT NULL`` would drop the pair instead of keeping it).
    """
    equal = " AND ".join(f"l.r{index}_k{j} = r.r{index}_k{j}" for j in range(width))
    return f"COALESCE({equal}, FALSE)"


def blocking_sql(settings: MatchSettings, *, table: str = "records", link_only: bool = False) -> str:
    """Candidate pairs, one ``UNION ALL`` branch per blocking rule; columns ``left_row, right_row, rule,
    satisfied``.

    Same semantics as :func:`cdp.identity.blocking.block`:

    * a rule pairs rows that agree on all of its columns (NULL agrees with nothing), ``left_row <
      right_row``, across sources only when ``link_only``;
    * a block (rows sharing one key) larger than ``max_block_size`` pairs nobody — the ``block_sizes_<i>``
      CTEs count them — and its rows do not exclude later rules' pairs either, because the rule never
      paired them;
    * a pair belongs to the first rule that generates it: later branches exclude pairs an earlier rule
      generated;
    * ``satisfied`` has bit ``i`` set when rule ``i`` generates the pair too (training conditions on it).

    ``table`` must carry ``row_id``, ``source`` and every column the rules name, derived columns
    included (the ``records`` view of :func:`derived_columns_sql`). The result has no ``ORDER BY``: on a
    distributed engine a global sort is a cost for nothing.
    """
    _check_columns(settings)
    source = _relation(table, "table")
    rules = settings.blocking
    cap = _integer(settings.max_block_size)
    ctes: list[str] = []
    key_columns: list[str] = []
    joins: list[str] = []
    for i, rule in enumerate(rules):
        columns = rule.columns
        ctes.append(
            f"block_sizes_{i} AS (\n"  # noqa: S608 - identifiers from validated settings only
            f"  SELECT {', '.join(f'{c} AS k{j}' for j, c in enumerate(columns))}, COUNT(*) AS block_size\n"
            f"  FROM {source}\n"
            f"  WHERE {' AND '.join(f'{c} IS NOT NULL' for c in columns)}\n"
            f"  GROUP BY {', '.join(columns)}\n"
            ")"
        )
        on = " AND ".join(f"t.{c} = b{i}.k{j}" for j, c in enumerate(columns))
        joins.append(f"LEFT JOIN block_sizes_{i} b{i} ON {on} AND b{i}.block_size <= {cap}")
        key_columns.extend(f"b{i}.k{j} AS r{i}_k{j}" for j in range(len(columns)))
    ctes.append(
        "block_keys AS (\n"  # noqa: S608 - identifiers from validated settings only
        f"  SELECT t.row_id, t.source, {', '.join(key_columns)}\n"
        f"  FROM {source} t\n  " + "\n  ".join(joins) + "\n)"
    )
    satisfied = " + ".join(
        f"CASE WHEN {_rule_agrees(i, len(rule.columns))} THEN {1 << i} ELSE 0 END"
        for i, rule in enumerate(rules)
    )
    branches: list[str] = []
    for i, rule in enumerate(rules):
        join = [f"l.r{i}_k{j} = r.r{i}_k{j}" for j in range(len(rule.columns))]
        join.append("l.row_id < r.row_id")
        if link_only:
            join.append("l.source <> r.source")
        earlier = [f"NOT {_rule_agrees(e, len(rules[e].columns))}" for e in range(i)]
        where = ("\nWHERE " + "\n  AND ".join(earlier)) if earlier else ""
        branches.append(
            f"SELECT l.row_id AS left_row, r.row_id AS right_row, {i} AS rule, "
            f"CAST({satisfied} AS BIGINT) AS satisfied\n"
            f"FROM block_keys l\nJOIN block_keys r ON {' AND '.join(join)}{where}"
        )
    return "WITH\n" + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(branches)


# ------------------------------------------------------------------------------------------------------
# Comparison vectors
# ------------------------------------------------------------------------------------------------------


def _level_sql(level: Level, column: str, functions: SqlFunctions) -> str:
    """The condition for one level on its column, tried only after the NULL and stronger levels failed.

    Similarity levels (all but ``exact``, ``swapped`` and ``date_transposed``) are met by two identical
    present values, as in the engine — a level may look at another column than an earlier exact level
    (same street, different postcode), so equal values can reach it.
    """
    condition = _similarity_sql(level, column, functions)
    if level.kind in EQUAL_SATISFIES:
        return f"({_equal(column)} OR ({condition}))"
    return condition


def _similarity_sql(level: Level, column: str, functions: SqlFunctions) -> str:
    if level.kind == "exact":
        return _equal(column)
    if level.kind == "swapped":
        assert level.other is not None
        return f"l.{column} = r.{level.other} AND l.{level.other} = r.{column}"
    a, b = _value(column, "l"), _value(column, "r")
    differ = _differ(column)
    if level.kind == "nickname":
        return f"{differ} AND {functions.nickname_compatible}({a}, {b})"
    if level.kind == "phonetic":
        return f"{differ} AND {functions.metaphone}({a}) = {functions.metaphone}({b})"
    if level.kind == "initial":
        # One side is at most two characters long (an initial, "j" or "j."), and the first letters match.
        short = f"(LENGTH({a}) <= 2 OR LENGTH({b}) <= 2)"
        return f"{differ} AND {short} AND SUBSTR({a}, 1, 1) = SUBSTR({b}, 1, 1) AND SUBSTR({a}, 1, 1) <> ''"
    if level.kind == "jaro_winkler":
        assert level.threshold is not None
        # The engine's tolerance for rounding, applied to the threshold the same way.
        return f"{differ} AND {functions.jaro_winkler}({a}, {b}) >= {_double(level.threshold - 1e-12)}"
    if level.kind in ("damerau_levenshtein", "levenshtein"):
        assert level.threshold is not None
        metric = (
            functions.damerau_levenshtein if level.kind == "damerau_levenshtein" else functions.levenshtein
        )
        return f"{differ} AND {metric}({a}, {b}) <= {_integer(level.threshold)}"
    if level.kind == "date_transposed":
        days, swapped = functions.date_days, functions.date_transposed_days
        # b is a with day and month exchanged, and they are different dates (day ≠ month).
        return f"{differ} AND {swapped}({a}) = {days}({b}) AND {days}({a}) <> {days}({b})"
    if level.kind == "date_within_days":
        assert level.threshold is not None
        days = functions.date_days
        return f"{differ} AND ABS({days}({a}) - {days}({b})) <= {_integer(level.threshold)}"
    raise ValueError(f"level kind {level.kind!r} has no SQL")


def _gamma_case(comparison: Comparison, index: int, functions: SqlFunctions) -> str:
    # No evidence only when every column the comparison reads is missing on one side or the other.
    null = " AND ".join(f"({_missing(c, 'l')} OR {_missing(c, 'r')})" for c in comparison.columns)
    top = len(comparison.levels)
    lines = [f"    WHEN {null} THEN -1"]
    lines.extend(
        f"    WHEN {_level_sql(level, comparison.level_column(level), functions)} THEN {top - i}"
        for i, level in enumerate(comparison.levels)
    )
    return "  CASE\n" + "\n".join(lines) + f"\n    ELSE 0\n  END AS {_gamma_column(comparison, index)}"


def comparison_sql(
    settings: MatchSettings,
    functions: SqlFunctions = UDF_FUNCTIONS,
    *,
    pairs: str = "pairs",
    table: str = "records",
) -> str:
    """Comparison vectors: ``pairs``' columns plus ``gamma_<name>`` per comparison.

    Each gamma is a ``CASE`` reproducing :func:`cdp.identity.comparisons.compare_column`: ``-1`` when
    every column the comparison reads is NULL on one side, then the levels strongest first, each on its
    own column (the first satisfied wins, gamma counting down from the number of levels), ``0`` for
    'different'. ``table`` must carry the derived columns a level names (the ``records`` view).
    """
    _check_columns(settings)
    cases = ",\n".join(_gamma_case(c, i, functions) for i, c in enumerate(settings.comparisons))
    source = _relation(table, "table")
    return (
        f"SELECT\n  p.left_row, p.right_row, p.rule, p.satisfied,\n{cases}\n"
        f"FROM {_relation(pairs, 'pairs')} p\n"
        f"JOIN {source} l ON l.row_id = p.left_row\n"
        f"JOIN {source} r ON r.row_id = p.right_row"
    )


def patterns_sql(settings: MatchSettings, *, comparisons: str = "comparison_vectors") -> str:
    """Distinct (satisfied rules, gamma vector) patterns with their pair counts — the EM input.

    :func:`cdp.identity.fellegi_sunter.compress` does this in NumPy; on a distributed engine this
    ``GROUP BY`` shrinks billions of pairs to a few thousand rows the driver can run EM on.
    """
    _check_columns(settings)
    gammas = ", ".join(_gamma_column(c, i) for i, c in enumerate(settings.comparisons))
    return (
        f"SELECT satisfied, {gammas}, COUNT(*) AS pair_count\n"
        f"FROM {_relation(comparisons, 'comparisons')}\nGROUP BY satisfied, {gammas}"
    )


# ------------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------------


def _tf_levels(comparison: Comparison) -> list[tuple[int, str]]:
    """``(gamma, column)`` of the comparison's exact levels marked ``tf`` — the levels
    ``fellegi_sunter.tf_adjustments`` adjusts."""
    top = len(comparison.levels)
    return [
        (top - i, comparison.level_column(level))
        for i, level in enumerate(comparison.levels)
        if level.kind == "exact" and level.tf
    ]


def _tf_columns(comparisons: Sequence[Comparison]) -> list[str]:
    return list(dict.fromkeys(column for c in comparisons for _, column in _tf_levels(c)))


def term_frequencies_sql(settings: MatchSettings, *, table: str = "records") -> str:
    """``column_name, value, frequency`` for every column a term-frequency level reads.

    The frequency is the value's share of the column's non-NULL rows, as
    :meth:`cdp.identity.table.EncodedColumn.frequencies` computes it (junk values are NULL already; a
    composite is non-NULL when all its parts are). A model with frozen frequencies brings its own rows
    instead (:func:`frozen_term_frequencies`).
    """
    _check_columns(settings)
    source = _relation(table, "table")
    columns = _tf_columns(settings.comparisons)
    if not columns:
        return (
            "SELECT CAST(NULL AS STRING) AS column_name, CAST(NULL AS STRING) AS value, "
            "CAST(NULL AS DOUBLE) AS frequency WHERE 1 = 0"
        )
    branches = []
    for column in columns:
        value = _value(column, "t")
        present = " AND ".join(f"t.{p} IS NOT NULL" for p in _parts(column))
        branches.append(
            f"SELECT '{column}' AS column_name, {value} AS value, "  # noqa: S608 - validated column names
            f"CAST(COUNT(*) AS DOUBLE) / (SELECT COUNT(*) FROM {source} t WHERE {present}) AS frequency\n"
            f"FROM {source} t\nWHERE {present}\nGROUP BY {value}"
        )
    return "\nUNION ALL\n".join(branches)


def frozen_term_frequencies(table: RecordTable, model: MatchModel) -> dict[str, npt.NDArray[Any]]:
    """``term_frequencies`` rows (as columns) from a model's frozen frequencies, for ``table``'s values.

    The NumPy engine looks every vocabulary value up in the frozen table (1/N for values it did not
    see); the rows carry exactly those numbers, so the SQL needs no second code path.
    """
    frozen = model.frequencies
    if frozen is None:
        raise ValueError("the model has no frozen frequencies; use term_frequencies_sql")
    names: list[str] = []
    values: list[str] = []
    frequencies: list[float] = []
    for column in _tf_columns(model.comparisons):
        vocab = table.column(column).vocab
        names.extend([column] * len(vocab))
        values.extend(vocab)
        frequencies.extend(frozen.lookup(column, vocab).tolist())
    return {
        "column_name": np.array(names, dtype=object),
        "value": np.array(values, dtype=object),
        "frequency": np.array(frequencies, dtype=np.float64),
    }


def scoring_sql(
    settings: MatchSettings,
    model: MatchModel,
    functions: SqlFunctions = UDF_FUNCTIONS,
    *,
    comparisons: str = "comparison_vectors",
    table: str = "records",
    term_frequencies: str = "term_frequencies",
) -> str:
    """``comparison_vectors``' columns plus ``match_weight`` in bits, as
    :func:`cdp.identity.fellegi_sunter.score` computes it.

    ``prior_weight + Σ log2(m/u)`` at each comparison's gamma (NULL gamma adds nothing), plus, at an
    exact level marked ``tf``, ``log2(u_level / max(freq(value), tf_floor))`` with the frequency of the
    level's column. The terms are added in the engine's order with the engine's doubles as literals, so
    the sums agree to the last bit wherever ``log2`` does. A value missing from ``term_frequencies``
    yields a NULL weight rather than a silently wrong one.
    """
    _check_columns(settings)
    if [c.name for c in model.comparisons] != [c.name for c in settings.comparisons] or any(
        a.levels != b.levels or a.column != b.column
        for a, b in zip(model.comparisons, settings.comparisons, strict=True)
    ):
        raise ValueError("the model was trained on different comparisons than these settings")
    frequencies = _relation(term_frequencies, "term_frequencies")
    floor = _double(settings.training.tf_floor)
    zero = _double(0.0)
    terms = [_double(model.prior_weight)]
    joins: list[str] = []
    for c, (comparison, weights) in enumerate(zip(model.comparisons, model.level_weights(), strict=True)):
        gamma = f"c.{_gamma_column(comparison, c)}"
        whens = " ".join(f"WHEN {g} THEN {_double(w)}" for g, w in enumerate(weights))
        terms.append(f"CASE {gamma} {whens} ELSE {zero} END")
        adjustments: list[str] = []
        for g, column in _tf_levels(comparison):
            alias = f"tf{c}_{g}"
            joins.append(
                f"LEFT JOIN {frequencies} {alias} "
                f"ON {alias}.column_name = '{column}' AND {alias}.value = {_value(column, 'l')}"
            )
            frequency = f"CASE WHEN {alias}.frequency > {floor} THEN {alias}.frequency ELSE {floor} END"
            adjustments.append(f"WHEN {g} THEN {functions.log2}({_double(model.u[c][g])} / ({frequency}))")
        if adjustments:
            terms.append(f"CASE {gamma} {' '.join(adjustments)} ELSE {zero} END")
    weight = "\n  + ".join(f"({t})" for t in terms)
    source = _relation(table, "table")
    return (
        f"SELECT\n  c.*,\n  {weight}\n  AS match_weight\n"
        f"FROM {_relation(comparisons, 'comparisons')} c\n"
        f"JOIN {source} l ON l.row_id = c.left_row\n" + "\n".join(joins)
    )


# ------------------------------------------------------------------------------------------------------
# Running it: DuckDB in memory
# ------------------------------------------------------------------------------------------------------


def records_columns(table: RecordTable) -> dict[str, npt.NDArray[Any]]:
    """The ``records_base`` table as NumPy columns: ``row_id``, ``source``, decoded match features (NULL
    as None, junk already NULL) and the precomputed phonetic codes — exactly the engine's values."""

    def decoded(name: str) -> npt.NDArray[Any]:
        column = table.column(name)
        lookup = np.array([*column.vocab, None], dtype=object)  # code -1 picks the trailing None
        result: npt.NDArray[Any] = lookup[column.codes]
        return result

    out: dict[str, npt.NDArray[Any]] = {
        "row_id": np.arange(len(table), dtype=np.int32),
        "source": np.array(table.sources.vocab, dtype=object)[table.sources.codes],
    }
    for name in (*MATCH_COLUMNS, *PRECOMPUTED_COLUMNS):
        out[name] = decoded(name)
    return out


@dataclass(frozen=True, slots=True)
class SqlRun:
    """What the SQL pipeline produced, sorted by ``(left, right)``; ``gammas`` shaped like
    :func:`cdp.identity.comparisons.compare`'s (comparisons by pairs)."""

    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    rule: npt.NDArray[np.int8]
    satisfied: npt.NDArray[np.int64]
    gammas: npt.NDArray[np.int8]
    weights: npt.NDArray[np.float64] | None


def load_duckdb(table: RecordTable) -> DuckDBPyConnection:
    """An in-memory DuckDB holding ``records_base`` and the ``records`` view, with :func:`python_udfs`
    registered under :data:`UDF_FUNCTIONS` names — ready for the SQL of this module.

    Plaintext never reaches disk: the database is in memory and ``temp_directory`` is empty, which makes
    DuckDB fail with "out of memory" rather than spill to its default ``.tmp`` directory (an in-memory
    database spills there otherwise); no extension is installed or loaded; once the rows are loaded, file
    access is disabled and the configuration locked (no statement can re-enable either).
    DuckDB is a dev/bench dependency, hence the import here. The caller closes the connection.
    """
    import duckdb

    config: dict[str, Any] = {
        "temp_directory": "",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    connection = duckdb.connect(":memory:", config=config)
    try:
        connection.execute("SET enable_progress_bar = false")
        connection.register("records_input", records_columns(table))
        connection.execute("CREATE TABLE records_base AS SELECT * FROM records_input")
        connection.unregister("records_input")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
        # "special": the UDFs return NULL themselves (no metaphone code, not a date); DuckDB's default
        # handling forbids that. They still return NULL for NULL input (_null_propagating).
        options: dict[str, Any] = {"null_handling": "special"}
        for udf in python_udfs(table):
            connection.create_function(
                getattr(UDF_FUNCTIONS, udf.field), udf.function, list(udf.parameters), udf.returns, **options
            )
        connection.execute(f"CREATE VIEW records AS {derived_columns_sql('records_base')}")
    except BaseException:
        connection.close()
        raise
    return connection


def run_duckdb(
    table: RecordTable,
    settings: MatchSettings,
    model: MatchModel | None = None,
    *,
    link_only: bool = False,
) -> SqlRun:
    """Run blocking, comparison and (given a model) scoring SQL on an in-memory DuckDB
    (:func:`load_duckdb`) and return the results as NumPy arrays.

    The metrics are :func:`python_udfs`, so the results are the NumPy engine's exactly — the point is to
    prove the SQL, not to be fast: per-row Python UDFs are slow, a deployment would use native or
    vectorized UDFs.
    """
    connection = load_duckdb(table)
    try:
        connection.execute(f"CREATE TABLE pairs AS {blocking_sql(settings, link_only=link_only)}")
        connection.execute(f"CREATE TABLE comparison_vectors AS {comparison_sql(settings)}")
        result = "comparison_vectors"
        if model is not None:
            if model.frequencies is None:
                connection.execute(f"CREATE TABLE term_frequencies AS {term_frequencies_sql(settings)}")
            else:
                connection.register("frozen_input", frozen_term_frequencies(table, model))
                connection.execute("CREATE TABLE term_frequencies AS SELECT * FROM frozen_input")
                connection.unregister("frozen_input")
            connection.execute(f"CREATE TABLE scored AS {scoring_sql(settings, model)}")
            result = "scored"
        gammas = [_gamma_column(c, i) for i, c in enumerate(settings.comparisons)]
        selected = ["left_row", "right_row", "rule", "satisfied", *gammas]
        if model is not None:
            selected.append("match_weight")
        rows = connection.execute(
            f"SELECT {', '.join(selected)} FROM {result} ORDER BY left_row, right_row"  # noqa: S608
        ).fetchnumpy()
    finally:
        connection.close()

    def column(name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
        values = rows[name]
        if np.ma.isMaskedArray(values) and np.ma.getmaskarray(values).any():
            raise ValueError(f"SQL produced NULL in {name}")
        return np.asarray(np.ma.getdata(values), dtype=dtype)

    count = len(rows["left_row"])
    gamma_matrix = np.empty((len(gammas), count), dtype=np.int8)
    for i, name in enumerate(gammas):
        gamma_matrix[i] = column(name, np.int8)
    return SqlRun(
        left=column("left_row", np.int32),
        right=column("right_row", np.int32),
        rule=column("rule", np.int8),
        satisfied=column("satisfied", np.int64),
        gammas=gamma_matrix,
        weights=column("match_weight", np.float64) if model is not None else None,
    )
