"""Identity changes are audited in the transaction that makes them: merges and splits with their records
and the entities before and after (never the free-text reason), batch runs with their counts."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from cdp.audit import ActorKind, AuditActor, acting_as
from cdp.db.models import AuditEntry, MatchDecision, MatchEdge
from cdp.demo.seed import seed
from cdp.identity import service as service_module
from cdp.identity.service import IdentityError, IdentityService, RecordNotFound
from cdp.platform import Platform
from tests.sources.test_ingest_audit import Entry, audit_entries, indexed_subjects

REASON = "Called Maria Garcia on +44 7911 123456, she confirmed maria@example.com is hers"


@pytest.fixture
def identity(platform: Platform, tmp_path: Path) -> IdentityService:
    seed(platform.db, platform.vault, work_dir=tmp_path, people=40, seed_value=5)
    return IdentityService(platform.db, platform.vault)


def two_singletons(identity: IdentityService) -> tuple[uuid.UUID, uuid.UUID]:
    first, second = (min(group, key=str) for group in sorted(identity.partition(), key=len)[:2])
    assert identity.entity_of(first) != identity.entity_of(second)
    return first, second


def raw_audit_rows(platform: Platform) -> str:
    """Every column of every audit entry and subject row, as one text."""
    with platform.db.read() as session:
        rows = session.execute(text("SELECT * FROM audit_entry")).all()
        rows += session.execute(text("SELECT * FROM audit_subject")).all()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


def assert_no_reason_text(platform: Platform, entry: Entry) -> None:
    stored = raw_audit_rows(platform)
    for fragment in (REASON, "Maria", "Garcia", "+44 7911", "maria@example.com", "confirmed"):
        assert fragment not in stored
    assert entry.details["reason_given"] is True


def test_batch_resolution_records_one_entry_with_its_counts(
    platform: Platform, identity: IdentityService
) -> None:
    before = audit_entries(platform, "identity.resolve")  # the seed's own batch run
    assert len(before) == 1
    report = identity.resolve_all()
    entries = audit_entries(platform, "identity.resolve")
    assert len(entries) == 2
    entry = entries[-1]
    threshold = identity.settings.clustering.threshold
    with platform.db.read() as session:
        links = session.execute(
            select(func.count())
            .select_from(MatchEdge)
            .where(MatchEdge.weight >= threshold, MatchEdge.refused.is_(None))
        ).scalar_one()
    assert entry.details == {
        "records": report["records"],
        "entities": report["entities"],
        "links": links,
        "stored_edges": report["stored_edges"],
        "trained": False,
    }
    assert links > 0 and entry.subjects == []
    identity.resolve_all(retrain=True)
    assert audit_entries(platform, "identity.resolve")[-1].details["trained"] is True


def test_merge_records_its_records_and_entities_but_never_the_reason(
    platform: Platform, identity: IdentityService
) -> None:
    a, b = two_singletons(identity)
    before = {identity.entity_of(a), identity.entity_of(b)}
    with acting_as(AuditActor("steward-client", ActorKind.CLIENT), "req-merge-1"):
        merged = identity.merge(a, b, actor="client:steward-client", reason=REASON)
    [entry] = audit_entries(platform, "identity.merge")
    assert set(entry.subjects) == {str(a), str(b), *(str(e) for e in before), str(merged)}
    assert indexed_subjects(platform, entry.id) == set(entry.subjects)
    assert entry.details == {
        "records": 2,
        "entities_before": 2,
        "entities_after": 1,
        "entity_ids": [str(merged)],
        "reason_given": True,
    }
    assert (entry.actor, entry.request_id) == ("steward-client", "req-merge-1")
    assert_no_reason_text(platform, entry)
    [decision] = identity.decisions()
    assert (decision.actor, decision.reason) == ("client:steward-client", REASON)


def test_split_records_every_member_and_the_entities_after(
    platform: Platform, identity: IdentityService
) -> None:
    a, b = two_singletons(identity)
    entity = identity.merge(a, b, actor="operator:test", reason="first")
    members = identity.members(entity)
    after = identity.split(entity, [b], actor="operator:test", reason=REASON)
    [entry] = audit_entries(platform, "identity.split")
    assert set(entry.subjects) == {*(str(m) for m in members), str(entity), *(str(e) for e in after)}
    assert len(after) >= 2 and entry.details == {
        "records": len(members),
        "moved": 1,
        "entities_before": 1,
        "entities_after": len(after),
        "entity_ids": sorted(str(e) for e in after),
        "reason_given": True,
    }
    assert_no_reason_text(platform, entry)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("unknown record", RecordNotFound),
        ("reason too long", IdentityError),
        ("split of every member", IdentityError),
    ],
)
def test_a_refused_change_records_no_entry(
    platform: Platform, identity: IdentityService, change: str, error: type[Exception]
) -> None:
    a, b = two_singletons(identity)
    with pytest.raises(error):
        if change == "unknown record":
            identity.merge(a, uuid.uuid4(), actor="operator:test", reason="r")
        elif change == "reason too long":
            identity.merge(a, b, actor="operator:test", reason="x" * 301)
        else:
            entity = identity.entity_of(a)
            identity.split(entity, identity.members(entity), actor="operator:test", reason="r")
    assert audit_entries(platform, "identity.merge") == []
    assert audit_entries(platform, "identity.split") == []


def test_a_merge_whose_transaction_fails_after_its_entry_keeps_neither(
    platform: Platform, identity: IdentityService, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_singletons(identity)
    real_record = service_module.record

    def record_then_fail(session: Any, event: Any, **kwargs: Any) -> uuid.UUID:
        entry_id = real_record(session, event, **kwargs)
        assert session.get(AuditEntry, entry_id) is not None
        raise IdentityError("the transaction fails after the entry was inserted")

    monkeypatch.setattr(service_module, "record", record_then_fail)
    with pytest.raises(IdentityError, match="after the entry"):
        identity.merge(a, b, actor="operator:test", reason=REASON)
    assert audit_entries(platform, "identity.merge") == []
    assert identity.entity_of(a) != identity.entity_of(b)
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(MatchDecision)).scalar_one() == 0
