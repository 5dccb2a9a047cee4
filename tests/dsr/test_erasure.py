"""Erasure end to end: what is destroyed, what survives (other customers, legal holds, pseudonymized
bookkeeping), the signed receipt, suppression on re-ingest, and the request's state machine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from cdp.access.gate import Actor
from cdp.access.outbox import Outbox
from cdp.db.models import (
    AuditEntry,
    Base,
    BlindIndexEntry,
    EntityMember,
    ErasureJob,
    LegalHold,
    QuarantinedRow,
    RetainedRecord,
    SourceRecord,
    Subject,
)
from cdp.dsr.destruction import Destroyer
from cdp.dsr.receipts import SignedReceipt
from cdp.dsr.service import DsrError, DsrService, VerificationFailed
from cdp.platform import Platform
from cdp.retention.policy import RetentionPolicy
from cdp.sources.ingest import IngestService
from tests.dsr.world import World, seed_world
from tests.profiles.fixtures import CRM_RECORDS

MARIA_VALUES = (
    "Maria",
    "García",
    "Garcia",
    "maria.garcia@example.com",
    "7911 123456",  # digits only where they cannot turn up by chance in a hex hash or id
    "447911123456",
    "QQ123456C",
    "High Street",
    "SW1A",
    "two weeks late",
    "refund order 42",
    "Invoice for Maria",
)


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    return seed_world(platform, tmp_path)


def _service(platform: Platform, *, approval: bool = False) -> DsrService:
    settings = platform.settings.with_overrides(dsr_erasure_requires_approval=approval)
    return DsrService(platform.db, platform.vault, settings, RetentionPolicy.load())


def _maria_as_customer(world: World) -> Actor:
    record = world.customers.maria_crm_record
    return Actor(f"customer:{record}", "customer", None, record)


def _secrets_of(platform: Platform, record_ids: tuple[uuid.UUID, ...]) -> dict[str, list[bytes]]:
    """Every ciphertext, token and wrapped key the records hold, to look for after the erasure."""
    with platform.db.read() as session:
        records = session.execute(select(SourceRecord).where(SourceRecord.id.in_(record_ids))).scalars().all()
        subjects = [r.subject_id for r in records]
        tokens = session.execute(
            select(BlindIndexEntry.token).where(BlindIndexEntry.record_id.in_(record_ids))
        ).scalars()
        keys = session.execute(select(Subject.wrapped_key).where(Subject.id.in_(subjects))).scalars()
        return {
            "ciphertexts": [r.enc_email for r in records] + [r.enc_last_name for r in records],
            "tokens": list(tokens),
            "keys": [k for k in keys if k],
            "subjects": [s.bytes for s in subjects],
        }


def _all_rows(platform: Platform) -> Iterator[tuple[str, dict[str, Any]]]:
    with platform.db.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                yield table.name, dict(row)


ACCOUNTABILITY_TABLES = {"audit_entry", "audit_subject", "dsr_request", "erasure_job", "destruction_receipt"}
"""Tables that may name the erased records' ids (never their data): the audit trail and the request."""


def test_erasure_destroys_every_trace_of_the_customer_and_nothing_of_anyone_else(
    platform: Platform, world: World
) -> None:
    secrets = _secrets_of(platform, world.maria_records)
    service = _service(platform)
    request = service.open_self_service(_maria_as_customer(world), "erasure")
    result = service.process(request.id)

    assert result.request.status == "completed"
    assert result.outcome is not None and result.outcome.records == 3
    ids = {str(r) for r in world.maria_records}
    subject_hex = {s.hex() for s in secrets["subjects"]}
    for table, row in _all_rows(platform):
        for column, value in row.items():
            if isinstance(value, bytes):
                for kind, blobs in secrets.items():
                    assert value not in blobs, f"{table}.{column} still holds one of Maria's {kind}"
            if isinstance(value, str):
                for plain in MARIA_VALUES:
                    assert plain not in value, f"{table}.{column} holds Maria's data"
            if isinstance(value, uuid.UUID) and table not in ACCOUNTABILITY_TABLES:
                assert str(value) not in ids, f"{table}.{column} still points at an erased record"
                assert value.hex not in subject_hex or table == "subject"
    with platform.db.read() as session:
        shredded = session.execute(
            select(Subject.wrapped_key, Subject.shredded_at).where(
                Subject.id.in_([uuid.UUID(bytes=s) for s in secrets["subjects"]])
            )
        ).all()
    assert shredded and all(key is None and at is not None for key, at in shredded)

    with platform.db.read() as session:
        survivors = session.execute(select(EntityMember.entity_id, EntityMember.record_id)).all()
    assert {entity for entity, _ in survivors} == {world.customers.john, world.customers.ana}
    assert len(survivors) == 2 and (world.customers.ana, world.customers.ana_record) in survivors


def test_the_database_file_holds_no_ciphertext_token_or_key_of_the_erased_customer(
    platform: Platform, world: World
) -> None:
    if not platform.db.is_sqlite:
        pytest.skip("a byte scan of the database file is possible on the embedded store only")
    secrets = _secrets_of(platform, world.maria_records)
    service = _service(platform)
    service.process(service.open_self_service(_maria_as_customer(world), "erasure").id)
    with platform.db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(platform.db.url.database or "")
    raw = path.read_bytes() + (
        path.with_name(path.name + "-wal").read_bytes()
        if path.with_name(path.name + "-wal").exists()
        else b""
    )
    for kind in ("ciphertexts", "tokens", "keys"):
        for blob in secrets[kind]:
            assert blob not in raw, f"one of Maria's {kind} survives in the database file"
    for plain in ("maria.garcia@example.com", "QQ123456C"):
        assert plain.encode() not in raw


def test_bookkeeping_documents_are_kept_pseudonymized_with_amounts_dates_and_the_reason(
    platform: Platform, world: World
) -> None:
    service = _service(platform)
    result = service.process(service.open_self_service(_maria_as_customer(world), "erasure").id)
    with platform.db.read() as session:
        kept = session.execute(select(RetainedRecord).order_by(RetainedRecord.occurred_at)).scalars().all()
    assert [(k.kind, k.amount, k.currency) for k in kept] == [
        ("invoice", "129.90", "GBP"),
        ("payment", "129.90", "GBP"),
    ]
    assert {k.reason for k in kept} == {"legal_obligation:bookkeeping"}
    assert len({k.pseudonym for k in kept}) == 1, "one person's documents share one pseudonym"
    assert all(k.retain_until.year == k.occurred_at.year + 10 for k in kept)
    assert result.receipt is not None
    assert result.receipt.content["kept_pseudonymized"]["bookkeeping"]["count"] == 2


def test_the_erasure_receipt_is_signed_and_verifies_offline_and_a_tampered_one_does_not(
    platform: Platform, world: World
) -> None:
    service = _service(platform)
    result = service.process(service.open_self_service(_maria_as_customer(world), "erasure").id)
    receipt = result.receipt
    assert receipt is not None and receipt.verify()
    exported = SignedReceipt.from_dict(receipt.to_dict())
    assert exported.verify(receipt.public_key)
    statement = exported.content
    assert statement["customer_id"] == str(world.maria)
    assert sorted(statement["destroyed_records"]) == sorted(str(r) for r in world.maria_records)
    forged = SignedReceipt.from_dict(
        {**receipt.to_dict(), "statement": receipt.statement.replace('"records":3', '"records":2')}
    )
    assert forged.statement != receipt.statement
    assert not forged.verify(receipt.public_key)


def test_reingesting_an_erased_customer_from_an_old_source_is_quarantined_as_suppressed(
    platform: Platform, world: World, tmp_path: Path
) -> None:
    service = _service(platform)
    service.process(service.open_self_service(_maria_as_customer(world), "erasure").id)
    path = tmp_path / "crm_again.csv"
    path.write_text(CRM_RECORDS, encoding="utf-8")
    summary = IngestService(platform.db, platform.vault).ingest_file("crm", path)
    assert summary.reasons == {"suppressed": 1}
    assert summary.unchanged == 1  # John is as he was
    assert summary.inserted == 0
    with platform.db.read() as session:
        quarantined = session.execute(select(QuarantinedRow.reason, QuarantinedRow.detail)).all()
        actions = session.execute(select(AuditEntry.action)).scalars().all()
    assert [q.reason for q in quarantined] == ["suppressed"]
    assert "Maria" not in quarantined[0].detail and "@" not in quarantined[0].detail
    assert "suppression.match" in actions


def test_a_record_under_legal_hold_survives_the_erasure_and_the_receipt_says_so(
    platform: Platform, world: World
) -> None:
    held = world.customers.maria_helpdesk_record
    with platform.db.transaction() as session:
        session.add(
            LegalHold(
                record_id=held, entity_id=world.maria, reason="litigation 2026-17", created_by="user:dpo"
            )
        )
    service = _service(platform)
    result = service.process(service.open_self_service(_maria_as_customer(world), "erasure").id)
    assert result.receipt is not None
    assert result.receipt.content["kept_under_legal_hold"] == [str(held)]
    with platform.db.read() as session:
        left = (
            session.execute(select(SourceRecord.id).where(SourceRecord.id.in_(world.maria_records)))
            .scalars()
            .all()
        )
    assert left == [held]


def test_processing_again_after_a_crash_between_plan_and_destruction_completes_the_erasure(
    platform: Platform, world: World
) -> None:
    service = _service(platform)
    request = service.open_self_service(_maria_as_customer(world), "erasure")
    with platform.db.transaction() as session:  # the first commit of _erase, then the process died
        destroyer = Destroyer(session, platform.vault, RetentionPolicy.load())
        plan = destroyer.plan(
            list(world.maria_records), reason="dsr_erasure", suppress=True, entity_id=world.maria
        )
        job_id = destroyer.save(plan, request_id=request.id)
    first = service.process(request.id)
    again = service.process(request.id)
    assert first.request.status == again.request.status == "completed"
    assert first.request.result_id == again.request.result_id
    with platform.db.read() as session:
        jobs = session.execute(select(ErasureJob.id, ErasureJob.status)).all()
    assert jobs == [(job_id, "completed")]


def test_a_dpo_request_on_behalf_needs_the_code_sent_to_the_email_on_file_and_another_dpos_approval(
    platform: Platform, world: World
) -> None:
    service = _service(platform, approval=True)
    request = service.open_on_behalf(world.maria, "erasure", opened_by="user:dpo-1")
    assert request.status == "verifying" and request.approval_required
    with platform.db.read() as session:
        message = Outbox(session, platform.vault).latest(1)[0]
    assert message.purpose == "dsr_verification" and message.recipient == "maria.garcia@example.com"
    code = next(word.rstrip(".") for word in message.body.split() if word.rstrip(".").isdigit())

    with pytest.raises(VerificationFailed) as wrong:
        service.verify(request.id, "00000000" if code != "00000000" else "11111111")
    assert wrong.value.reason == "bad_code"
    with pytest.raises(DsrError):
        service.process(request.id)
    verified = service.verify(request.id, code)
    assert verified.status == "awaiting_approval" and verified.verification == "email_code"
    with pytest.raises(DsrError, match="cannot also approve"):
        service.approve(request.id, approver="user:dpo-1")
    approved = service.approve(request.id, approver="user:dpo-2")
    assert approved.status == "in_progress"
    assert service.process(request.id).request.status == "completed"


def test_five_wrong_codes_lock_the_verification(platform: Platform, world: World) -> None:
    service = _service(platform)
    request = service.open_on_behalf(world.maria, "access", opened_by="user:dpo-1")
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            service.verify(request.id, "not-the-code")
    with pytest.raises(VerificationFailed) as locked:
        service.verify(request.id, "still-not")
    assert locked.value.reason == "too_many_attempts"


def test_requests_have_a_statutory_deadline_and_are_flagged_overdue(platform: Platform, world: World) -> None:
    from datetime import timedelta

    from cdp.db.types import utcnow

    service = _service(platform, approval=True)
    opened = service.open_self_service(
        _maria_as_customer(world), "erasure", now=utcnow() - timedelta(days=31)
    )
    assert (opened.due_at - opened.received_at).days == 30
    overdue = service.search(overdue=True)
    assert [r.id for r in overdue] == [opened.id] and overdue[0].overdue
    assert overdue[0].to_dict()["days_left"] < 0
    with pytest.raises(DsrError, match="already has an open erasure request"):
        service.open_self_service(_maria_as_customer(world), "erasure")
    rejected = service.reject(opened.id, reason="legal_claims", detail="pending court case")
    assert rejected.status == "rejected" and not rejected.overdue


def test_reading_the_database_after_erasure_shows_a_consistent_world(
    platform: Platform, world: World
) -> None:
    service = _service(platform)
    service.process(service.open_self_service(_maria_as_customer(world), "erasure").id)
    with platform.db.read() as session:
        orphans = session.execute(
            text(
                "SELECT count(*) FROM entity e WHERE NOT EXISTS "
                "(SELECT 1 FROM entity_member m WHERE m.entity_id = e.id)"
            )
        ).scalar_one()
    assert orphans == 0
