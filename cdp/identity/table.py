"""A columnar, dictionary-encoded table of match features: the resolver's working set.

Every feature column is stored as ``int32`` codes into a vocabulary of distinct values (``-1`` = null),
the same shape a columnar engine (DuckDB, Spark, Arrow) uses. It is what makes batch resolution
vectorized rather than a Python loop per pair:

* exact agreement is code equality over whole arrays;
* fuzzy metrics run once per *distinct value pair*, not per record pair (names repeat a lot);
* term frequencies are the vocabulary counts;
* blocking keys are tuples of codes.

Plaintext lives only in the in-memory vocabularies and is never written anywhere.
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cdp.identity import normalize as norm
from cdp.identity.features import MATCH_COLUMNS
from cdp.identity.settings import DERIVED_COLUMNS, PAIR_DERIVED_COLUMNS, MergeProtection

Codes = npt.NDArray[np.int32]


def _phonetic(value: str) -> str | None:
    with contextlib.suppress(norm.NormalizationError, ValueError):
        return norm.phonetic_key(value)
    return None


_DERIVE: Final[dict[str, Callable[[str], str | None]]] = {
    "first_initial": lambda v: v[:1] or None,
    "birth_year": lambda v: v[:4] or None,
    "birth_month_day": lambda v: v[5:] or None,
    "first_name_phonetic": _phonetic,
    "last_name_phonetic": _phonetic,
    "email_local": lambda v: v.split("@", 1)[0] or None,
    "postcode_prefix": lambda v: v[:3] or None,
}


@dataclass(frozen=True, slots=True)
class EncodedColumn:
    name: str
    codes: Codes
    vocab: list[str]
    counts: npt.NDArray[np.int64]
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Per-vocabulary derived arrays (parsed dates, phonetic codes…), computed once on first use."""

    def vocab_array(self, kind: str, build: Callable[[list[str]], Any]) -> Any:
        if kind not in self.derived:
            self.derived[kind] = build(self.vocab)
        return self.derived[kind]

    @property
    def non_null(self) -> int:
        return int(self.counts.sum())

    def value(self, row: int) -> str | None:
        code = int(self.codes[row])
        return None if code < 0 else self.vocab[code]

    def frequencies(self) -> npt.NDArray[np.float64]:
        """Relative frequency of each vocabulary value among the non-null records."""
        total = max(self.non_null, 1)
        return np.asarray(self.counts, dtype=np.float64) / total


def _encoded(name: str, codes: array[int], index: dict[str, int]) -> EncodedColumn:
    encoded = np.frombuffer(codes, dtype=np.int32).copy() if len(codes) else np.empty(0, dtype=np.int32)
    counts = np.bincount(encoded[encoded >= 0], minlength=len(index)).astype(np.int64)
    return EncodedColumn(name, encoded, list(index), counts)


def _derive(name: str, base: EncodedColumn) -> EncodedColumn:
    fn = _DERIVE[name]
    index: dict[str, int] = {}
    mapping = np.empty(len(base.vocab) + 1, dtype=np.int32)
    mapping[-1] = -1  # code -1 indexes the last slot: null stays null
    for i, value in enumerate(base.vocab):
        derived = fn(value)
        mapping[i] = -1 if derived is None else index.setdefault(derived, len(index))
    codes = mapping[base.codes]
    vocab = list(index)
    counts = np.bincount(codes[codes >= 0], minlength=len(vocab)).astype(np.int64)
    return EncodedColumn(name, codes, vocab, counts)


def _unordered_pair(name: str, a: EncodedColumn, b: EncodedColumn) -> EncodedColumn:
    """Two columns as an unordered pair of values (null when either is null)."""
    valid = (a.codes >= 0) & (b.codes >= 0)
    index: dict[str, int] = {}
    codes = np.full(len(a.codes), -1, dtype=np.int32)
    rows = np.flatnonzero(valid)
    for row, x, y in zip(rows.tolist(), a.codes[rows].tolist(), b.codes[rows].tolist(), strict=True):
        p, q = a.vocab[x], b.vocab[y]
        key = f"{p}\x1f{q}" if p <= q else f"{q}\x1f{p}"
        codes[row] = index.setdefault(key, len(index))
    counts = np.bincount(codes[rows], minlength=len(index)).astype(np.int64)
    return EncodedColumn(name, codes, list(index), counts)


def _composite(name: str, parts: Sequence[EncodedColumn]) -> EncodedColumn:
    """Several columns as one value (null when any part is null): "the same dwelling" is one fact."""
    n = len(parts[0].codes)
    key = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    for part in parts:
        valid &= part.codes >= 0
        _, key = np.unique(key * (len(part.vocab) + 1) + part.codes.astype(np.int64) + 1, return_inverse=True)
        key = key.astype(np.int64)
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return EncodedColumn(name, np.full(n, -1, dtype=np.int32), [], np.zeros(0, dtype=np.int64))
    unique, first, inverse = np.unique(key[rows], return_index=True, return_inverse=True)
    codes = np.full(n, -1, dtype=np.int32)
    codes[rows] = inverse.astype(np.int32)
    vocab = ["\x1f".join(part.vocab[int(part.codes[row])] for part in parts) for row in rows[first].tolist()]
    counts = np.bincount(inverse, minlength=len(unique)).astype(np.int64)
    return EncodedColumn(name, codes, vocab, counts)


class RecordTable:
    """Records to resolve: a source and a record key per row, plus encoded match features.

    ``keys[i]`` is the caller's identifier of row ``i`` (a vault record id, or a file's record id);
    rows are addressed by position everywhere else.
    """

    def __init__(self, sources: EncodedColumn, keys: list[str], columns: Mapping[str, EncodedColumn]) -> None:
        self.sources = sources
        self.keys = keys
        self._columns = dict(columns)

    @classmethod
    def build(
        cls,
        rows: Iterable[tuple[str, str, Mapping[str, str | None]]],
        protection: MergeProtection | None = None,
    ) -> RecordTable:
        """Build from ``(source, record key, features)`` rows, nulling junk values on the way in."""
        encoder = _Encoder()
        for source, key, features in rows:
            encoder.add(source, key, features)
        return encoder.table(protection)

    @classmethod
    def from_chunks(
        cls,
        chunks: Iterable[FeatureChunk],
        protection: MergeProtection | None = None,
    ) -> RecordTable:
        """:meth:`build` from column-wise chunks — cheaper to pass between processes than one mapping
        per row, and encoded a column at a time."""
        encoder = _Encoder()
        for chunk in chunks:
            encoder.add_chunk(chunk)
        return encoder.table(protection)

    def __len__(self) -> int:
        return len(self.keys)

    def column(self, name: str) -> EncodedColumn:
        """A base, derived (``birth_year``) or composite (``street+street_number+postcode``) column."""
        column = self._columns.get(name)
        if column is None:
            if "+" in name:
                column = _composite(name, [self.column(part) for part in name.split("+")])
            elif name in PAIR_DERIVED_COLUMNS:
                first, second = PAIR_DERIVED_COLUMNS[name]
                column = _unordered_pair(name, self.column(first), self.column(second))
            else:
                base = DERIVED_COLUMNS.get(name)
                if base is None:
                    raise KeyError(name)
                column = _derive(name, self.column(base))
            self._columns[name] = column
        return column

    def features(self, row: int) -> dict[str, str | None]:
        return {c: self.column(c).value(row) for c in MATCH_COLUMNS}

    def source_of(self, row: int) -> str:
        return self.sources.vocab[int(self.sources.codes[row])]


@dataclass(frozen=True, slots=True)
class FeatureChunk:
    """Rows of features column-wise: ``columns[i][r]`` is :data:`MATCH_COLUMNS` ``[i]`` of row ``r``."""

    sources: list[str]
    keys: list[str]
    columns: list[list[str | None]]


class _Encoder:
    """Dictionary-encodes values as they stream in (one dict and one ``array('i')`` per column), so a
    million records never sit in memory as millions of separate Python strings."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.source_index: dict[str, int] = {}
        self.source_codes = array("i")
        self.indexes: list[dict[str, int]] = [{} for _ in MATCH_COLUMNS]
        self.codes: list[array[int]] = [array("i") for _ in MATCH_COLUMNS]
        self._columns = list(zip(MATCH_COLUMNS, self.indexes, self.codes, strict=True))

    def add(self, source: str, key: str, features: Mapping[str, str | None]) -> None:
        self.source_codes.append(self.source_index.setdefault(source, len(self.source_index)))
        self.keys.append(key)
        get = features.get
        for column, index, out in self._columns:
            value = get(column)
            out.append(-1 if value is None else index.setdefault(value, len(index)))

    def add_chunk(self, chunk: FeatureChunk) -> None:
        if len(chunk.columns) != len(MATCH_COLUMNS):
            raise ValueError(f"a chunk has {len(MATCH_COLUMNS)} columns, not {len(chunk.columns)}")
        if any(len(values) != len(chunk.keys) for values in chunk.columns) or len(chunk.sources) != len(
            chunk.keys
        ):
            raise ValueError("every column of a chunk has one value per row")
        sources = self.source_index
        self.source_codes.extend(sources.setdefault(source, len(sources)) for source in chunk.sources)
        self.keys.extend(chunk.keys)
        for (_, index, out), values in zip(self._columns, chunk.columns, strict=True):
            out.extend(-1 if value is None else index.setdefault(value, len(index)) for value in values)

    def table(self, protection: MergeProtection | None) -> RecordTable:
        columns = {
            column: _encoded(column, self.codes[i], self.indexes[i]) for i, column in enumerate(MATCH_COLUMNS)
        }
        if protection is not None:
            columns = {c: _without_junk(col, protection) for c, col in columns.items()}
        return RecordTable(_encoded("source", self.source_codes, self.source_index), self.keys, columns)


def _without_junk(column: EncodedColumn, protection: MergeProtection) -> EncodedColumn:
    junk = [i for i, value in enumerate(column.vocab) if protection.is_junk(column.name, value)]
    if not junk:
        return column
    codes = column.codes.copy()
    codes[np.isin(codes, np.asarray(junk, dtype=np.int32))] = -1
    counts = column.counts.copy()
    counts[junk] = 0
    return EncodedColumn(column.name, codes, column.vocab, counts)
