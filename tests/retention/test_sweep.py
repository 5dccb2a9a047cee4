"""The retention sweep: what expires by category and anchor, legal holds, the certificate, resuming and
the lease that keeps two sweeps apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cdp.db.models import AuditEntry, Interaction, RetentionPolicyVersion, RetentionSweep, SourceRecord
from cdp.dsr.receipts import Receipts
from cdp.platform import Platform
from cdp.retention.holds import HoldError, LegalHolds
from cdp.retention.policy import RetentionConfigError, RetentionPolicy
from cdp.retention.sweep import RetentionSweeper, SweepBusy
from tests.dsr.world import World, seed_world

# The world's newest contacts: CRM 2025-06-10 (Maria), 2024-05-05 (John); helpdesk 2025-07-01 (Maria),
# 2025-02-02 (Ana); billing 2024-11-20 (Maria).


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    return seed_world(platform, tmp_path)


def _records(platform: Platform) -> int:
    with platform.db.read() as session:
        return int(session.execute(select(func.count()).select_from(SourceRecord)).scalar_one())


def test_records_expire_by_their_categorys_period_after_the_last_contact(
    platform: Platform, world: World
) -> None:
    sweeper = RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load())
    # Three years and a bit after John's last CRM contact, but not after Maria's: only John's lead goes.
    report = sweeper.run(now=datetime(2027, 6, 1, tzinfo=UTC))
    assert report.destroyed.by_category == {"sales_accounts": 1}
    assert _records(platform) == 4
    with platform.db.read() as session:
        assert session.get(SourceRecord, world.customers.maria_crm_record) is not None


def test_a_dry_run_counts_and_destroys_nothing(platform: Platform, world: World) -> None:
    sweeper = RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load())
    report = sweeper.run(dry_run=True, now=datetime(2040, 1, 1, tzinfo=UTC))
    assert report.expired == {
        "sales_accounts": 2,
        "support_tickets": 2,
        "billing_accounts": 1,
        "marketing_leads": 0,
    }
    assert _records(platform) == 5


def test_a_legal_hold_keeps_a_customer_through_the_sweep_until_it_is_released(
    platform: Platform, world: World
) -> None:
    with platform.db.transaction() as session:
        holds = LegalHolds(session).place(entity_id=world.maria, reason="case 2026-17", actor="user:dpo")
    assert len(holds) == 3
    far = datetime(2040, 1, 1, tzinfo=UTC)
    sweeper = RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load())
    report = sweeper.run(now=far)
    assert report.destroyed.records == 2 and sum(report.held.values()) == 3
    assert _records(platform) == 3
    with platform.db.transaction() as session:
        for hold in holds:
            LegalHolds(session).release(hold.id, reason="case closed", actor="user:dpo")
        with pytest.raises(HoldError):
            LegalHolds(session).release(holds[0].id, reason="again", actor="user:dpo")
    assert (
        RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load()).run(now=far).destroyed.records
        == 3
    )
    assert _records(platform) == 0


def test_the_sweep_signs_a_destruction_certificate_with_counts_policy_version_and_time_range(
    platform: Platform, world: World
) -> None:
    policy = RetentionPolicy.load()
    report = RetentionSweeper(platform.db, platform.vault, policy).run(now=datetime(2040, 1, 1, tzinfo=UTC))
    assert report.certificate is not None
    with platform.db.read() as session:
        certificate = Receipts(session, platform.vault).get(report.certificate.id)
        versions = session.execute(
            select(RetentionPolicyVersion.version, RetentionPolicyVersion.digest)
        ).all()
        actions = session.execute(select(AuditEntry.action, AuditEntry.details)).all()
    assert certificate.verify()
    statement = certificate.content
    assert statement["kind"] == "destruction_certificate"
    assert statement["retention_policy"] == {"version": policy.version, "sha256": policy.digest}
    assert statement["destroyed"]["records"] == 5
    assert statement["destroyed"]["records_by_category"] == {
        "billing_accounts": 1,
        "sales_accounts": 2,
        "support_tickets": 2,
    }
    assert statement["as_of"].startswith("2040-01-01") and statement["finished_at"]
    assert versions == [(policy.version, policy.digest)]
    assert any(a == "retention.sweep" and '"completed":true' in d for a, d in actions)


def test_a_policy_changed_under_the_same_version_is_refused(platform: Platform, world: World) -> None:
    RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load()).run(dry_run=False)
    changed = RetentionPolicy.parse(RetentionPolicy.load().content.replace('keep = "2y"', 'keep = "1y"'))
    with pytest.raises(RetentionConfigError, match="new version"):
        RetentionSweeper(platform.db, platform.vault, changed).run()


def test_a_live_lease_keeps_a_second_sweep_out_and_an_expired_one_is_taken_over_and_resumed(
    platform: Platform, world: World
) -> None:
    far = datetime(2040, 1, 1, tzinfo=UTC)
    first = RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load(), batch_size=2)
    sweep_id, as_of, resumed = first._acquire(far)
    assert not resumed
    second = RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load(), batch_size=2)
    with pytest.raises(SweepBusy):
        second.run(now=far)
    with platform.db.transaction() as session:  # the first process died: its lease runs out
        session.execute(update(RetentionSweep).values(lease_until=datetime(2000, 1, 1, tzinfo=UTC)))
    report = second.run(now=far + timedelta(days=365))
    assert report.resumed and report.sweep_id == sweep_id and report.as_of == as_of
    assert report.destroyed.records == 5 and report.batches == 3
    with pytest.raises(SweepBusy):
        first._batch(sweep_id, as_of, report)


def test_an_interaction_newer_than_the_cutoff_keeps_a_record_without_a_last_activity_date(
    platform: Platform, world: World
) -> None:
    with platform.db.transaction() as session:
        session.execute(
            update(Interaction)
            .where(Interaction.record_id == world.customers.ana_record)
            .values(occurred_at=datetime(2039, 6, 1, tzinfo=UTC))
        )
    report = RetentionSweeper(platform.db, platform.vault, RetentionPolicy.load()).run(
        dry_run=True, now=datetime(2040, 1, 1, tzinfo=UTC)
    )
    assert report.expired["support_tickets"] == 1


def test_old_quarantined_rows_and_outbox_messages_are_destroyed_with_the_raw_rows_key(
    platform: Platform, world: World, tmp_path: Path
) -> None:
    from cdp.access.outbox import Outbox
    from cdp.db.models import OutboxMessage, QuarantinedRow, Subject
    from cdp.sources.ingest import IngestService

    bad = tmp_path / "bad.csv"
    bad.write_text("LeadId,FirstName,LastName,EMail\nL-9,Zoe,Bad,not-an-email\n", encoding="utf-8")
    assert IngestService(platform.db, platform.vault).ingest_file("crm", bad).rejected == 1
    with platform.db.transaction() as session:
        holder = session.execute(select(QuarantinedRow.subject_id)).scalar_one()
        subject = session.execute(select(SourceRecord.subject_id).limit(1)).scalar_one()
        Outbox(session, platform.vault).put(
            subject, purpose="test", recipient="a@example.com", subject="s", body="b"
        )
    policy = RetentionPolicy.load()
    soon = datetime.now(UTC) + timedelta(days=31)  # the outbox's 30 days are over, quarantine's 90 not yet
    assert RetentionSweeper(platform.db, platform.vault, policy).run(
        dry_run=True, now=soon
    ).operational_destroyed == {
        "quarantined_rows": 0,
        "outbox_messages": 1,
    }
    later = datetime.now(UTC) + timedelta(days=91)
    report = RetentionSweeper(platform.db, platform.vault, policy).run(now=later)
    assert report.operational_destroyed == {"quarantined_rows": 1, "outbox_messages": 1}
    assert report.certificate is not None
    assert report.certificate.content["destroyed"]["quarantined_rows"] == 1
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 0
        assert session.execute(select(Subject.wrapped_key).where(Subject.id == holder)).scalar_one() is None


def test_a_policy_without_operational_periods_is_refused() -> None:
    text = RetentionPolicy.load().content
    without = text.replace('[operational]\nquarantine = "90d"\noutbox = "30d"\n', "")
    assert without != text
    with pytest.raises(RetentionConfigError, match="operational"):
        RetentionPolicy.parse(without)
