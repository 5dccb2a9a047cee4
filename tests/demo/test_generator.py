"""The demo data generator: files agree with their mappings, the output is deterministic, the ground
truth is complete, and the hard cases identity resolution must face are really in the data."""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from cdp.demo import generator as gen
from cdp.demo.generator import FILES, MAPPINGS_DIR, SOURCES, GenerationSummary, generate
from cdp.sources.mapping import CHANNELS, DIRECTIONS, SourceMapping
from cdp.sources.readers import read_rows

PEOPLE = 2000


@dataclass
class Dataset:
    out: Path
    summary: GenerationSummary
    manifest: dict[str, Any]
    mappings: dict[str, SourceMapping]
    records: dict[str, list[dict[str, Any]]]
    interactions: dict[str, list[dict[str, Any]]]
    truth: list[dict[str, str]]
    progress: list[int]

    def record_id(self, source: str, row: dict[str, Any]) -> str:
        column = self.mappings[source].records.column_for("source_record_id")
        assert column is not None
        return str(row[column])

    def person_of(self) -> dict[tuple[str, str], dict[str, str]]:
        return {(t["source"], t["source_record_id"]): t for t in self.truth}

    def noise(self, kind: str, source: str) -> int:
        return int(self.manifest["noise"].get(kind, {}).get("by_source", {}).get(source, 0))


def _rows(path: Path, mapping: SourceMapping) -> Iterator[dict[str, Any]]:
    for row in read_rows(path, encoding=mapping.encoding, delimiter=mapping.csv_delimiter):
        assert row.error is None, f"{path.name} row {row.number}: {row.error}"
        yield row.values


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("demo")
    progress: list[int] = []
    summary = generate(out, people=PEOPLE, seed=42, progress=progress.append)
    mappings = {s: SourceMapping.from_file(MAPPINGS_DIR / f"{s}.toml") for s in SOURCES}
    records = {s: list(_rows(out / FILES[s][0], mappings[s])) for s in SOURCES}
    interactions = {s: list(_rows(out / FILES[s][1], mappings[s])) for s in SOURCES}
    with (out / "ground_truth.csv").open(encoding="utf-8", newline="") as handle:
        truth = list(csv.DictReader(handle))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return Dataset(out, summary, manifest, mappings, records, interactions, truth, progress)


# ---- files and mappings -------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_mapping_parses_and_maps_every_column(data: Dataset, source: str) -> None:
    mapping = data.mappings[source]
    assert mapping.name == source
    assert mapping.line_of_business == gen.LINE_OF_BUSINESS[source]
    assert mapping.interactions is not None
    for section, rows in (
        (mapping.records, data.records[source]),
        (mapping.interactions, data.interactions[source]),
    ):
        assert rows
        columns = set().union(*(row.keys() for row in rows))
        known = set(section.fields) | set(section.attributes) | section.ignore
        assert columns <= known, f"{source}: unmapped columns {sorted(columns - known)}"
        assert set(section.fields) | set(section.attributes) <= columns, (
            "mapping names columns the file lacks"
        )


@pytest.mark.parametrize("source", SOURCES)
def test_interaction_values_map_to_the_canonical_vocabulary(data: Dataset, source: str) -> None:
    section = data.mappings[source].interactions
    assert section is not None
    column = {target: col for col, target in section.fields.items()}
    formats = data.mappings[source].datetime_formats
    kinds: Counter[str] = Counter()
    for row in data.interactions[source]:
        for target, allowed in (("channel", CHANNELS), ("direction", DIRECTIONS)):
            raw = row.get(column[target]) if target in column else None
            value = (
                section.values.get(target, {}).get(raw, raw) if raw is not None else section.defaults[target]
            )
            assert value in allowed, f"{source}: {target} {raw!r}"
        raw_kind = str(row[column["kind"]])
        kind = section.values.get("kind", {}).get(raw_kind, raw_kind).lower()
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", kind), kind
        kinds[kind] += 1
        stamp = _parse(str(row[column["occurred_at"]]), formats)
        assert datetime(2019, 1, 1, tzinfo=UTC) <= stamp <= datetime(2026, 4, 1, tzinfo=UTC)
    assert len(kinds) >= 4
    if source in ("crm", "helpdesk"):
        assert kinds["complaint"] / sum(kinds.values()) > 0.04


def test_interactions_cover_every_channel_direction_and_the_main_kinds(data: Dataset) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for source in SOURCES:
        section = data.mappings[source].interactions
        assert section is not None
        column = {target: col for col, target in section.fields.items()}
        for row in data.interactions[source]:
            for target in ("channel", "direction", "kind"):
                raw = row.get(column[target]) if target in column else None
                if raw is None:
                    seen[target].add(section.defaults[target])
                else:
                    seen[target].add(section.values.get(target, {}).get(str(raw), str(raw)).lower())
    assert seen["channel"] == set(CHANNELS)
    assert seen["direction"] == set(DIRECTIONS)
    wanted = {"inquiry", "complaint", "purchase", "invoice", "payment", "newsletter_open", "visit"}
    assert wanted <= seen["kind"]


def _parse(text: str, formats: tuple[str, ...]) -> datetime:
    for fmt in formats:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise AssertionError(f"{text!r} matches none of {formats}")


def test_billing_files_need_their_declared_encoding(data: Dataset) -> None:
    assert data.mappings["billing"].encoding == "cp1252"
    raw = (data.out / FILES["billing"][0]).read_bytes()
    text = raw.decode("cp1252")  # strict: every byte is valid in the declared encoding
    assert not text.isascii()
    assert any(ch in text for ch in "ÄÖÜÉÈÑÁÍÓ")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert text.splitlines()[0].count(";") == len(gen.BILLING_COLUMNS) - 1


def test_deterministic_for_people_and_seed(tmp_path: Path) -> None:
    calls: list[int] = []
    first = generate(tmp_path / "a", people=400, seed=7, progress=calls.append)
    assert calls == [400]
    second = generate(tmp_path / "b", people=400, seed=7)
    other = generate(tmp_path / "c", people=400, seed=8)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert len(names) == 10
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "crm_contacts.csv").read_bytes() != (
        tmp_path / "c" / "crm_contacts.csv"
    ).read_bytes()
    assert first.records == second.records and first.people == other.people == 400


def test_summary_manifest_and_progress_agree(data: Dataset) -> None:
    summary, manifest = data.summary, data.manifest
    assert data.progress[-1] == PEOPLE == summary.people == manifest["people"]
    assert data.progress == sorted(data.progress)
    assert manifest["seed"] == 42
    for source in SOURCES:
        info = summary.sources[source]
        assert info.records_path.exists() and info.interactions_path.exists() and info.mapping_path.exists()
        assert info.records == len(data.records[source]) == manifest["sources"][source]["records"]
        assert (
            info.interactions == len(data.interactions[source]) == manifest["sources"][source]["interactions"]
        )
    assert summary.records == manifest["records"] == len(data.truth)
    assert summary.noise["plus_address"] == manifest["noise"]["plus_address"]["total"]


# ---- ground truth -------------------------------------------------------------------------------


def test_ground_truth_covers_every_record_exactly_once(data: Dataset) -> None:
    in_files = Counter((s, data.record_id(s, row)) for s in SOURCES for row in data.records[s])
    in_truth = Counter((t["source"], t["source_record_id"]) for t in data.truth)
    assert in_files == in_truth
    assert max(in_truth.values()) == 1
    persons = {t["person_id"] for t in data.truth}
    assert len(persons) == PEOPLE
    households = defaultdict(set)
    for t in data.truth:
        households[t["person_id"]].add(t["household_id"])
    assert all(len(h) == 1 for h in households.values())


def test_people_appear_in_one_to_four_sources_mostly_two_to_four(data: Dataset) -> None:
    sources_of: dict[str, set[str]] = defaultdict(set)
    for t in data.truth:
        sources_of[t["person_id"]].add(t["source"])
    distribution = Counter(len(s) for s in sources_of.values())
    assert set(distribution) == {1, 2, 3, 4}
    assert {str(k): v for k, v in distribution.items()} == data.manifest["persons_by_source_count"]
    share = {k: v / PEOPLE for k, v in distribution.items()}
    assert 0.08 < share[1] < 0.25
    assert share[2] + share[3] + share[4] > 0.75
    assert share[2] > share[4]


def test_some_people_are_twice_in_one_source(data: Dataset) -> None:
    per_source = Counter((t["source"], t["person_id"]) for t in data.truth)
    for source in ("crm", "helpdesk", "billing"):
        twice = sum(1 for (s, _), n in per_source.items() if s == source and n == 2)
        assert twice == data.manifest["sources"][source]["duplicate_records"] > 0
        assert twice / data.manifest["sources"][source]["persons"] < gen.DUPLICATE_RATE[source] * 2


# ---- the hard cases -----------------------------------------------------------------------------


def _crm_by_person(data: Dataset) -> dict[str, list[dict[str, Any]]]:
    truth = data.person_of()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data.records["crm"]:
        out[truth[("crm", row["LeadId"])]["person_id"]].append(row)
    return out


def _births(data: Dataset) -> dict[str, set[str]]:
    """Birth dates per person as CRM (dd/mm/yyyy) and billing (yyyymmdd) show them, as ISO dates."""
    truth = data.person_of()
    out: dict[str, set[str]] = defaultdict(set)
    for row in data.records["crm"]:
        if row.get("DOB"):
            d, m, y = row["DOB"].split("/")
            out[truth[("crm", row["LeadId"])]["person_id"]].add(f"{y}-{m}-{d}")
    for row in data.records["billing"]:
        if row.get("BIRTHDATE"):
            b = row["BIRTHDATE"]
            out[truth[("billing", row["CUSTNO"])]["person_id"]].add(f"{b[:4]}-{b[4:6]}-{b[6:]}")
    return out


def test_households_share_surname_and_postcode(data: Dataset) -> None:
    household = {t["person_id"]: t["household_id"] for t in data.truth}
    members: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for person, rows in _crm_by_person(data).items():
        for row in rows:
            if row.get("LastName") and row.get("PostCode"):
                key = (row["LastName"].casefold(), row["PostCode"].replace(" ", "").casefold())
                members[(*key, household[person])].add(person)
    sharing = [k for k, persons in members.items() if len(persons) >= 2]
    assert len(sharing) >= 30, "households whose members share surname and postcode in the CRM"
    population = data.manifest["population"]
    assert population["couples"] > 0.2 * data.manifest["households"]
    assert population["households_with_landline"] > 0
    assert population["shared_email_couples"] > 0
    assert population["households_flatshare"] > 0


def test_twins_share_birth_date_and_juniors_share_a_name(data: Dataset) -> None:
    births = _births(data)
    by_household: dict[str, list[str]] = defaultdict(list)
    for person, hid in {t["person_id"]: t["household_id"] for t in data.truth}.items():
        by_household[hid].append(person)
    twins = 0
    for persons in by_household.values():
        for i, a in enumerate(persons):
            for b in persons[i + 1 :]:
                if births.get(a, set()) & births.get(b, set()) - {"1900-01-01"}:
                    twins += 1
    assert twins >= 5
    assert data.manifest["population"]["twin_pairs"] >= twins / 2
    juniors = 0
    crm = _crm_by_person(data)
    for persons in by_household.values():
        names = [
            (p, row["FirstName"], row["LastName"].split(" ")[0]) for p in persons for row in crm.get(p, [])
        ]
        juniors += any(a[0] != b[0] and a[1:] == b[1:] for a in names for b in names)
    assert juniors >= 3
    assert data.manifest["population"]["junior_senior_pairs"] > 0


def _email_key(email: str) -> str:
    local, _, domain = email.lower().partition("@")
    local = local.split("+")[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def test_emails_belong_to_one_person_or_one_household(data: Dataset) -> None:
    truth = data.person_of()
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    columns = {"crm": "EMail", "helpdesk": "EMail", "billing": "EMAIL", "newsletter": "email"}
    for source, column in columns.items():
        for row in data.records[source]:
            email = row.get(column)
            if email and email not in gen.JUNK_EMAILS:
                t = truth[(source, data.record_id(source, row))]
                owners[_email_key(str(email))].add((t["person_id"], t["household_id"]))
    typo_budget = sum(data.noise("typo_email", s) for s in SOURCES)
    shared = [o for o in owners.values() if len(o) > 1]
    across_households = [o for o in shared if len({h for _, h in o}) > 1]
    assert len(across_households) <= typo_budget
    assert any(len({p for p, _ in o}) > 1 for o in shared), "couples sharing one email"
    # namesakes: addresses that differ only in digits belong to different people
    stems: dict[str, set[str]] = defaultdict(set)
    for key, persons in owners.items():
        stems[re.sub(r"\d+@", "@", key)].update(p for p, _ in persons)
    assert sum(1 for persons in stems.values() if len(persons) > 1) >= 10


def test_plus_addressing_and_gmail_variants(data: Dataset) -> None:
    emails = [str(r["email"]) for r in data.records["newsletter"] if r.get("email")]
    plus = sum("+" in e for e in emails) / len(emails)
    assert abs(plus - gen.PLUS_ADDRESS_RATE["newsletter"]) < 0.03
    crm = [str(r["EMail"]) for r in data.records["crm"] if r.get("EMail")]
    assert any("+" in e for e in crm)
    assert any(e.endswith("@googlemail.com") for e in crm + emails)
    for kind in ("gmail_dots", "googlemail_swap", "email_upper_case", "typo_email", "junk_email"):
        assert data.manifest["noise"][kind]["total"] > 0, kind


def test_billing_is_a_legacy_upper_case_system(data: Dataset) -> None:
    surnames = [str(r["SURNAME"]) for r in data.records["billing"] if r.get("SURNAME")]
    upper = sum(s == s.upper() and s != s.lower() for s in surnames) / len(surnames)
    assert abs(upper - gen.BILLING_UPPER_CASE_RATE) < 0.05
    crm = [str(r["LastName"]) for r in data.records["crm"] if r.get("LastName")]
    assert sum(s == s.upper() and s != s.lower() for s in crm) / len(crm) < 0.1


def test_postcodes_lost_their_leading_zero_in_billing(data: Dataset) -> None:
    short = [str(r["ZIP"]) for r in data.records["billing"] if r.get("ZIP") and str(r["ZIP"]).isdigit()]
    lost = sum(len(z) < 5 for z in short)
    assert lost == data.noise("postcode_lost_leading_zero", "billing") > 10
    # every such record's owner has the zero in the CRM, when the CRM kept it
    crm_zero = [
        str(r["PostCode"]) for r in data.records["crm"] if str(r.get("PostCode") or "").startswith("0")
    ]
    assert crm_zero


def test_placeholder_and_swapped_birth_dates(data: Dataset) -> None:
    billing = sum(r.get("BIRTHDATE") == "19000101" for r in data.records["billing"])
    crm = sum(r.get("DOB") == "01/01/1900" for r in data.records["crm"])
    assert billing == data.noise("dob_placeholder", "billing") > 0
    assert crm == data.noise("dob_placeholder", "crm") > 0
    for source in ("billing", "crm"):
        rate = data.noise("dob_placeholder", source) / len(data.records[source])
        assert rate < gen.DOB_PLACEHOLDER_RATE[source] * 1.5
    assert data.noise("dob_day_month_swapped", "crm") > 0
    births = _births(data)
    swapped = 0
    for dates in births.values():
        for a in dates:
            for b in dates:
                swapped += a != b and a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]
    assert swapped > 0


def test_sparse_sources_and_free_form_names(data: Dataset) -> None:
    newsletter = data.records["newsletter"]
    assert all(row.get("email") for row in newsletter)
    assert sum(1 for row in newsletter if not row.get("first_name")) > 0.1 * len(newsletter)
    names = [str(r["Name"]) for r in data.records["helpdesk"]]
    assert any(re.fullmatch(r"[^,]+, [^,]+", n) for n in names), "Garcia, Maria"
    assert any(re.match(r"(Mr\.?|Mrs|Herr|Frau|Sr\.|Sra\.|M\.|Mme|Dhr\.|Mevr\.) \w\. ", n) for n in names)
    assert all(set(row) <= {"KontaktId", "Name", "EMail", "Ort", "Sprache", "AngelegtAm", "LetzterKontakt"}
               for row in data.records["helpdesk"])  # fmt: skip


def test_changes_over_time_and_other_noise_are_counted(data: Dataset) -> None:
    noise = data.manifest["noise"]
    required = (
        "stale_email", "stale_address", "stale_phone", "maiden_name", "duplicate_record", "nickname",
        "middle_name_in_given", "typo_first_name", "typo_last_name", "swapped_names", "transliterated",
        "accents_stripped", "second_surname_dropped", "generational_suffix", "phone_international_format",
        "phone_national_format", "junk_phone", "street_abbreviated", "city_variant", "initials_only",
        "name_last_comma_first", "name_title_initial", "national_id_format",
    )  # fmt: skip
    missing = [kind for kind in required if noise.get(kind, {}).get("total", 0) == 0]
    assert not missing
    population = data.manifest["population"]
    changes = (
        "email_changed",
        "phone_changed",
        "moved_households",
        "moved_out_children",
        "maiden_name_changes",
    )
    for kind in (*changes, "namesakes_injected", "hyphenated_names"):
        assert population[kind] > 0, kind
    assert len(data.manifest["locales"]) == 6


def test_transliteration_is_visible_across_sources(data: Dataset) -> None:
    truth = data.person_of()
    surnames: dict[str, set[str]] = defaultdict(set)
    for source, column in (("crm", "LastName"), ("billing", "SURNAME")):
        for row in data.records[source]:
            if row.get(column):
                surnames[truth[(source, data.record_id(source, row))]["person_id"]].add(
                    str(row[column]).casefold()
                )
    pairs = 0
    for names in surnames.values():
        for name in names:
            if "ü" in name or "ö" in name or "ä" in name:
                german = name.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")
                pairs += german in names
    assert pairs > 0, "Müller in one source, Mueller in another"


def test_interactions_reference_their_own_records_except_counted_orphans(data: Dataset) -> None:
    total_orphans = 0
    for source in SOURCES:
        ids = {data.record_id(source, row) for row in data.records[source]}
        section = data.mappings[source].interactions
        assert section is not None
        column = section.column_for("source_record_id")
        assert column is not None
        refs = [str(row[column]) for row in data.interactions[source]]
        orphans = sum(ref not in ids for ref in refs)
        assert orphans == data.manifest["sources"][source]["orphan_interactions"]
        assert orphans <= 3 * gen.ORPHAN_RATE * len(refs) + 5
        total_orphans += orphans
        per_record = Counter(refs)
        counts = sorted(per_record.values())
        assert counts[-1] >= 8 * counts[len(counts) // 2], f"{source}: frequencies should be heavy-tailed"
    assert total_orphans == data.manifest["orphan_interactions"] > 0


def test_purchases_and_invoices_carry_amounts(data: Dataset) -> None:
    purchases = [r for r in data.interactions["crm"] if r["Type"] == "Purchase"]
    assert purchases and all(float(str(r["Amount"])) > 0 and r["Currency"] for r in purchases)
    invoices = [r for r in data.interactions["billing"] if r["DOCTYPE"] == "INV"]
    assert invoices and all(re.fullmatch(r"\d+,\d\d", str(r["AMOUNT"])) for r in invoices)
    years = Counter(str(r["DOCDATE"])[:4] for r in invoices)
    assert set(years) >= {str(y) for y in range(2019, 2027)}


def test_mapped_rows_pass_ingestion_preparation(data: Dataset) -> None:
    """With the normalizers present, nearly every generated row is accepted by the ingest path; what is
    rejected is the deliberate junk."""
    pytest.importorskip("cdp.identity.normalize")
    from cdp.sources.prepare import Rejected, prepare_interaction, prepare_record

    for source in SOURCES:
        mapping = data.mappings[source]
        reasons: Counter[str] = Counter()
        for row in data.records[source]:
            try:
                prepare_record(dict(row), mapping, today=date(2026, 4, 1))
            except Rejected as exc:
                reasons[exc.reason] += 1
        assert sum(reasons.values()) <= 0.1 * len(data.records[source]), (source, reasons.most_common(5))
        for row in data.interactions[source][:2000]:
            prepare_interaction(dict(row), mapping)


@pytest.mark.slow
def test_throughput_is_reported(tmp_path: Path) -> None:
    started = time.perf_counter()
    summary = generate(tmp_path, people=20_000, seed=1)
    seconds = time.perf_counter() - started
    print(
        f"\ndemo generator: {summary.people / seconds:,.0f} people/s, {summary.records / seconds:,.0f} "
        f"records/s, {summary.interactions / seconds:,.0f} interactions/s ({seconds:.1f}s for 20,000 people)"
    )
    assert summary.people == 20_000
