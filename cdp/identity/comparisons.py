"""Comparison vectors: for each candidate pair and each comparison, the level the pair reaches.

The level index ("gamma") counts down from the strongest level: with levels ``[exact, jw>=0.92,
jw>=0.8]`` a pair gets 3, 2 or 1, ``0`` for 'different' and ``-1`` when either side is null. String
metrics come from rapidfuzz (Jaro-Winkler, Damerau-Levenshtein, Levenshtein), phonetic codes from
jellyfish, nicknames from :mod:`cdp.identity.normalize` — nothing here implements a metric.

Work is per *distinct value pair*: the table is dictionary-encoded, so a fuzzy metric runs once for
("jon", "john") however many record pairs carry it, and exact agreement is integer equality.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein

from cdp.identity import normalize as norm
from cdp.identity.settings import Comparison, Level
from cdp.identity.table import Codes, EncodedColumn, RecordTable

Gammas = npt.NDArray[np.int8]


def _nickname_keys(value: str) -> frozenset[str]:
    with contextlib.suppress(norm.NormalizationError, ValueError):
        return frozenset(norm.nickname_keys(value))
    return frozenset()


def _metaphone(value: str) -> str:
    with contextlib.suppress(norm.NormalizationError, ValueError):
        return norm.phonetic_key(value)
    return ""


def _dates(vocab: list[str]) -> npt.NDArray[np.datetime64]:
    out = np.full(len(vocab), np.datetime64("NaT"), dtype="datetime64[D]")
    for i, value in enumerate(vocab):
        with contextlib.suppress(ValueError):
            out[i] = np.datetime64(date.fromisoformat(value), "D")
    return out


def _date_parts(vocab: list[str]) -> tuple[npt.NDArray[np.int64], ...]:
    days = _dates(vocab)
    months = days.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64)
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    valid = ~np.isnat(days)
    # datetime64 years count from 1970 (negative before): shift to calendar years.
    return np.where(valid, year + 1970, -1), np.where(valid, month, -1), np.where(valid, day, -1)


def _initials(vocab: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    lengths = np.fromiter((len(v) for v in vocab), dtype=np.int64, count=len(vocab))
    firsts = np.fromiter((ord(v[0]) if v else -1 for v in vocab), dtype=np.int64, count=len(vocab))
    return lengths, firsts


def _phonetic_codes(vocab: list[str]) -> npt.NDArray[np.int64]:
    index: dict[str, int] = {"": -1}
    return np.fromiter(
        (index.setdefault(code, len(index)) if code else -1 for code in map(_metaphone, vocab)),
        dtype=np.int64,
        count=len(vocab),
    )


NICKNAME_KEY_CAP = 2000
"""A nickname key shared by more distinct names than this is no evidence (and would cost quadratic time)."""


def _nickname_pairs(vocab: list[str]) -> npt.NDArray[np.int64]:
    """Sorted codes ``lo * (V+1) + hi`` of vocabulary pairs whose nickname key sets intersect."""
    holders: dict[str, list[int]] = {}
    for i, value in enumerate(vocab):
        for key in _nickname_keys(value):
            holders.setdefault(key, []).append(i)
    size = len(vocab) + 1
    codes: set[int] = set()
    for ids in holders.values():
        if 1 < len(ids) <= NICKNAME_KEY_CAP:
            for x in range(len(ids)):
                for y in range(x + 1, len(ids)):
                    codes.add(min(ids[x], ids[y]) * size + max(ids[x], ids[y]))
    return np.array(sorted(codes), dtype=np.int64)


class _DistinctPairs:
    """The distinct (value, value) pairs among some record pairs, with metrics computed lazily once."""

    def __init__(self, column: EncodedColumn, left: Codes, right: Codes) -> None:
        self.column = column
        size = np.int64(len(column.vocab) + 1)
        lo = np.minimum(left, right).astype(np.int64)
        hi = np.maximum(left, right).astype(np.int64)
        self.unique, self.inverse = np.unique(lo * size + hi, return_inverse=True)
        self.ua = self.unique // size
        self.ub = self.unique % size
        self._metrics: dict[str, npt.NDArray[np.float64]] = {}

    def metric(self, kind: str) -> npt.NDArray[np.float64]:
        if kind not in self._metrics:
            scorer: Any = {
                "jaro_winkler": JaroWinkler.normalized_similarity,
                "damerau_levenshtein": DamerauLevenshtein.distance,
                "levenshtein": Levenshtein.distance,
            }[kind]
            if len(self.unique):
                vocab = self.column.vocab_array("object", lambda v: np.asarray(v, dtype=object))
                scores = process.cpdist(
                    vocab[self.ua], vocab[self.ub], scorer=scorer, workers=-1, dtype=np.float64
                )
            else:
                scores = np.empty(0, np.float64)
            self._metrics[kind] = np.asarray(scores, dtype=np.float64)
        return self._metrics[kind]

    def satisfies(self, level: Level) -> npt.NDArray[np.bool_]:
        kind = level.kind
        if kind == "jaro_winkler":
            assert level.threshold is not None
            return self.metric(kind) >= level.threshold - 1e-12
        if kind in ("damerau_levenshtein", "levenshtein"):
            assert level.threshold is not None
            return self.metric(kind) <= level.threshold
        if kind == "nickname":
            compatible = self.column.vocab_array("nicknames", _nickname_pairs)
            found: npt.NDArray[np.bool_] = np.isin(self.unique, compatible, assume_unique=True)
            return found
        if kind == "phonetic":
            codes: npt.NDArray[np.int64] = self.column.vocab_array("phonetic", _phonetic_codes)
            a, b = codes[self.ua], codes[self.ub]
            same: npt.NDArray[np.bool_] = (a >= 0) & (a == b)
            return same
        if kind == "initial":
            lengths, firsts = self.column.vocab_array("initials", _initials)
            short = np.minimum(lengths[self.ua], lengths[self.ub]) <= 2
            initial: npt.NDArray[np.bool_] = (
                short & (firsts[self.ua] == firsts[self.ub]) & (firsts[self.ua] >= 0)
            )
            return initial
        if kind == "date_transposed":
            parts: tuple[npt.NDArray[np.int64], ...] = self.column.vocab_array("date_parts", _date_parts)
            year, month, day = parts
            a, b = self.ua, self.ub
            swapped: npt.NDArray[np.bool_] = (
                (year[a] >= 0)
                & (year[a] == year[b])
                & (month[a] == day[b])
                & (day[a] == month[b])
                & (month[a] != month[b])
            )
            return swapped
        if kind == "date_within_days":
            assert level.threshold is not None
            days: npt.NDArray[np.datetime64] = self.column.vocab_array("dates", _dates)
            da, db = days[self.ua], days[self.ub]
            valid = ~(np.isnat(da) | np.isnat(db))
            gap = np.abs((da - db).astype(np.int64))
            near: npt.NDArray[np.bool_] = valid & (gap <= level.threshold)
            return near
        raise ValueError(f"level kind {kind!r} is not a value-pair metric")


def _translation(source: EncodedColumn, target: EncodedColumn) -> Codes:
    """Codes of ``source``'s vocabulary in ``target``'s (-1 where absent; index -1 maps null to -1)."""
    index = {value: i for i, value in enumerate(target.vocab)}
    table = np.full(len(source.vocab) + 1, -1, dtype=np.int32)
    for i, value in enumerate(source.vocab):
        table[i] = index.get(value, -1)
    return table


EQUAL_SATISFIES = frozenset(
    {
        "jaro_winkler",
        "damerau_levenshtein",
        "levenshtein",
        "nickname",
        "phonetic",
        "initial",
        "date_within_days",
    }
)
"""Level kinds that two identical values always satisfy (``date_transposed`` needs two different dates)."""


def compare_column(table: RecordTable, comparison: Comparison, left: Codes, right: Codes) -> Gammas:
    """Gamma of one comparison for the row pairs ``(left[i], right[i])``."""
    null = np.ones(len(left), dtype=bool)
    for name in comparison.columns:
        codes = table.column(name).codes
        null &= (codes[left] < 0) | (codes[right] < 0)
    gamma = np.zeros(len(left), dtype=np.int8)
    gamma[null] = -1
    undecided = ~null
    distinct: dict[str, tuple[_DistinctPairs, npt.NDArray[np.intp]]] = {}
    top = len(comparison.levels)
    for i, level in enumerate(comparison.levels):
        if not undecided.any():
            break
        name = comparison.level_column(level)
        column = table.column(name)
        cl, cr = column.codes[left], column.codes[right]
        present = (cl >= 0) & (cr >= 0)
        if level.kind == "exact":
            hit = undecided & present & (cl == cr)
        elif level.kind == "swapped":
            assert level.other is not None
            other = table.column(level.other)
            to_this = _translation(other, column)
            hit = (
                undecided & present & (cl == to_this[other.codes[right]]) & (cr == to_this[other.codes[left]])
            )
        else:
            if name not in distinct:
                rows = np.flatnonzero(present & (cl != cr))
                distinct[name] = (_DistinctPairs(column, cl[rows], cr[rows]), rows)
            pairs, rows = distinct[name]
            hit = np.zeros(len(left), dtype=bool)
            hit[rows] = pairs.satisfies(level)[pairs.inverse]
            if level.kind in EQUAL_SATISFIES:
                # Identical values meet every similarity level (a level on another column than an
                # earlier exact level can see equal values: same street, different postcode).
                hit |= present & (cl == cr)
            hit &= undecided
        gamma[hit] = top - i
        undecided &= ~hit
    return gamma


def compare(table: RecordTable, comparisons: Sequence[Comparison], left: Codes, right: Codes) -> Gammas:
    """The comparison matrix, shape ``(len(comparisons), len(pairs))``."""
    out = np.empty((len(comparisons), len(left)), dtype=np.int8)
    for i, comparison in enumerate(comparisons):
        out[i] = compare_column(table, comparison, left, right)
    return out


def _as_date(value: str) -> date | None:
    with contextlib.suppress(ValueError):
        return date.fromisoformat(value)
    return None


def value_level_satisfied(level: Level, a: str, b: str) -> bool:
    """One level on two values — the scalar twin of the vectorized evaluation above (same library calls)."""
    kind = level.kind
    if kind == "exact":
        return a == b
    if kind == "swapped":
        return False  # needs the other column: not a property of two values
    if a == b:
        return kind in EQUAL_SATISFIES
    if kind == "jaro_winkler":
        assert level.threshold is not None
        return bool(JaroWinkler.normalized_similarity(a, b) >= level.threshold - 1e-12)
    if kind == "damerau_levenshtein":
        return bool(DamerauLevenshtein.distance(a, b) <= (level.threshold or 0))
    if kind == "levenshtein":
        return bool(Levenshtein.distance(a, b) <= (level.threshold or 0))
    if kind == "nickname":
        return bool(_nickname_keys(a) & _nickname_keys(b))
    if kind == "phonetic":
        code = _metaphone(a)
        return bool(code) and code == _metaphone(b)
    if kind == "initial":
        return bool(a and b) and min(len(a), len(b)) <= 2 and a[0] == b[0]
    da, db = _as_date(a), _as_date(b)
    if da is None or db is None:
        return False
    if kind == "date_transposed":
        return norm.day_month_swapped(da, db)
    if kind == "date_within_days":
        return abs((da - db).days) <= (level.threshold or 0)
    raise ValueError(f"unknown level kind {kind!r}")


def values_compatible(comparison: Comparison) -> Callable[[str, str], bool]:
    """Whether two values of the comparison's column reach any level above 'different' (memoized)."""

    @lru_cache(maxsize=1 << 16)
    def compatible(a: str, b: str) -> bool:
        return any(
            value_level_satisfied(level, a, b)
            for level in comparison.levels
            if comparison.level_column(level) == comparison.column
        )

    return compatible
