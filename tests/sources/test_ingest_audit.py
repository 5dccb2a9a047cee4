"""Ingestion is audited in the transactions that write: one entry per chunk naming exactly the records it
wrote, rolled back with the chunk; quarantine re-processing, discarding and source registration likewise.

Decision on re-ingesting unchanged data: every chunk transaction records its entry, so a chunk whose rows
were all unchanged records one with its counts and no subjects (nobody's data was touched).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.audit import AuditActor, acting_as
from cdp.audit.sequencer import seal
from cdp.db.models import AuditEntry, AuditSubject, Interaction, SourceRecord
from cdp.platform import Platform
from cdp.sources.ingest import IngestError, IngestService
from cdp.sources.quarantine import QuarantineRepository
from tests.sources.test_ingest import ACTIVITIES, CRM_MAPPING, CRM_ROWS, crm_file, write

CRM_RECORD_FIELDS = [
    "address_line1",
    "attributes",
    "city",
    "date_of_birth",
    "email",
    "first_name",
    "last_activity_at",
    "last_name",
    "phone",
    "postcode",
    "source_record_id",
]


@dataclass(frozen=True)
class Entry:
    id: uuid.UUID
    action: str
    actor: str
    request_id: str | None
    subjects: list[str]
    fields: list[str]
    details: dict[str, Any]
    raw: str
    """Every column of the row as text, to search for values that must never be there."""


def audit_entries(platform: Platform, action: str | None = None) -> list[Entry]:
    with platform.db.read() as session:
        query = select(AuditEntry).order_by(AuditEntry.recorded_at, AuditEntry.id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        rows = list(session.execute(query).scalars())
        return [
            Entry(
                row.id,
                row.action,
                row.actor,
                row.request_id,
                json.loads(row.subjects),
                json.loads(row.fields),
                json.loads(row.details),
                " ".join(str(getattr(row, c.key)) for c in AuditEntry.__table__.columns),
            )
            for row in rows
        ]


def indexed_subjects(platform: Platform, entry_id: uuid.UUID) -> set[str]:
    """The entry's subjects as the search index holds them once the sequencer has sealed the entry."""
    seal(platform.db)
    with platform.db.read() as session:
        return set(
            session.execute(
                select(AuditSubject.subject_id).where(AuditSubject.entry_id == entry_id)
            ).scalars()
        )


def record_ids(platform: Platform) -> dict[str, str]:
    """source record id -> record id (str), through the repository (the natural key is encrypted)."""
    from cdp.sources.records import RecordRepository

    with platform.db.read() as session:
        ids = list(session.execute(select(SourceRecord.id)).scalars())
        stored = RecordRepository(session, platform.vault).get_many(ids)
    return {r.data.source_record_id: str(r.id) for r in stored}


@pytest.fixture
def service(platform: Platform) -> IngestService:
    svc = IngestService(platform.db, platform.vault, chunk_size=2, today=date(2026, 11, 23))
    svc.register_source(CRM_MAPPING)
    return svc


def test_each_chunk_records_exactly_the_records_it_wrote(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    summary = service.ingest_file("crm", crm_file(tmp_path))
    ids = record_ids(platform)
    first, second = audit_entries(platform, "records.ingest")
    assert sorted(first.subjects) == sorted([ids["L-1"], ids["L-2"]])
    assert second.subjects == [ids["L-3"]]
    for entry, inserted in ((first, 2), (second, 1)):
        assert entry.details == {
            "source": "crm",
            "run_id": str(summary.run_id),
            "inserted": inserted,
            "updated": 0,
            "unchanged": 0,
            "rejected": 0,
        }
        assert entry.fields == CRM_RECORD_FIELDS
        assert indexed_subjects(platform, entry.id) == set(entry.subjects)
        for value in ("Maria", "García", "Garcia", "example.com", "07911 123456", "High St", "L-1", "gold"):
            assert value not in entry.raw


def test_a_chunk_that_fails_after_its_entry_keeps_neither_records_nor_entry(
    platform: Platform, service: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = IngestService._advance
    entries_seen_inside: list[int] = []

    def advance_then_fail_on_second_chunk(
        self: IngestService, session: Session, run_id: uuid.UUID, last_row: int, counts: dict[str, Any]
    ) -> None:
        original(self, session, run_id, last_row, counts)
        pending = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "records.ingest")
        entries_seen_inside.append(session.execute(pending).scalar_one())
        if last_row > 2:
            raise RuntimeError("the chunk fails after its audit entry was inserted")

    monkeypatch.setattr(IngestService, "_advance", advance_then_fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="after its audit entry"):
        service.ingest_file("crm", crm_file(tmp_path))
    assert entries_seen_inside == [1, 2]  # the second chunk's entry was in its transaction
    ids = record_ids(platform)
    assert set(ids) == {"L-1", "L-2"}
    [entry] = audit_entries(platform, "records.ingest")
    assert sorted(entry.subjects) == sorted(ids.values())


def test_reingesting_the_same_file_records_entries_without_subjects(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    path = crm_file(tmp_path)
    service.ingest_file("crm", path)
    again = service.ingest_file("crm", path)
    repeat = [
        e for e in audit_entries(platform, "records.ingest") if e.details["run_id"] == str(again.run_id)
    ]
    assert [e.details["unchanged"] for e in repeat] == [2, 1]
    for entry in repeat:
        assert entry.subjects == [] and indexed_subjects(platform, entry.id) == set()
        assert (entry.details["inserted"], entry.details["updated"], entry.details["rejected"]) == (0, 0, 0)


def test_an_updated_record_is_a_subject_and_unchanged_ones_are_not(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path))
    moved = CRM_ROWS[1].replace("3 Mill Rd", "9 New Road")
    again = service.ingest_file("crm", crm_file(tmp_path, [CRM_ROWS[0], moved], "crm2.csv"))
    [entry] = [
        e for e in audit_entries(platform, "records.ingest") if e.details["run_id"] == str(again.run_id)
    ]
    assert entry.subjects == [record_ids(platform)["L-2"]]
    assert (entry.details["updated"], entry.details["unchanged"]) == (1, 1)


def test_a_chunk_of_rejected_rows_only_still_records_its_counts(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path, ["L-9,Ann,Lee,not-an-email,,,,,,,,\n"]))
    [entry] = audit_entries(platform, "records.ingest")
    assert entry.subjects == []
    assert (entry.details["inserted"], entry.details["rejected"]) == (0, 1)
    assert "Ann" not in entry.raw and "not-an-email" not in entry.raw


def test_interaction_chunks_name_the_records_the_interactions_belong_to(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path))
    ids = record_ids(platform)
    service.ingest_file("crm", write(tmp_path / "activities.csv", ACTIVITIES), kind="interactions")
    entries = audit_entries(platform, "interactions.ingest")
    # Rows, A-5/A-6 (chunks of two): A-5 names no record, A-6 has a bad channel.
    assert [sorted(e.subjects) for e in entries] == [[ids["L-1"]], sorted([ids["L-1"], ids["L-2"]]), []]
    assert [(e.details["inserted"], e.details["rejected"]) for e in entries] == [(2, 0), (2, 0), (0, 2)]
    assert "channel" in entries[0].fields and "summary" in entries[0].fields
    assert "direction" in entries[0].fields  # supplied by the mapping's defaults
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(Interaction)).scalar_one() == 4
    for entry in entries:
        assert "Renewal" not in entry.raw and "Welcome" not in entry.raw


def test_entries_name_the_accountable_actor_and_request(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    with acting_as(AuditActor.operator("ops"), "req-ingest-1"):
        service.ingest_file("crm", crm_file(tmp_path, CRM_ROWS[:1]))
    [entry] = audit_entries(platform, "records.ingest")
    assert (entry.actor, entry.request_id) == ("operator:ops", "req-ingest-1")


def test_retrying_a_quarantined_row_records_the_record_it_wrote(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    iso_dob = "L-9,Ann,Lee,ann@example.com,,1990-02-03,,,,,,\n"
    service.ingest_file("crm", crm_file(tmp_path, [iso_dob]))
    with platform.db.read() as session:
        [quarantined] = QuarantineRepository(session, platform.vault).entries()
    service.retry_quarantined(source_name="crm")
    [still] = audit_entries(platform, "quarantine.reprocess")
    assert still.subjects == [] and still.fields == []
    assert (still.details["reprocessed"], still.details["still_rejected"]) == (0, 1)

    service.register_source(CRM_MAPPING.replace('["%d/%m/%Y"]', '["%d/%m/%Y", "%Y-%m-%d"]'))
    service.retry_quarantined(source_name="crm")
    _, done = audit_entries(platform, "quarantine.reprocess")
    assert done.subjects == [record_ids(platform)["L-9"]]
    assert done.fields == CRM_RECORD_FIELDS
    assert done.details == {
        "source": "crm",
        "kind": "records",
        "entries": [str(quarantined.id)],
        "reprocessed": 1,
        "still_rejected": 0,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
    }
    assert "Ann" not in done.raw and "1990-02-03" not in done.raw


def test_discarding_quarantined_rows_records_their_entry_ids(
    platform: Platform, service: IngestService, tmp_path: Path
) -> None:
    service.ingest_file("crm", crm_file(tmp_path, ["L-9,Ann,Lee,bad,,,,,,,,\n"]))
    with platform.db.read() as session:
        [quarantined] = QuarantineRepository(session, platform.vault).entries()
    service.discard_quarantined([quarantined.id])
    [entry] = audit_entries(platform, "quarantine.reprocess")
    assert entry.details == {"entries": [str(quarantined.id)], "discarded": 1}
    assert entry.subjects == []


def test_registering_and_changing_a_source_are_recorded_and_a_refused_change_is_not(
    platform: Platform, service: IngestService
) -> None:
    service.register_source(CRM_MAPPING.replace('default_country = "GB"', 'default_country = "IE"'))
    with pytest.raises(IngestError, match="line of business"):
        service.register_source(CRM_MAPPING.replace('"sales"', '"billing"'))
    entries = audit_entries(platform, "sources.register")
    assert [e.details for e in entries] == [
        {"source": "crm", "line_of_business": "sales", "created": True},
        {"source": "crm", "line_of_business": "sales", "created": False},
    ]
