"""Readers for source files: CSV and JSON Lines, row by row, never failing the whole file for one row.

A row the reader cannot make sense of (bad bytes for the declared encoding, broken JSON, more values
than the header has columns) comes out with an ``error`` reason, so the ingest quarantines it and moves
on. Bytes that don't decode are kept as surrogate escapes so the raw row can still be quarantined.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdp.errors import CdpError

csv.field_size_limit(1 << 20)


class UnsupportedFile(CdpError):
    pass


@dataclass
class RawRow:
    number: int
    """1-based data row (CSV, header excluded) or line (JSON Lines) number."""
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Reader-level reason code: encoding_error, malformed_json, malformed_row."""


def has_surrogates(text: str) -> bool:
    """True when text holds lone surrogates (undecodable bytes kept by ``surrogateescape``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise UnsupportedFile(f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv or .jsonl")


def count_rows(path: Path) -> int:
    """Approximate row count for progress bars (newline count; exact unless fields embed newlines)."""
    lines = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines += chunk.count(b"\n")
    return max(lines - (1 if file_format(path) == "csv" else 0), 0)


def read_rows(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> Iterator[RawRow]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UnsupportedFile(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        if file_format(path) == "csv":
            yield from _csv_rows(handle, encoding, delimiter)
        else:
            yield from _jsonl_rows(handle, encoding)


def _csv_rows(handle: io.BufferedReader, encoding: str, delimiter: str) -> Iterator[RawRow]:
    text = io.TextIOWrapper(handle, encoding=encoding, errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [name.strip() for name in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    if len(set(header)) != len(header) or any(not name for name in header):
        raise UnsupportedFile("CSV header has empty or duplicate column names")
    for number, cells in enumerate(reader, start=1):
        if not cells:
            continue
        if len(cells) > len(header):
            yield RawRow(number, error="malformed_row")
            continue
        values = {name: (cell if cell != "" else None) for name, cell in zip(header, cells, strict=False)}
        error = "encoding_error" if any(has_surrogates(c) for c in cells) else None
        yield RawRow(number, values, error)


def _jsonl_rows(handle: io.BufferedReader, encoding: str) -> Iterator[RawRow]:
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError:
            yield RawRow(number, {"_raw": raw.decode(encoding, errors="surrogateescape")}, "encoding_error")
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            yield RawRow(number, {"_raw": line}, "malformed_json")
            continue
        if not isinstance(value, dict):
            yield RawRow(number, {"_raw": line}, "malformed_row")
            continue
        yield RawRow(number, value)
