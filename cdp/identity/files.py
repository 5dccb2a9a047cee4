"""``cdp resolve-file``: resolve CSV files without a server or a database (the external-dataset contract).

``resolve_files([a.csv, b.csv], mapping.toml, out.csv)`` writes ``source,record_id,cluster_id`` — one row
per input record, ``source`` being the input's file stem. One input is a deduplication; two inputs are a
linkage (pairs only across the files, and by default each file is taken as already deduplicated, so a
record links to at most one record of the other file — pass ``one_to_one=False`` to drop that); three or
more are link-and-dedupe. The mapping file (TOML)::

    id = "rec_id"              # column holding the record id (required)
    date_format = "%Y%m%d"     # optional: one strptime format or a list, tried in order (default ISO)
    default_country = "AU"     # optional: region for national phone numbers and postcodes
    [fields]                   # canonical attribute = column name (any subset of the canonical list)
    first_name = "given_name"
    last_name = "surname"

Nothing is written but the output file; values never appear in errors or the report.
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing
import os
import sys
import time
import tomllib
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdp.db.models import CANONICAL_FIELDS
from cdp.errors import CdpError
from cdp.identity.features import MATCH_COLUMNS, RawFeatureExtractor
from cdp.identity.resolver import Resolution, resolve
from cdp.identity.settings import MatchSettings
from cdp.identity.table import FeatureChunk, RecordTable


class MappingFileError(CdpError):
    """The resolve-file mapping is malformed; the message names the bad key."""


class InputFileError(CdpError):
    """An input file cannot be read as the mapping describes; the message names file, line and column."""


@dataclass(frozen=True)
class FileMapping:
    id_column: str
    fields: Mapping[str, str]
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    default_country: str | None = None

    @classmethod
    def load(cls, path: Path) -> FileMapping:
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise MappingFileError(f"cannot read mapping {path.name}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise MappingFileError(f"mapping {path.name} is not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FileMapping:
        for key in data:
            if key not in ("id", "date_format", "default_country", "fields"):
                raise MappingFileError(
                    f"{key}: unknown key (expected id, date_format, default_country, fields)"
                )
        id_column = data.get("id")
        if not isinstance(id_column, str) or not id_column:
            raise MappingFileError("id: required, the name of the column holding the record id")
        raw_formats = data.get("date_format", ["%Y-%m-%d"])
        formats = [raw_formats] if isinstance(raw_formats, str) else raw_formats
        if not isinstance(formats, list) or not formats or not all(isinstance(f, str) and f for f in formats):
            raise MappingFileError("date_format: must be a strptime format or a non-empty list of them")
        for i, fmt in enumerate(formats):
            if "%" not in fmt:
                raise MappingFileError(f"date_format[{i}]: not a strptime format (no % directive)")
        country = data.get("default_country")
        if country is not None and (not isinstance(country, str) or not country):
            raise MappingFileError("default_country: must be a country code such as 'GB'")
        fields_ = data.get("fields")
        if not isinstance(fields_, Mapping) or not fields_:
            raise MappingFileError("fields: required table of canonical attribute = column name")
        for attribute, column in fields_.items():
            if attribute not in CANONICAL_FIELDS:
                expected = ", ".join(CANONICAL_FIELDS)
                raise MappingFileError(
                    f"fields.{attribute}: unknown canonical attribute (expected one of: {expected})"
                )
            if not isinstance(column, str) or not column:
                raise MappingFileError(f"fields.{attribute}: must be a column name")
        return cls(id_column, dict(fields_), tuple(formats), country)


@dataclass
class FileResolution:
    assignments: list[tuple[str, str, str]]
    """``(source, record_id, cluster_id)`` per input record, in input order."""
    resolution: Resolution
    report: dict[str, Any] = field(default_factory=dict)


def _rows(path: Path, mapping: FileMapping) -> Iterator[tuple[str, list[str | None]]]:
    """``(record id, cells)`` per row, cells in ``mapping.fields`` order (empty cells as None)."""
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputFileError(f"cannot read {path.name}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise InputFileError(f"{path.name}: empty file (no header row)") from None
        except UnicodeDecodeError:
            raise InputFileError(f"{path.name}: not UTF-8 text") from None
        position = {name: i for i, name in enumerate(header)}
        if mapping.id_column not in position:
            raise InputFileError(f"{path.name}: no column {mapping.id_column!r} (mapping key 'id')")
        for attribute, column in mapping.fields.items():
            if column not in position:
                raise InputFileError(f"{path.name}: no column {column!r} (mapping key 'fields.{attribute}')")
        id_at = position[mapping.id_column]
        cells = [position[column] for column in mapping.fields.values()]
        width = len(header)
        try:
            for line, row in enumerate(reader, start=2):
                if len(row) != width:
                    if not row:
                        continue
                    raise InputFileError(f"{path.name} line {line}: {len(row)} cells, header has {width}")
                record_id = row[id_at].strip()
                if not record_id:
                    raise InputFileError(f"{path.name} line {line}: empty record id")
                yield record_id, [row[i] or None for i in cells]
        except UnicodeDecodeError:
            raise InputFileError(f"{path.name}: not UTF-8 text") from None
        except csv.Error as exc:
            raise InputFileError(f"{path.name}: malformed CSV ({exc})") from None


_CHUNK = 20_000
_extractor: RawFeatureExtractor | None = None
_attributes: tuple[str, ...] = ()

RawRow = tuple[str, str, list[str | None]]
"""``(source, record id, cells)``, cells in the mapping's ``fields`` order."""


def _init_worker(
    date_formats: tuple[str, ...], default_country: str | None, attributes: tuple[str, ...]
) -> None:
    global _extractor, _attributes
    _extractor = RawFeatureExtractor(date_formats=date_formats, default_country=default_country)
    _attributes = attributes


def _extract_chunk(chunk: list[RawRow]) -> tuple[FeatureChunk, Counter[str]]:
    """Features of a chunk, column-wise: rows cross the process boundary as lists of cells and come back
    as one list per feature, which pickles at a fraction of the cost of one mapping per row."""
    assert _extractor is not None
    _extractor.failures.clear()
    attributes = _attributes
    features = [_extractor.extract(dict(zip(attributes, cells, strict=True))) for _, _, cells in chunk]
    out = FeatureChunk(
        [source for source, _, _ in chunk],
        [record_id for _, record_id, _ in chunk],
        [[row[column] for row in features] for column in MATCH_COLUMNS],
    )
    return out, Counter(_extractor.failures)


def _normalized(
    rows: Iterator[RawRow],
    mapping: FileMapping,
    failures: Counter[str],
    *,
    workers: int | None,
) -> Iterator[FeatureChunk]:
    """Normalize rows into match features, on several processes for large inputs (order kept).

    Normalization (email syntax, phone parsing, name folding) is the most expensive per-record step and
    is independent per row, so it parallelizes; small inputs stay in-process.
    """
    count = workers if workers is not None else min(os.cpu_count() or 1, 4)
    setup = (mapping.date_formats, mapping.default_country, tuple(mapping.fields))
    first = list(itertools.islice(rows, _CHUNK))
    if count <= 1 or len(first) < _CHUNK:
        _init_worker(*setup)
        for chunk in (first, *iter(lambda: list(itertools.islice(rows, _CHUNK)), [])):
            out, failed = _extract_chunk(chunk)
            failures.update(failed)
            yield out
        return
    chunks = itertools.chain([first], iter(lambda: list(itertools.islice(rows, _CHUNK)), []))
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(count, mp_context=context, initializer=_init_worker, initargs=setup) as pool:
        # A bounded window of chunks in flight (Executor.map would read every file up front): reading the
        # next chunk, normalizing in the workers and encoding finished rows here all overlap.
        pending: deque[Future[tuple[FeatureChunk, Counter[str]]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_extract_chunk, chunk))
            if len(pending) > count:
                out, failed = pending.popleft().result()
                failures.update(failed)
                yield out
        while pending:
            out, failed = pending.popleft().result()
            failures.update(failed)
            yield out


def resolve_files(
    inputs: Sequence[Path],
    mapping: Path | FileMapping,
    out: Path | None = None,
    *,
    settings: MatchSettings | None = None,
    one_to_one: bool = True,
    workers: int | None = None,
) -> FileResolution:
    """Resolve the records of one or more CSV files; write assignments to ``out`` when given."""
    started = time.perf_counter()
    if not inputs:
        raise InputFileError("no input files")
    file_mapping = mapping if isinstance(mapping, FileMapping) else FileMapping.load(mapping)
    settings = settings or MatchSettings.default()
    stems = [Path(p).stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise InputFileError("input files must have distinct names: the file stem is the source name")

    seen: set[tuple[str, str]] = set()

    def raw_rows() -> Iterator[RawRow]:
        for path, source in zip(inputs, stems, strict=True):
            for record_id, cells in _rows(Path(path), file_mapping):
                if (source, record_id) in seen:
                    raise InputFileError(f"{Path(path).name}: record id repeated (each id must be unique)")
                seen.add((source, record_id))
                yield source, record_id, cells

    failures: Counter[str] = Counter()
    table = RecordTable.from_chunks(
        _normalized(raw_rows(), file_mapping, failures, workers=workers), settings.protection
    )
    prepared = time.perf_counter() - started
    link_only = len(inputs) == 2
    resolution = resolve(
        table, settings, link_only=link_only, per_source=1 if link_only and one_to_one else None
    )
    labels = resolution.clusters.labels
    assignments = [(table.source_of(i), table.keys[i], str(int(labels[i]))) for i in range(len(table))]
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("source", "record_id", "cluster_id"))
            writer.writerows(assignments)
        tmp.replace(out)
    report = resolution.report()
    report["mode"] = "link" if link_only else ("dedupe" if len(inputs) == 1 else "link_and_dedupe")
    report["unparsed_values"] = dict(sorted(failures.items()))
    report["timings_seconds"]["read_and_normalize"] = round(prepared, 4)
    report["timings_seconds"]["wall"] = round(time.perf_counter() - started, 4)
    return FileResolution(assignments, resolution, report)
