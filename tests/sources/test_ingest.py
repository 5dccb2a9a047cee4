"""Ingestion on SQLite and PostgreSQL: mapping, normalization, idempotency, versions, quarantine,
interactions and the timeline, and crash safety with real process kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.db.models import BlindIndexEntry, IngestRun, QuarantinedRow, SourceRecord, Subject
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.mapping import MappingError
from cdp.sources.quarantine import QuarantineRepository
from cdp.sources.readers import RawRow
from cdp.sources.records import RecordRepository
from tests.invariants import RECORD_CIPHERTEXTS, assert_platform_invariants

CRM_MAPPING = """
name = "crm"
line_of_business = "sales"
default_country = "GB"
date_formats = ["%d/%m/%Y"]
datetime_formats = ["%Y-%m-%d %H:%M"]

[records]
ignore = ["Notes"]
[records.fields]
LeadId = "source_record_id"
FirstName = "first_name"
LastName = "last_name"
EMail = "email"
Mobile = "phone"
DOB = "date_of_birth"
Street = "address_line1"
PostCode = "postcode"
Town = "city"
LastContact = "last_activity_at"
[records.attributes]
Segment = "segment"

[interactions]
[interactions.fields]
ActivityId = "interaction_id"
LeadId = "source_record_id"
At = "occurred_at"
Channel = "channel"
Subject = "summary"
Kind = "kind"
Amount = "amount"
[interactions.defaults]
direction = "outbound"
[interactions.values.channel]
"E-Mail" = "email"
"Telefon" = "phone"
"""

CRM_HEADER = "LeadId,FirstName,LastName,EMail,Mobile,DOB,Street,PostCode,Town,LastContact,Segment,Notes\n"
CRM_ROWS = [
    "L-1,Maria,García,Maria.Garcia+news@Example.com,07911 123456,14/07/1961,"
    "12 High St,sw1a 1aa,London,2025-01-02 10:00,gold,x\n",
    "L-2,John,Smith,john.smith@example.com,+44 7400 123456,01/02/1980,3 Mill Rd,M1 1AE,Manchester,,silver,\n",
    "L-3,Zoë,Müller,zoe@example.de,,29/02/1988,,,,,bronze,\n",
]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def service(platform: Platform) -> IngestService:
    svc = IngestService(platform.db, platform.vault, chunk_size=2, today=date(2026, 11, 23))
    svc.register_source(CRM_MAPPING)
    return svc


def crm_file(tmp_path: Path, rows: list[str] | None = None, name: str = "crm.csv") -> Path:
    return write(tmp_path / name, CRM_HEADER + "".join(CRM_ROWS if rows is None else rows))


def count(platform: Platform, model: type) -> int:
    with platform.db.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def records_by_id(platform: Platform) -> dict[str, object]:
    with platform.db.read() as session:
        ids = list(session.execute(select(SourceRecord.id)).scalars())
        stored = RecordRepository(session, platform.vault).get_many(ids)
    return {r.data.source_record_id: r for r in stored}


def test_csv_rows_are_mapped_normalized_and_encrypted(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    summary = service.ingest_file("crm", crm_file(tmp_path))
    assert (summary.inserted, summary.updated, summary.unchanged, summary.rejected) == (3, 0, 0, 0)
    maria = records_by_id(platform)["L-1"]
    assert maria.data.first_name == "Maria"  # originals kept as given
    assert maria.data.email == "Maria.Garcia+news@Example.com"
    assert maria.data.date_of_birth == date(1961, 7, 14)
    assert maria.data.attributes == {"segment": "gold"}
    assert maria.normalized is not None
    assert maria.normalized["phone"] == "+447911123456"
    assert maria.normalized["email_match"] == "maria.garcia@example.com"
    assert maria.normalized["postcode"] == "SW1A 1AA"
    assert maria.last_activity_at is not None and maria.last_activity_at.year == 2025
    with platform.db.read() as session:
        repo = RecordRepository(session, platform.vault)
        assert repo.find("email", "maria.garcia@example.com") == [maria.id]
        assert repo.find("phone", "+447911123456") == [maria.id]


def test_reingesting_the_same_file_changes_nothing(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    path = crm_file(tmp_path)
    service.ingest_file("crm", path)
    before = {k: (r.version, r.updated_at) for k, r in records_by_id(platform).items()}
    again = service.ingest_file("crm", path)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 0)
    assert {k: (r.version, r.updated_at) for k, r in records_by_id(platform).items()} == before
    assert count(platform, Subject) == 3


def test_changed_row_updates_and_keeps_version_history(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path))
    moved = CRM_ROWS[1].replace("3 Mill Rd", "9 New Road").replace("john.smith@", "j.smith@")
    summary = service.ingest_file("crm", crm_file(tmp_path, [CRM_ROWS[0], moved, CRM_ROWS[2]], "crm2.csv"))
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 1, 2)
    john = records_by_id(platform)["L-2"]
    assert (john.version, john.data.email, john.data.address_line1) == (
        2,
        "j.smith@example.com",
        "9 New Road",
    )
    with platform.db.read() as session:
        repo = RecordRepository(session, platform.vault)
        history = repo.history(john.id)
        assert [h["version"] for h in history] == [1]
        assert history[0]["record"]["email"] == "john.smith@example.com"
        assert repo.find("email", "john.smith@example.com") == []  # blind index follows the current value
        assert repo.find("email", "j.smith@example.com") == [john.id]


def test_same_record_twice_in_one_file_is_insert_then_update(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    twice = [CRM_ROWS[1], CRM_ROWS[1].replace("silver", "gold")]
    summary = service.ingest_file("crm", crm_file(tmp_path, twice))
    assert (summary.inserted, summary.updated) == (1, 1)
    assert records_by_id(platform)["L-2"].data.attributes == {"segment": "gold"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("L-9,Ann,Lee,ann@example.com,,31/02/1990,,,,,,\n", "impossible_date"),
        ("L-9,Ann,Lee,ann@example.com,,1990-02-03,,,,,,\n", "unparseable_date"),
        ("L-9,Ann,Lee,not-an-email,,,,,,,,\n", "invalid_email"),
        ("L-9,Ann,Lee,ann@example.com,12,,,,,,,\n", "invalid_phone"),
        (",Ann,Lee,ann@example.com,,,,,,,,\n", "missing_record_id"),
        ("L-9,Ann,Lee,ann@example.com,,,,,,,,,extra\n", "malformed_row"),
    ],
)
def test_bad_rows_are_quarantined_with_a_reason_and_the_batch_goes_on(
    platform: Platform, service: IngestService, tmp_path: Path, row: str, reason: str
) -> None:
    summary = service.ingest_file("crm", crm_file(tmp_path, [CRM_ROWS[0], row, CRM_ROWS[1]]))
    assert (summary.inserted, summary.rejected) == (2, 1)
    assert summary.reasons == {reason: 1}
    with platform.db.read() as session:
        [entry] = QuarantineRepository(session, platform.vault).entries()
    assert (entry.reason, entry.row_number, entry.kind) == (reason, 2, "records")
    assert "Ann" not in entry.detail and "ann@" not in entry.detail


def test_encoding_errors_are_quarantined_not_fatal(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes((CRM_HEADER + CRM_ROWS[1]).encode() + b"L-7,Ren\xe9,Roux,r@example.fr,,,,,,,,\n")
    summary = service.ingest_file("crm", path)
    assert (summary.inserted, summary.rejected, dict(summary.reasons)) == (1, 1, {"encoding_error": 1})


def test_unknown_column_in_json_lines_is_quarantined(platform: Platform, tmp_path: Path) -> None:
    svc = IngestService(platform.db, platform.vault)
    svc.register_source(CRM_MAPPING.replace('name = "crm"', 'name = "webform"'))
    lines = [
        json.dumps({"LeadId": "W-1", "EMail": "a@example.com"}),
        json.dumps({"LeadId": "W-2", "EMail": "b@example.com", "Favourite colour": "blue"}),
        "{not json",
        json.dumps(["not", "an", "object"]),
    ]
    summary = svc.ingest_file("webform", write(tmp_path / "w.jsonl", "\n".join(lines) + "\n"))
    assert summary.inserted == 1
    assert summary.reasons == {"unknown_column": 1, "malformed_json": 1, "malformed_row": 1}
    with platform.db.read() as session:
        details = {e.reason: e.detail for e in QuarantineRepository(session, platform.vault).entries()}
    assert "Favourite colour" in details["unknown_column"]


def test_quarantined_rows_can_be_retried_after_fixing_the_mapping(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    iso_dob = "L-9,Ann,Lee,ann@example.com,,1990-02-03,,,,,,\n"
    service.ingest_file("crm", crm_file(tmp_path, [iso_dob]))
    assert service.retry_quarantined(source_name="crm").reprocessed == 0
    service.register_source(CRM_MAPPING.replace('["%d/%m/%Y"]', '["%d/%m/%Y", "%Y-%m-%d"]'))
    result = service.retry_quarantined(source_name="crm")
    assert (result.retried, result.reprocessed, result.still_rejected) == (1, 1, 0)
    assert records_by_id(platform)["L-9"].data.date_of_birth == date(1990, 2, 3)
    with platform.db.read() as session:
        row = session.execute(select(QuarantinedRow)).scalar_one()
        assert row.status == "reprocessed"
        assert session.get(Subject, row.subject_id).wrapped_key is None  # the raw copy is shredded


def test_discarding_a_quarantined_row_shreds_it(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path, ["L-9,Ann,Lee,bad,,,,,,,,\n"]))
    with platform.db.read() as session:
        [entry] = QuarantineRepository(session, platform.vault).entries()
    service.discard_quarantined([entry.id])
    with platform.db.read() as session:
        assert QuarantineRepository(session, platform.vault).entries() == []
        assert QuarantineRepository(session, platform.vault).entries(status="discarded")[0].id == entry.id


def test_mapping_errors_are_clear(service: IngestService) -> None:
    with pytest.raises(MappingError, match="unknown target"):
        service.register_source(CRM_MAPPING.replace('Town = "city"', 'Town = "town"'))
    with pytest.raises(MappingError, match="source_record_id"):
        service.register_source(CRM_MAPPING.replace('LeadId = "source_record_id"\nFirstName', "FirstName", 1))


ACTIVITIES = """ActivityId,LeadId,At,Channel,Subject,Kind,Amount
A-1,L-1,2024-03-01 09:00,E-Mail,Welcome pack,contact,
A-2,L-1,2025-06-10 14:30,Telefon,Renewal call,purchase,"19,99"
A-3,L-2,2024-05-05 08:00,E-Mail,Hello,contact,
A-4,L-1,2023-01-01 00:00,web,Visited pricing,visit,
A-5,L-404,2024-01-01 00:00,E-Mail,Orphan,contact,
A-6,L-1,2024-01-01 00:00,pigeon,Odd,contact,
"""


def test_interactions_build_an_ordered_paginated_timeline(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path))
    path = write(tmp_path / "activities.csv", ACTIVITIES)
    summary = service.ingest_file("crm", path, kind="interactions")
    assert (summary.inserted, summary.rejected) == (4, 2)
    assert summary.reasons == {"unknown_record": 1, "invalid_channel": 1}
    assert service.ingest_file("crm", path, kind="interactions").unchanged == 4

    maria = records_by_id(platform)["L-1"]
    from cdp.sources.interactions import InteractionRepository

    with platform.db.read() as session:
        repo = InteractionRepository(session, platform.vault)
        first = repo.timeline([maria.subject_id], limit=2)
        second = repo.timeline([maria.subject_id], limit=2, cursor=first.next_cursor)
    entries = first.entries + second.entries
    assert [e.details["summary"] for e in entries] == ["Renewal call", "Welcome pack", "Visited pricing"]
    assert second.next_cursor is None
    assert entries[0].channel == "phone" and entries[0].direction == "outbound"
    assert entries[0].details["amount"] == "19.99" and entries[0].department == "sales"


def test_api_batches_use_the_same_path(platform: Platform, service: IngestService) -> None:
    rows = [
        RawRow(1, {"LeadId": "API-1", "EMail": "api@example.com"}),
        RawRow(2, {"LeadId": "API-2", "DOB": "x"}),
    ]
    summary = service.ingest_rows("crm", rows)
    assert (summary.inserted, summary.rejected) == (1, 1)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import date
    from pathlib import Path
    from cdp.config import load_settings
    from cdp.platform import Platform
    from cdp.sources import ingest as ingest_module
    from cdp.sources.ingest import IngestService

    mode, n, path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    platform = Platform.open(load_settings())
    service = IngestService(platform.db, platform.vault, chunk_size=10, today=date(2026, 11, 23))
    if mode == "mid_chunk":
        original, calls = ingest_module.RecordRepository.insert, [0]
        def insert(self, *args):
            calls[0] += 1
            result = original(self, *args)
            if calls[0] > n:
                self.session.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        ingest_module.RecordRepository.insert = insert
    chunks = [0]
    def progress(rows):
        chunks[0] += 1
        if mode == "after_chunks" and chunks[0] >= n:
            os.kill(os.getpid(), signal.SIGKILL)
    service.ingest_file("crm", path, progress=progress)
    print("finished without being killed")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "point"), [("after_chunks", 3), ("mid_chunk", 4)])
def test_ingest_killed_midway_resumes_without_duplicates_or_half_rows(
    platform: Platform, service: IngestService, tmp_path: Path, mode: str, point: int
) -> None:
    rows = [f"K-{i},Name{i},Family{i},p{i}@example.com,,01/01/1980,,,,,,\n" for i in range(95)]
    rows.insert(40, "K-bad,X,Y,not-an-email,,,,,,,,\n")
    path = crm_file(tmp_path, rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env |= {"CDP_DATABASE_URL": platform.settings.database_url, "CDP_KEYRING": platform.settings.keyring}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(point), str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    committed = count(platform, SourceRecord)
    assert committed == 30 if mode == "after_chunks" else committed == 40
    # whole chunks only: every record has its subject, blind indexes, no orphan subjects
    assert count(platform, Subject) == committed
    with platform.db.read() as session:
        indexed = session.execute(select(func.count(func.distinct(BlindIndexEntry.record_id)))).scalar_one()
    assert indexed == committed
    checked = assert_platform_invariants(platform)  # a fresh process's view of the killed run
    assert checked.records == committed and checked.audit_entries > 0
    assert checked.decrypted_by_table["source_record"] >= committed * RECORD_CIPHERTEXTS

    summary = IngestService(platform.db, platform.vault, chunk_size=10, today=date(2026, 11, 23)).ingest_file(
        "crm", path
    )
    assert summary.resumed_after_row == committed
    assert (summary.inserted, summary.rejected) == (95, 1)
    assert count(platform, SourceRecord) == 95
    assert count(platform, Subject) == 95 + 1  # + the quarantined row's key holder
    assert len(records_by_id(platform)) == 95
    with platform.db.read() as session:
        assert session.execute(select(IngestRun.status)).scalars().all() == ["completed"]
    again = service.ingest_file("crm", path)
    assert (again.unchanged, again.rejected) == (95, 1)
    assert count(platform, QuarantinedRow) == 1  # the same bad row is not quarantined twice
    final = assert_platform_invariants(platform)
    assert final.records == 95 and final.decrypted_by_table["quarantined_row"] == 1


def test_ingested_pii_never_reaches_storage_in_any_table(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    """Normalized copies, version history, interactions and quarantined rows are all ciphertext too."""
    from tests.sources.test_records import _raw_storage

    canary = "L-7,Quintessa,Zwetschgenbaum,quintessa.canary@example.org,07911 123456,14/07/1961,"
    service.ingest_file(
        "crm", crm_file(tmp_path, [canary + "5 Canarywharf Lane,SW1A 9ZZ,Llanfairpwll,,gold,\n"])
    )
    moved = canary + "7 Zebracrossing Road,SW1A 9ZZ,Llanfairpwll,,gold,\n"
    bad = "L-8,Quintessa,Zwetschgenbaum,not-an-email-zebracanary,,,,,,,,\n"
    service.ingest_file("crm", crm_file(tmp_path, [moved, bad], "again.csv"))
    activity = ACTIVITIES.splitlines()[0] + "\nA-1,L-7,2024-03-01 09:00,web,Zebrasummary note,visit,\n"
    service.ingest_file("crm", write(tmp_path / "a.csv", activity), kind="interactions")
    with platform.db.transaction() as session:
        from cdp.sources.records import SourceRepository

        SourceRepository(session).add("controlsourcecanary", "sales")
    raw = _raw_storage(platform)
    assert b"controlsourcecanary" in raw
    needles = [
        "Quintessa",
        "quintessa",
        "Zwetschgenbaum",
        "zwetschgenbaum",
        "canary@example",
        "Canarywharf",
        "canarywharf",
        "Zebracrossing",
        "zebracanary",
        "Zebrasummary",
        "Llanfairpwll",
        "llanfairpwll",
        "+447911123456",
        "7911123456",
        "1961-07-14",
    ]
    assert [n for n in needles if n.encode() in raw or n.encode().hex().encode() in raw] == []


def test_junk_values_are_kept_but_flagged_and_never_indexed(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    """A placeholder birth date, a junk phone or a postcode of the wrong format must not cost the whole
    record, and must never become a blocking key that links unrelated people."""
    junk = "L-5,Ann,Lee,ann@example.com,000-000-0000,01/01/1900,1 Elm Rd,12345,Leeds,,,\n"
    summary = service.ingest_file("crm", crm_file(tmp_path, [junk]))
    assert (summary.inserted, summary.rejected) == (1, 0)
    ann = records_by_id(platform)["L-5"]
    assert ann.data.date_of_birth == date(1900, 1, 1) and ann.data.phone == "000-000-0000"
    assert ann.normalized is not None
    assert ann.normalized["quality"] == ["invalid_postcode", "junk_phone", "placeholder_date"]
    assert ann.normalized["date_of_birth"] is None and "phone" not in ann.normalized
    assert ann.normalized["postcode"] == "12345"
    with platform.db.read() as session:
        kinds = set(session.execute(select(BlindIndexEntry.kind)).scalars())
    assert {"phone", "date_of_birth", "phonetic_birth_year"}.isdisjoint(kinds)
    assert {"email", "postcode", "last_name"} <= kinds


def test_retry_by_entry_id_reprocesses_just_that_row(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    rows = [
        "L-8,Bo,Lee,bo@example.com,,1990-02-03,,,,,,\n",
        "L-9,Ann,Lee,ann@example.com,,1991-03-04,,,,,,\n",
    ]
    service.ingest_file("crm", crm_file(tmp_path, rows))
    service.register_source(CRM_MAPPING.replace('["%d/%m/%Y"]', '["%d/%m/%Y", "%Y-%m-%d"]'))
    with platform.db.read() as session:
        first = QuarantineRepository(session, platform.vault).entries()[0]
    result = service.retry_quarantined(entry_ids=[first.id])
    assert (result.retried, result.reprocessed) == (1, 1)
    assert set(records_by_id(platform)) == {"L-8"}
    with platform.db.read() as session:
        assert len(QuarantineRepository(session, platform.vault).entries()) == 1
