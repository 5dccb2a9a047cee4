"""The shared invariant checker (tests/invariants.py) on SQLite and PostgreSQL: silent on a healthy
platform, with counts that prove it looked, and failing — by id, never by value — on each kind of damage
a crash could leave: a tampered ciphertext, a half-erased subject in either direction, an index entry
that still finds a shredded person, a data key that no longer unwraps, a broken audit chain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from cdp.db.models import (
    AuditEntry,
    BlindIndexEntry,
    ErasureJob,
    Interaction,
    QuarantinedRow,
    SourceRecord,
    Subject,
)
from cdp.db.types import utcnow
from cdp.dsr.destruction import Destroyer
from cdp.platform import Platform
from cdp.retention.policy import RetentionPolicy
from cdp.sources.ingest import IngestService
from cdp.sources.quarantine import QuarantineRepository
from cdp.sources.records import RecordRepository
from tests.invariants import RECORD_CIPHERTEXTS, assert_platform_invariants, check_platform_invariants

MAPPING = """
name = "crm"
line_of_business = "sales"
default_country = "GB"
date_formats = ["%Y-%m-%d"]
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
Id = "source_record_id"
First = "first_name"
Last = "last_name"
Email = "email"
Born = "date_of_birth"
[interactions.fields]
ActivityId = "interaction_id"
Id = "source_record_id"
At = "occurred_at"
Summary = "summary"
[interactions.defaults]
channel = "email"
direction = "outbound"
kind = "contact"
"""
PEOPLE = "Id,First,Last,Email,Born\n" + "".join(
    f"P-{i},Name{i},Family{i},person{i}@example.com,1980-01-{1 + i:02d}\n" for i in range(5)
)
BAD = "P-bad,Zebedee,Quarantinee,not-an-email,\n"
CHANGED = PEOPLE.replace("person0@example.com", "person0.new@example.com")
ACTIVITIES = "ActivityId,Id,At,Summary\nA-1,P-0,2025-01-02 10:00,Hello\nA-2,P-1,2025-01-03 11:00,Hi\n"
CANARIES = ("Name0", "Family0", "person0", "Zebedee", "Quarantinee")
FIELDS_PER_RECORD = RECORD_CIPHERTEXTS + 1
"""Every attribute ciphertext of a record plus its encrypted normalized copy."""


@dataclass(frozen=True)
class Populated:
    records: dict[str, uuid.UUID]
    """source_record_id → record id"""
    subjects: dict[str, uuid.UUID]


@pytest.fixture
def populated(platform: Platform, tmp_path: Path) -> Populated:
    """Five people (one with a superseded version), two interactions, one quarantined row."""
    service = IngestService(platform.db, platform.vault, today=date(2026, 1, 1))
    service.register_source(MAPPING)
    for name, text, kind in (
        ("people.csv", PEOPLE + BAD, "records"),
        ("changed.csv", CHANGED, "records"),
        ("activities.csv", ACTIVITIES, "interactions"),
    ):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        service.ingest_file("crm", path, kind=kind)
    with platform.db.read() as session:
        rows = session.execute(select(SourceRecord.id, SourceRecord.subject_id)).all()
        stored = RecordRepository(session, platform.vault).get_many([r.id for r in rows])
    by_source_id = {r.data.source_record_id: r for r in stored}
    return Populated(
        {k: r.id for k, r in by_source_id.items()}, {k: r.subject_id for k, r in by_source_id.items()}
    )


def _failure(platform: Platform) -> str:
    with pytest.raises(AssertionError) as failed:
        assert_platform_invariants(platform)
    message = str(failed.value)
    assert not [c for c in CANARIES if c.lower() in message.lower()], "plaintext PII in a failure message"
    return message


def test_a_healthy_platform_passes_and_the_counts_prove_every_ciphertext_was_opened(
    platform: Platform, populated: Populated
) -> None:
    report = assert_platform_invariants(platform)
    assert report.records == 5
    assert report.decrypted_by_table["source_record"] == 5 * FIELDS_PER_RECORD
    assert report.decrypted_by_table["source_record_version"] == 1
    assert report.decrypted_by_table["interaction"] == 2
    assert report.decrypted_by_table["quarantined_row"] == 1
    assert report.subjects_live == report.data_keys_unwrapped == 6  # five people + the quarantined row
    assert (report.subjects_shredded, report.shredded_skipped) == (0, 0)
    assert report.blind_index_entries > 0 and report.audit_entries > 0


def test_one_flipped_ciphertext_byte_fails_naming_the_row_and_field(
    platform: Platform, populated: Populated
) -> None:
    record_id = populated.records["P-2"]
    with platform.db.transaction() as session:
        blob = session.execute(
            select(SourceRecord.enc_email).where(SourceRecord.id == record_id)
        ).scalar_one()
        tampered = blob[:-1] + bytes([blob[-1] ^ 1])
        session.execute(update(SourceRecord).where(SourceRecord.id == record_id).values(enc_email=tampered))
    message = _failure(platform)
    assert f"source_record {record_id}" in message and "source_record.email" in message
    assert "failed authentication" in message


def test_a_truncated_interaction_ciphertext_fails_too(platform: Platform, populated: Populated) -> None:
    with platform.db.transaction() as session:
        interaction_id, blob = session.execute(select(Interaction.id, Interaction.enc_details).limit(1)).one()
        session.execute(
            update(Interaction).where(Interaction.id == interaction_id).values(enc_details=blob[:20])
        )
    assert f"interaction {interaction_id}" in _failure(platform)


def test_a_shredded_key_with_its_record_still_there_is_half_erased(
    platform: Platform, populated: Populated
) -> None:
    """The key goes, the record (and its blind-index tokens) stay: what a destruction split by a crash
    between shredding and deleting would leave."""
    subject_id = populated.subjects["P-3"]
    with platform.db.transaction() as session:
        session.execute(
            update(Subject)
            .where(Subject.id == subject_id)
            .values(wrapped_key=None, kek_version=None, shredded_at=utcnow())
        )
    report = check_platform_invariants(platform)
    record_id = populated.records["P-3"]
    assert f"half-erased: source_record {record_id} still exists under shredded subject {subject_id}" in (
        report.problems
    )
    assert any(p.startswith("half-erased: blind_index") and str(subject_id) in p for p in report.problems)
    assert report.records == 5
    _failure(platform)


def test_deleted_records_whose_key_was_kept_are_half_erased(platform: Platform, populated: Populated) -> None:
    """The other half: the rows are gone but the data key that opened them survives."""
    with platform.db.transaction() as session:
        session.execute(delete(SourceRecord).where(SourceRecord.id == populated.records["P-4"]))
    message = _failure(platform)
    assert "1 live data key(s) hold no data any more" in message
    assert str(populated.subjects["P-4"]) in message


def test_an_index_token_under_another_subject_than_its_record_fails(
    platform: Platform, populated: Populated
) -> None:
    """A token must belong to its record's subject: shredding that subject drops exactly its tokens, so a
    token filed under another subject would outlive the erasure and keep the person findable."""
    record_id, other = populated.records["P-2"], populated.subjects["P-1"]
    with platform.db.transaction() as session:
        session.add(BlindIndexEntry(kind="email", token=b"\0" * 16, record_id=record_id, subject_id=other))
    message = _failure(platform)
    assert f"subject {other} is not its record's" in message


def test_a_properly_erased_subject_and_a_closed_quarantine_entry_are_skipped_not_failed(
    platform: Platform, populated: Populated
) -> None:
    """Crypto-shredding on purpose: a closed quarantine entry keeps its row under a shredded key, and an
    erased person (the real destruction path) has their key shredded with every row of theirs deleted."""
    with platform.db.transaction() as session:
        destroyer = Destroyer(session, platform.vault, RetentionPolicy.load())
        plan = destroyer.plan([populated.records["P-4"]], reason="retention", suppress=False)
        assert destroyer.execute(destroyer.save(plan), plan).subjects_shredded == 1
        entry_id = session.execute(select(QuarantinedRow.id)).scalar_one()
        QuarantineRepository(session, platform.vault).close(entry_id, "discarded")
    report = assert_platform_invariants(platform)
    assert report.records == 4
    assert report.subjects_shredded == 2
    assert report.shredded_skipped == 1  # the quarantined payload, unreadable by design
    assert report.decrypted_by_table["quarantined_row"] == 0


def test_an_erasure_marked_completed_with_its_records_still_there_fails(
    platform: Platform, populated: Populated
) -> None:
    """The job's completion commits with the destruction; a completed job whose records survive is a
    destruction that was recorded but never happened."""
    record_id = populated.records["P-2"]
    with platform.db.transaction() as session:
        destroyer = Destroyer(session, platform.vault, RetentionPolicy.load())
        job_id = destroyer.save(destroyer.plan([record_id], reason="retention", suppress=False))
        session.execute(update(ErasureJob).where(ErasureJob.id == job_id).values(status="completed"))
    message = _failure(platform)
    assert f"completed erasure job {job_id} left 1 of its 1 record(s), e.g. {record_id}" in message


def test_a_data_key_that_no_longer_unwraps_fails(platform: Platform, populated: Populated) -> None:
    subject_id = populated.subjects["P-0"]
    with platform.db.transaction() as session:
        wrapped = session.execute(select(Subject.wrapped_key).where(Subject.id == subject_id)).scalar_one()
        session.execute(
            update(Subject)
            .where(Subject.id == subject_id)
            .values(wrapped_key=bytes([wrapped[0] ^ 1]) + wrapped[1:])
        )
    assert f"subject {subject_id}: data key does not unwrap" in _failure(platform)


def test_a_modified_audit_entry_fails(platform: Platform, populated: Populated) -> None:
    assert_platform_invariants(platform)  # seals what ingestion wrote
    with platform.db.transaction() as session:
        entry_id = session.execute(select(AuditEntry.id).where(AuditEntry.seq == 1)).scalar_one()
        session.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(outcome="denied"))
    message = _failure(platform)
    assert "audit chain does not verify" in message and "entry seq 1" in message
