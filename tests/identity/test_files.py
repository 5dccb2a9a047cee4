"""``resolve_files`` and ``cdp resolve-file``: CSV in, ``source,record_id,cluster_id`` out; malformed
mappings and inputs fail with an error naming the key or column (never a value from the data)."""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdp.cli import main
from cdp.identity import files
from cdp.identity.files import FileMapping, InputFileError, MappingFileError, resolve_files

HEADER = "id,given,family,born,mail,tel,zip,town"
# Obvious duplicates: c1/c2, c3/c4 (nickname, email case, phone format), c7/c8, c10/c11.
# Namesakes that are not duplicates: c10/c13 and c12/c14 (same name, nothing else in common).
PEOPLE = """\
c1,Margarethe,Okonkwo,1984-07-19,m.okonkwo@mailbox.de,+49 151 12345678,10115,Berlin
c2,Margarete,Okonkwo,1984-07-19,m.okonkwo@mailbox.de,,10115,Berlin
c3,Bartholomew,Fairweather,1962-02-11,bart.fw@post.co.uk,+44 7911 123461,LS1 4AP,Leeds
c4,Bart,Fairweather,1962-02-11,Bart.FW@post.co.uk,+447911123461,LS1 4AP,Leeds
c5,Ingrid,Fairweather,1993-10-28,ingrid.fairweather@post.co.uk,+44 7911 123999,LS1 4AP,Leeds
c6,Wilhelmina,Okonkwo,1950-01-30,w.okonkwo@mailbox.de,+49 151 23456789,80331,Munchen
c7,Radoslaw,Quigley,1977-05-05,rq@shop-mail.de,,10115,Berlin
c8,Radoslaw,Quigley,1977-05-05,rq@shop-mail.de,,10117,Berlin
c9,Annika,Lindqvist,1988-12-01,annika.l@webmail.se,+46 70 123 45 67,11122,Stockholm
c10,Tobias,Hargreaves,1979-03-14,tobias.h@webmail.se,+44 7911 123123,M1 1AE,Manchester
c11,Tobias,Hargreaves,1979-03-14,,+44 7911 123123,M1 1AE,Manchester
c12,Priya,Raghunathan,1991-06-23,priya.r@mailbox.de,+44 7911 123777,EC1A 1BB,London
c13,Tobias,Hargreaves,2001-09-09,t.hargreaves@other-mail.net,+44 7911 123555,G1 1XQ,Glasgow
c14,Priya,Raghunathan,1968-01-15,p.raghunathan@other-mail.net,+44 7911 123888,BS1 4DJ,Bristol
"""
CRM = """\
c1,Margarethe,Okonkwo,1984-07-19,m.okonkwo@mailbox.de,+49 151 12345678,10115,Berlin
c3,Bartholomew,Fairweather,1962-02-11,bart.fw@post.co.uk,+44 7911 123461,LS1 4AP,Leeds
c5,Ingrid,Fairweather,1993-10-28,ingrid.fairweather@post.co.uk,+44 7911 123999,LS1 4AP,Leeds
c6,Wilhelmina,Okonkwo,1950-01-30,w.okonkwo@mailbox.de,+49 151 23456789,80331,Munchen
c7,Radoslaw,Quigley,1977-05-05,rq@shop-mail.de,,10115,Berlin
c10,Tobias,Hargreaves,1979-03-14,tobias.h@webmail.se,+44 7911 123123,M1 1AE,Manchester
c12,Priya,Raghunathan,1991-06-23,priya.r@mailbox.de,+44 7911 123777,EC1A 1BB,London
"""
SHOP = """\
1,Margarete,Okonkwo,1984-07-19,m.okonkwo@mailbox.de,,10115,Berlin
2,Bart,Fairweather,1962-02-11,Bart.FW@post.co.uk,+447911123461,LS1 4AP,Leeds
3,Radoslaw,Quigley,1977-05-05,rq@shop-mail.de,,10117,Berlin
4,Tobias,Hargreaves,1979-03-14,,+44 7911 123123,M1 1AE,Manchester
5,Tobias,Hargreaves,2001-09-09,t.hargreaves@other-mail.net,+44 7911 123555,G1 1XQ,Glasgow
c1,Annika,Lindqvist,1988-12-01,annika.l@webmail.se,+46 70 123 45 67,11122,Stockholm
"""
FIRST = [
    "Amelia",
    "Oskar",
    "Leona",
    "Dmitri",
    "Saoirse",
    "Kenji",
    "Farah",
    "Mateus",
    "Ingeborg",
    "Tomasz",
    "Yara",
    "Emeka",
]
LAST = [
    "Achterberg",
    "Balogun",
    "Castellanos",
    "Dubois",
    "Eriksen",
    "Fitzgerald",
    "Gruber",
    "Haddad",
    "Ivanova",
    "Jablonski",
]
CITIES = ["Hamburg", "Koeln", "Dresden", "Bremen", "Leipzig", "Hannover", "Essen", "Kiel"]


def filler(prefix: str, count: int, start: int = 0) -> str:
    """Distinct people (no two share first and last name), so the model sees realistic value frequencies.

    With only the hand-written rows every value is common (u of exact agreement ~ 1/14) and even clear
    duplicates score barely above the threshold; with these, they score 20+ bits and namesakes -35."""
    rows = []
    for i in range(start, start + count):
        first, last = FIRST[(5 * i) % 12], LAST[i // 6]
        born = date(1950, 1, 1) + timedelta(days=397 * i)
        email = f"{first.lower()}.{last.lower()}{i}@mailhub.de"
        phone = f"+49 151 {20000000 + 7919 * i}"
        rows.append(f"{prefix}{i},{first},{last},{born},{email},{phone},{20000 + 137 * i},{CITIES[i % 8]}")
    return "\n".join(rows) + "\n"


DEDUPE = PEOPLE + filler("f", 60)
CRM_FILE = CRM + filler("f", 30)
SHOP_FILE = SHOP + filler("g", 30, start=30)
MAPPING = """\
id = "id"
[fields]
first_name = "given"
last_name = "family"
date_of_birth = "born"
email = "mail"
phone = "tel"
postcode = "zip"
city = "town"
"""


def write(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_text(f"{header}\n{body}", encoding="utf-8")
    return path


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    return write(tmp_path / "mapping.toml", MAPPING, header="# resolve-file mapping")


def read_output(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def groups(rows: Sequence[dict[str, str]]) -> set[frozenset[str]]:
    clusters: dict[str, set[str]] = {}
    for row in rows:
        clusters.setdefault(row["cluster_id"], set()).add(f"{row['source']}:{row['record_id']}")
    return {frozenset(c) for c in clusters.values()}


# ---- resolution ------------------------------------------------------------------------------------------


def test_dedupe_writes_one_row_per_record_and_links_the_obvious_duplicates(
    tmp_path: Path, mapping: Path
) -> None:
    people = write(tmp_path / "people.csv", DEDUPE)
    out = tmp_path / "out.csv"

    result = resolve_files([people], mapping, out)

    assert out.read_text(encoding="utf-8").splitlines()[0] == "source,record_id,cluster_id"
    rows = read_output(out)
    assert [row["record_id"] for row in rows] == [f"c{i}" for i in range(1, 15)] + [
        f"f{i}" for i in range(60)
    ]
    assert {row["source"] for row in rows} == {"people"}
    pairs = {frozenset({f"people:c{a}", f"people:c{b}"}) for a, b in [(1, 2), (3, 4), (7, 8), (10, 11)]}
    singles = {frozenset({f"people:c{i}"}) for i in (5, 6, 9, 12, 13, 14)}
    singles |= {frozenset({f"people:f{i}"}) for i in range(60)}
    assert groups(rows) == pairs | singles
    assert [tuple(row.values()) for row in rows] == result.assignments
    assert result.report["mode"] == "dedupe"
    assert result.report["records"] == 74
    assert result.report["entities"] == 70
    assert not (tmp_path / "out.csv.tmp").exists()


def test_two_files_are_linked_across_sources_only(tmp_path: Path, mapping: Path) -> None:
    crm = write(tmp_path / "crm.csv", CRM_FILE)
    shop = write(tmp_path / "shop.csv", SHOP_FILE)
    out = tmp_path / "linked.csv"

    result = resolve_files([crm, shop], mapping, out)

    rows = read_output(out)
    assert len(rows) == 73
    assert [row["source"] for row in rows] == ["crm"] * 37 + ["shop"] * 36
    linked = {c for c in groups(rows) if len(c) > 1}
    assert linked == {
        frozenset({"crm:c1", "shop:1"}),
        frozenset({"crm:c3", "shop:2"}),
        frozenset({"crm:c7", "shop:3"}),
        frozenset({"crm:c10", "shop:4"}),
    }
    # The same record id in two files is two records: the file stem tells them apart.
    assert ("crm", "c1") in {(r["source"], r["record_id"]) for r in rows}
    assert ("shop", "c1") in {(r["source"], r["record_id"]) for r in rows}
    assert result.report["mode"] == "link"


def test_normalizing_on_worker_processes_gives_the_in_process_result(
    tmp_path: Path, mapping: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large inputs are normalized in chunks on a process pool (rows out as cells, features back
    column-wise); small chunks force that path here, and it must agree with the in-process one."""
    crm = write(tmp_path / "crm.csv", CRM_FILE + "c99,Zed,Unparsable,1999-02-30,not-an-email,123,,\n")
    shop = write(tmp_path / "shop.csv", SHOP_FILE)
    alone = resolve_files([crm, shop], mapping, workers=1)
    monkeypatch.setattr(files, "_CHUNK", 16)  # 38 + 36 rows: several chunks on two workers
    pools: list[object] = []

    class CountedPool(ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(files, "ProcessPoolExecutor", CountedPool)
    pooled = resolve_files([crm, shop], mapping, workers=2)

    assert len(pools) == 1
    assert pooled.assignments == alone.assignments
    assert pooled.report["unparsed_values"] == alone.report["unparsed_values"] != {}


def test_resolve_files_without_out_writes_nothing(tmp_path: Path, mapping: Path) -> None:
    people = write(tmp_path / "people.csv", DEDUPE)

    result = resolve_files([people], FileMapping.load(mapping))

    assert len(result.assignments) == 74
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mapping.toml", "people.csv"]


def test_the_report_has_counts_and_no_data_values(tmp_path: Path, mapping: Path) -> None:
    people = write(tmp_path / "people.csv", DEDUPE + "c15,Zofia,Brzezinska,not a date,,,,\n")

    report = resolve_files([people], mapping).report

    # Values that fail to normalize are counted (as missing), never shown.
    assert report["unparsed_values"] == {"date_of_birth:unparseable_date": 1}
    text = repr(report)
    for value in ("Okonkwo", "okonkwo", "Zofia", "zofia", "not a date", "1984-07-19", "mailbox.de"):
        assert value not in text


# ---- malformed mappings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MAPPING.replace('id = "id"', 'id = "id"\ncolour = "blue"'), "colour: unknown key"),
        (MAPPING.replace('id = "id"\n', ""), "id: required"),
        (MAPPING.replace('id = "id"', 'id = ""'), "id: required"),
        (MAPPING.replace("first_name =", "frist_name ="), "fields.frist_name: unknown canonical attribute"),
        (
            MAPPING.replace('id = "id"', 'id = "id"\ndate_format = "YYYY-MM-DD"'),
            "date_format[0]: not a strptime",
        ),
        (
            MAPPING.replace('id = "id"', 'id = "id"\ndate_format = ["%d/%m/%Y", "DD.MM.YYYY"]'),
            "date_format[1]: not a strptime",
        ),
        (MAPPING.replace('id = "id"', 'id = "id"\ndate_format = []'), "date_format: must be"),
        (MAPPING.replace('city = "town"', "city = 3"), "fields.city: must be a column name"),
        ('id = "id"\n', "fields: required"),
    ],
    ids=[
        "unknown-key",
        "missing-id",
        "empty-id",
        "unknown-attribute",
        "not-a-format",
        "second-not-a-format",
        "no-formats",
        "column-not-a-string",
        "no-fields",
    ],
)
def test_malformed_mapping_names_the_bad_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    people = write(tmp_path / "people.csv", PEOPLE)

    with pytest.raises(MappingFileError) as caught:
        resolve_files([people], path, tmp_path / "out.csv")

    assert str(caught.value).startswith(message)
    assert not (tmp_path / "out.csv").exists()


def test_mapping_that_is_not_toml_is_a_mapping_error(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text("id = \n", encoding="utf-8")

    with pytest.raises(MappingFileError, match=r"^mapping mapping\.toml is not valid TOML"):
        FileMapping.load(path)


# ---- malformed inputs -----------------------------------------------------------------------------------


def test_input_missing_a_mapped_column_names_the_column_and_the_mapping_key(
    tmp_path: Path, mapping: Path
) -> None:
    people = write(
        tmp_path / "people.csv", "c1,Ann,Lee,1990-01-01,,,\n", header="id,given,family,born,e_mail,tel,zip"
    )

    with pytest.raises(InputFileError) as caught:
        resolve_files([people], mapping)

    assert str(caught.value) == "people.csv: no column 'mail' (mapping key 'fields.email')"


def test_input_missing_the_id_column_names_the_mapping_key(tmp_path: Path, mapping: Path) -> None:
    people = write(tmp_path / "people.csv", "", header=HEADER.replace("id,", "record,"))

    with pytest.raises(InputFileError, match=r"^people\.csv: no column 'id' \(mapping key 'id'\)$"):
        resolve_files([people], mapping)


def test_a_repeated_record_id_is_an_input_error_without_the_id(tmp_path: Path, mapping: Path) -> None:
    people = write(tmp_path / "people.csv", PEOPLE + PEOPLE.splitlines()[8] + "\n")

    with pytest.raises(InputFileError) as caught:
        resolve_files([people], mapping, tmp_path / "out.csv")

    assert str(caught.value) == "people.csv: record id repeated (each id must be unique)"
    assert not (tmp_path / "out.csv").exists()


def test_a_row_with_the_wrong_number_of_cells_names_the_line(tmp_path: Path, mapping: Path) -> None:
    people = write(tmp_path / "people.csv", PEOPLE + "c15,Ann,Lee\n")

    with pytest.raises(InputFileError, match=r"^people\.csv line 16: 3 cells, header has 8$"):
        resolve_files([people], mapping)


def test_two_inputs_with_the_same_stem_are_refused(tmp_path: Path, mapping: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write(tmp_path / "a" / "people.csv", CRM)
    second = write(tmp_path / "b" / "people.csv", SHOP)

    with pytest.raises(InputFileError, match="distinct names"):
        resolve_files([first, second], mapping)


# ---- the CLI --------------------------------------------------------------------------------------------


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_cli_resolve_file_writes_the_output_and_exits_0(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = write(tmp_path / "crm.csv", CRM_FILE)
    shop = write(tmp_path / "shop.csv", SHOP_FILE)
    out = tmp_path / "out.csv"

    code, stdout, stderr = run_cli(
        "resolve-file", "--mapping", str(mapping), "--out", str(out), str(crm), str(shop), capsys=capsys
    )

    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "73 records" in stderr
    rows = read_output(out)
    assert len(rows) == 73
    assert frozenset({"crm:c1", "shop:1"}) in groups(rows)
    assert stdout == ""


def test_cli_resolve_file_with_a_bad_mapping_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "mapping.toml"
    bad.write_text(MAPPING.replace("first_name =", "frist_name ="), encoding="utf-8")
    crm = write(tmp_path / "crm.csv", CRM)
    out = tmp_path / "out.csv"

    code, stdout, stderr = run_cli(
        "resolve-file", "--mapping", str(bad), "--out", str(out), str(crm), capsys=capsys
    )

    assert code == 2
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: fields.frist_name: unknown canonical attribute")
    assert not out.exists()


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [["1", "ann", "lee"]],
        [["1", "", ""], ["2", "", ""], ["3", "", ""]],
    ],
    ids=["empty file", "one record", "nothing to compare"],
)
def test_degenerate_inputs_resolve_without_warnings(tmp_path: Path, rows: list[list[str]]) -> None:
    source = tmp_path / "people.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rec_id", "given_name", "surname"])
        writer.writerows(rows)
    mapping = tmp_path / "map.toml"
    mapping.write_text('id = "rec_id"\n[fields]\nfirst_name = "given_name"\nlast_name = "surname"\n')
    out = tmp_path / "out.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = resolve_files([source], mapping, out)
    assert len(result.assignments) == len(rows)
    assert len({cluster for _, _, cluster in result.assignments}) == len(rows)
    assert math.isfinite(result.resolution.model.prior_weight)
    assert out.read_text().splitlines()[0] == "source,record_id,cluster_id"
