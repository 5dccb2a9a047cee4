"""Pruning past retention deletes only an old, checkpointed prefix, and leaves a chain that still verifies
because the chain itself records what was pruned; a prefix deleted any other way fails verification."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from cdp.audit import AuditError, AuditEvent, offline, record
from cdp.audit.export import export_slice
from cdp.audit.retention import prune
from cdp.audit.verify import VerifyReport, verify_chain
from cdp.db.models import AuditEntry, AuditSubject
from cdp.db.types import utcnow
from cdp.platform import Platform
from tests.audit.test_chain import ORIGIN, service

RETENTION_DAYS = 365
OLD = timedelta(days=800)


def record_at(platform: Platform, count: int, age: timedelta, start: int = 0) -> None:
    """``count`` profile reads recorded ``age`` ago, each naming a customer and a record."""
    at = utcnow() - age
    with platform.db.transaction() as session:
        for i in range(start, start + count):
            record(
                session,
                AuditEvent("profile.read", purpose="support", subjects=(f"cust-{i}", f"rec-{i}")),
                at=at + timedelta(microseconds=i),
            )


def sealed_seqs(platform: Platform) -> list[int]:
    with platform.db.read() as session:
        seqs = session.execute(
            select(AuditEntry.seq).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq)
        )
        return [seq for seq in seqs.scalars() if seq is not None]


def verify(platform: Platform) -> VerifyReport:
    return verify_chain(platform.db, service(platform).public_keys())


def test_old_checkpointed_entries_are_pruned_and_the_chain_still_verifies(platform: Platform) -> None:
    record_at(platform, 10, OLD)
    service(platform).seal_and_checkpoint()
    record_at(platform, 3, timedelta(0), start=100)
    service(platform).seal_and_checkpoint()

    result = prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS)

    assert result.plan is not None and (result.plan.first_seq, result.plan.through_seq) == (1, 10)
    assert result.deleted == 10
    report = verify(platform)
    assert report.ok, report.first_problem
    assert report.first_seq == 11 and report.pending == 0
    assert sealed_seqs(platform)[0] == 11
    with platform.db.read() as session:
        orphans = session.execute(
            select(func.count())
            .select_from(AuditSubject)
            .where(AuditSubject.entry_id.not_in(select(AuditEntry.id)))
        ).scalar_one()
        pruned_subjects = session.execute(
            select(func.count()).select_from(AuditSubject).where(AuditSubject.subject_id == "cust-3")
        ).scalar_one()
        anchor = session.execute(
            select(AuditEntry.details, AuditEntry.seq).where(AuditEntry.action == "audit.prune")
        ).one()
    assert (orphans, pruned_subjects) == (0, 0)
    details = json.loads(anchor.details)
    assert details["through_seq"] == 10 and details["entries"] == 10
    assert anchor.seq is not None and anchor.seq > 10


def test_the_prune_entry_is_itself_signed_before_anything_is_deleted(platform: Platform) -> None:
    record_at(platform, 4, OLD)
    service(platform).seal_and_checkpoint()

    prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS)

    report = verify(platform)
    with platform.db.read() as session:
        prune_seq = session.execute(
            select(AuditEntry.seq).where(AuditEntry.action == "audit.prune")
        ).scalar_one()
    assert report.ok and report.latest_checkpoint == prune_seq == report.head_seq


def test_entries_after_the_latest_checkpoint_are_never_pruned(platform: Platform) -> None:
    record_at(platform, 6, OLD)
    service(platform).seal_and_checkpoint()
    record_at(platform, 4, OLD, start=50)
    service(platform).seal()

    result = prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS)

    assert result.plan is not None and result.plan.through_seq == 6 and result.deleted == 6
    assert sealed_seqs(platform)[:4] == [7, 8, 9, 10]
    assert verify(platform).ok


def test_entries_newer_than_the_cutoff_stop_the_prefix_even_if_older_ones_follow(platform: Platform) -> None:
    record_at(platform, 3, OLD)
    service(platform).seal()
    record_at(platform, 1, timedelta(days=10), start=10)
    service(platform).seal()
    record_at(platform, 3, OLD, start=20)
    service(platform).seal_and_checkpoint()

    result = prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS)

    assert result.plan is not None and result.plan.through_seq == 3 and result.deleted == 3
    assert sealed_seqs(platform)[:4] == [4, 5, 6, 7]
    assert verify(platform).ok


def test_nothing_is_pruned_when_nothing_is_checkpointed_or_nothing_is_old(platform: Platform) -> None:
    record_at(platform, 3, OLD)
    service(platform).seal()
    assert prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS).plan is None
    service(platform).checkpoint()

    result = prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS, now=utcnow() - OLD)

    assert result.plan is None
    assert sealed_seqs(platform) == [1, 2, 3]


def test_a_dry_run_reports_the_prefix_and_deletes_nothing(platform: Platform) -> None:
    record_at(platform, 5, OLD)
    service(platform).seal_and_checkpoint()

    result = prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS, dry_run=True)

    assert result.dry_run and result.plan is not None and result.plan.entries == 5 and result.deleted == 0
    assert sealed_seqs(platform) == [1, 2, 3, 4, 5]
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 5


def test_deleting_a_prefix_without_a_prune_entry_fails_verification(platform: Platform) -> None:
    record_at(platform, 8, OLD)
    service(platform).seal_and_checkpoint()
    with platform.db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entry WHERE seq <= 5"))

    report = verify(platform)

    assert not report.ok and report.first_problem is not None
    assert report.first_problem.seq == 6
    assert "no audit.prune entry" in report.first_problem.reason


def test_a_prune_entry_naming_another_head_does_not_vouch_for_a_deletion(platform: Platform) -> None:
    record_at(platform, 8, OLD)
    service(platform).seal()
    with platform.db.read() as session:
        wrong_head = session.execute(select(AuditEntry.hash).where(AuditEntry.seq == 4)).scalar_one()
    with platform.db.transaction() as session:
        record(session, AuditEvent("audit.prune", details={"through_seq": 5, "head_hash": wrong_head}))
    service(platform).seal_and_checkpoint()
    with platform.db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entry WHERE seq <= 5"))

    report = verify(platform)

    assert not report.ok and report.first_problem is not None
    assert report.first_problem.seq == 6 and "no audit.prune entry" in report.first_problem.reason


def test_pruning_refuses_to_destroy_the_evidence_of_a_tampered_chain(platform: Platform) -> None:
    record_at(platform, 5, OLD)
    service(platform).seal_and_checkpoint()
    with platform.db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_entry SET purpose = 'marketing' WHERE seq = 2"))

    with pytest.raises(AuditError, match="refusing to prune"):
        prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS)

    assert sealed_seqs(platform) == [1, 2, 3, 4, 5]


def test_a_pruned_log_still_exports_a_slice_that_verifies_offline(platform: Platform, tmp_path: Path) -> None:
    record_at(platform, 5, OLD)
    service(platform).seal_and_checkpoint()
    prune(platform.db, platform.vault, ORIGIN, RETENTION_DAYS)
    path = tmp_path / "after-prune.jsonl"

    result = export_slice(platform.db, path)
    report = offline.verify_file(path, list(service(platform).public_keys().values()))

    assert result.from_seq == 6 and report.first_seq == 6 and report.checkpoint_seq == result.to_seq
    with pytest.raises(AuditError, match="pruned"):
        export_slice(platform.db, tmp_path / "x.jsonl", from_seq=2)


@pytest.mark.parametrize(
    "details",
    [
        '{{"through_seq":"5","head_hash":"{head}"}}',
        '{{"through_seq":true,"head_hash":"{head}"}}',
        '{{"through_seq":5}}',
        '["{head}"]',
    ],
)
def test_a_malformed_prune_entry_vouches_for_nothing_and_verification_still_reports(
    platform: Platform, details: str
) -> None:
    record_at(platform, 6, OLD)
    service(platform).seal()
    with platform.db.read() as session:
        head = session.execute(select(AuditEntry.hash).where(AuditEntry.seq == 5)).scalar_one()
    with platform.db.transaction() as session:
        record(session, AuditEvent("audit.prune"))
    with platform.db.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_entry SET details = :d WHERE seq IS NULL"), {"d": details.format(head=head)}
        )
    service(platform).seal_and_checkpoint()
    with platform.db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entry WHERE seq <= 5"))

    report = verify(platform)

    assert not report.ok and report.first_problem is not None
    assert report.first_problem.seq == 6 and "no audit.prune entry" in report.first_problem.reason
