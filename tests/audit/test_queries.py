"""Reading the audit log: search filters and keyset pages, the access report, the export's order, a
customer's access log and the chain status — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from cdp.audit import ActorKind, AuditActor, AuditEvent, AuditService, Outcome, record
from cdp.audit.queries import (
    InvalidCursor,
    access_report,
    chain_status,
    checkpoints,
    count,
    customer_subjects,
    decode_cursor,
    encode_cursor,
    iter_export,
    search,
    transparency,
)
from cdp.audit.sequencer import seal
from cdp.platform import Platform
from cdp.vault.audit_keys import verify_signature
from tests.profiles.fixtures import seed_customers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AGENT = AuditActor("cdp-agent", ActorKind.CLIENT, "support_agent", "support")
ANALYST = AuditActor("user:analyst", ActorKind.USER, "marketing_analyst", "marketing")
CUSTOMER = AuditActor("customer:c1", ActorKind.CUSTOMER, "customer")


def add(
    platform: Platform,
    action: str = "profile.read",
    *,
    actor: AuditActor = AGENT,
    subjects: tuple[str, ...] = (),
    outcome: Outcome = Outcome.SUCCESS,
    purpose: str | None = "support",
    at: datetime = T0,
    details: dict[str, object] | None = None,
) -> uuid.UUID:
    with platform.db.transaction() as session:
        return record(
            session,
            AuditEvent(action, outcome, purpose, subjects, details=details or {}),
            actor=actor,
            at=at,
        )


def ids(entries: object) -> list[uuid.UUID]:
    return [entry.id for entry in entries]  # type: ignore[attr-defined]


# -- search -------------------------------------------------------------------------------------------


def test_subject_search_matches_whole_ids_through_the_index(platform: Platform) -> None:
    both = add(platform, subjects=("cust-1", "rec-1"))
    only = add(platform, subjects=("cust-1",), at=T0 + timedelta(seconds=1))
    add(platform, subjects=("cust-10",))  # contains "cust-1": a LIKE search would find it
    add(platform, subjects=())
    page = search(platform.db, subject="cust-1")
    assert ids(page.items) == [only, both]
    assert ids(search(platform.db, subject="rec-1").items) == [both]
    assert search(platform.db, subject="cust").items == []


def test_actor_action_and_outcome_filters_each_narrow(platform: Platform) -> None:
    read = add(platform, actor=AGENT)
    by_analyst = add(platform, actor=ANALYST, purpose="marketing")
    denied = add(platform, "auth.scope_denied", outcome=Outcome.DENIED, purpose=None)
    timeline = add(platform, "timeline.read")
    assert set(ids(search(platform.db, actor="user:analyst").items)) == {by_analyst}
    assert set(ids(search(platform.db, action="timeline.read").items)) == {timeline}
    assert set(ids(search(platform.db, outcome=Outcome.DENIED).items)) == {denied}
    assert set(ids(search(platform.db, outcome="success", actor="cdp-agent").items)) == {read, timeline}
    assert search(platform.db, action="profile.read", outcome="denied").items == []


def test_time_range_includes_since_and_excludes_until(platform: Platform) -> None:
    early = add(platform, at=T0)
    middle = add(platform, at=T0 + timedelta(hours=1))
    add(platform, at=T0 + timedelta(hours=2))
    page = search(platform.db, since=T0, until=T0 + timedelta(hours=2))
    assert ids(page.items) == [middle, early]
    assert ids(
        search(platform.db, since=T0 + timedelta(minutes=1), until=T0 + timedelta(hours=1, seconds=1)).items
    ) == [middle]
    with pytest.raises(ValueError, match="timezone-aware"):
        search(platform.db, since=datetime(2026, 1, 1))


def test_pages_follow_the_cursor_newest_first_without_gaps_or_repeats(platform: Platform) -> None:
    # three entries share one instant: the id breaks the tie, so no page boundary can lose one
    made = [add(platform, at=T0 + timedelta(seconds=i // 3)) for i in range(7)]
    seen: list[uuid.UUID] = []
    cursor = None
    pages = 0
    while True:
        page = search(platform.db, limit=3, cursor=cursor)
        seen.extend(ids(page.items))
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == set(made)
    stamps = [e.recorded_at for e in search(platform.db, limit=7).items]
    assert stamps == sorted(stamps, reverse=True)
    assert seen == ids(search(platform.db, limit=7).items)


def test_a_new_entry_does_not_shift_the_next_page(platform: Platform) -> None:
    for i in range(4):
        add(platform, at=T0 + timedelta(seconds=i))
    first = search(platform.db, limit=2)
    add(platform, at=T0 + timedelta(seconds=10))
    second = search(platform.db, limit=2, cursor=first.next_cursor)
    assert [e.recorded_at for e in second.items] == [T0 + timedelta(seconds=1), T0]


NO_CHECKSUM = base64.urlsafe_b64encode(
    b"2026-03-01T12:00:00.000000Z|5f0c7a52-5b0e-4a53-9c59-0c2f1c1f9d11"
).decode()


@pytest.mark.parametrize(
    "cursor",
    ["not a cursor", NO_CHECKSUM, "", "x" * 500],
    ids=["garbage", "no-checksum", "empty", "too-long"],
)
def test_malformed_cursors_are_refused(platform: Platform, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="not valid"):
        search(platform.db, cursor=cursor)


def test_an_edited_cursor_fails_its_checksum() -> None:
    entry_id = uuid.uuid4()
    cursor = encode_cursor(T0, entry_id)
    assert decode_cursor(cursor) == (T0, entry_id)
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    edited = raw.replace("2026-03-01", "2027-03-01")
    forged = base64.urlsafe_b64encode(edited.encode()).decode().rstrip("=")
    with pytest.raises(InvalidCursor):
        decode_cursor(forged)


def test_entries_carry_every_column_parsed_and_pending_ones_no_seq(platform: Platform) -> None:
    sealed_id = add(platform, subjects=("b", "a"), details={"items": 3})
    seal(platform.db)
    pending_id = add(platform, at=T0 + timedelta(seconds=1))
    sealed, pending = (
        next(e for e in search(platform.db).items if e.id == i) for i in (sealed_id, pending_id)
    )
    assert sealed.seq == 1 and sealed.hash and sealed.prev_hash == "0" * 64 and sealed.sealed_at
    assert sealed.subjects == ("a", "b") and sealed.details == {"items": 3} and sealed.fields == ()
    assert (sealed.actor, sealed.actor_kind, sealed.role, sealed.department, sealed.purpose) == (
        "cdp-agent",
        "client",
        "support_agent",
        "support",
        "support",
    )
    assert pending.seq is None and pending.hash is None and pending.sealed_at is None
    assert sealed.to_dict()["recorded_at"] == "2026-03-01T12:00:00.000000Z"


# -- access report ------------------------------------------------------------------------------------


def test_access_report_counts_reads_and_refusals_by_who_and_why(platform: Platform) -> None:
    for _ in range(3):
        add(platform, "profile.read")
    add(platform, "timeline.read")
    add(platform, "profile.read", outcome=Outcome.DENIED, purpose="dsr")
    add(platform, "profile.read", actor=ANALYST, purpose="marketing")
    add(platform, "auth.scope_denied", outcome=Outcome.DENIED, purpose=None)
    add(platform, "identity.merge")  # an operation, not an access: left out
    add(platform, "records.ingest", outcome=Outcome.FAILED)  # a failure, not a refusal: left out
    add(platform, "profile.read", at=T0 + timedelta(days=40))  # outside the range
    report = access_report(platform.db, T0 - timedelta(days=1), T0 + timedelta(days=1))
    rows = {(r.department, r.role, r.purpose, r.action, r.outcome): r.count for r in report.rows}
    assert rows == {
        ("support", "support_agent", "support", "profile.read", "success"): 3,
        ("support", "support_agent", "support", "timeline.read", "success"): 1,
        ("support", "support_agent", "dsr", "profile.read", "denied"): 1,
        ("marketing", "marketing_analyst", "marketing", "profile.read", "success"): 1,
        ("support", "support_agent", None, "auth.scope_denied", "denied"): 1,
    }
    assert report.total == 7 and report.rows[0].count == 3
    assert report.to_dict()["rows"][0] == {
        "department": "support",
        "role": "support_agent",
        "purpose": "support",
        "action": "profile.read",
        "outcome": "success",
        "count": 3,
    }


# -- export -------------------------------------------------------------------------------------------


def test_export_runs_in_chain_order_then_pending_and_honours_filters(platform: Platform) -> None:
    # recorded out of time order: the chain (seq) decides, not recorded_at
    late = add(platform, at=T0 + timedelta(seconds=5), subjects=("x",))
    early = add(platform, at=T0, subjects=("x",))
    other = add(platform, at=T0 + timedelta(seconds=1))
    seal(platform.db)
    pending = add(platform, at=T0 + timedelta(seconds=2), subjects=("x",))
    exported = list(iter_export(platform.db, batch_size=2))
    assert ids(exported) == [early, other, late, pending]
    assert [e.seq for e in exported] == [1, 2, 3, None]
    assert ids(iter_export(platform.db, subject="x", batch_size=1)) == [early, late, pending]
    assert ids(iter_export(platform.db, limit=2)) == [early, other]
    assert count(platform.db, subject="x") == 3 and count(platform.db) == 4


def test_an_entry_sealed_during_an_export_is_neither_skipped_nor_repeated(platform: Platform) -> None:
    first = add(platform, at=T0)
    seal(platform.db)
    waiting = [add(platform, at=T0 + timedelta(seconds=i)) for i in (1, 2, 3)]
    stream = iter_export(platform.db, batch_size=1)
    got = [next(stream), next(stream)]  # the sealed entry, then the first pending one
    seal(platform.db)  # the sequencer runs mid-download
    got.extend(stream)
    assert ids(got) == [first, *waiting]


# -- a customer's access log --------------------------------------------------------------------------


def test_transparency_lists_staff_reads_of_the_customer_without_who(platform: Platform) -> None:
    staff_read = add(platform, subjects=("ent-1", "rec-1"))
    add(
        platform,
        "timeline.read",
        actor=ANALYST,
        purpose="marketing",
        subjects=("rec-2",),
        at=T0 + timedelta(1),
    )
    add(
        platform,
        "profile.read",
        outcome=Outcome.DENIED,
        purpose="dsr",
        subjects=("ent-1",),
        at=T0 + timedelta(2),
    )
    add(platform, actor=CUSTOMER, purpose="self_service", subjects=("ent-1",))  # their own read
    add(platform, subjects=("ent-2",))  # someone else's profile
    add(platform, "identity.merge", subjects=("ent-1",))  # not a read of their data
    page = transparency(platform.db, ["ent-1", "rec-1", "rec-2"])
    assert [item.to_dict() for item in page.items] == [
        {
            "at": "2026-03-03T12:00:00.000000Z",
            "action": "profile.read",
            "department": "support",
            "role": "support_agent",
            "purpose": "dsr",
            "outcome": "denied",
        },
        {
            "at": "2026-03-02T12:00:00.000000Z",
            "action": "timeline.read",
            "department": "marketing",
            "role": "marketing_analyst",
            "purpose": "marketing",
            "outcome": "success",
        },
        {
            "at": "2026-03-01T12:00:00.000000Z",
            "action": "profile.read",
            "department": "support",
            "role": "support_agent",
            "purpose": "support",
            "outcome": "success",
        },
    ]
    assert staff_read  # listed once although it names two of the customer's ids
    assert page.next_cursor is None
    assert transparency(platform.db, []).items == []


def test_transparency_pages_by_cursor(platform: Platform) -> None:
    for i in range(5):
        add(platform, subjects=("ent-1",), at=T0 + timedelta(minutes=i))
    first = transparency(platform.db, ["ent-1"], limit=2)
    second = transparency(platform.db, ["ent-1"], limit=2, cursor=first.next_cursor)
    third = transparency(platform.db, ["ent-1"], limit=2, cursor=second.next_cursor)
    stamps = [item.at for page in (first, second, third) for item in page.items]
    assert stamps == [T0 + timedelta(minutes=i) for i in (4, 3, 2, 1, 0)]
    assert third.next_cursor is None


def test_a_customers_subjects_are_their_entity_and_all_its_records(
    platform: Platform, tmp_path: Path
) -> None:
    customers = seed_customers(platform, tmp_path)
    subjects = customer_subjects(platform.db, customers.maria_crm_record)
    assert set(subjects) == {
        str(customers.maria),
        str(customers.maria_crm_record),
        str(customers.maria_helpdesk_record),
    }
    unresolved = uuid.uuid4()
    assert customer_subjects(platform.db, unresolved) == (str(unresolved),)


# -- chain status -------------------------------------------------------------------------------------


def test_status_of_an_empty_chain(platform: Platform) -> None:
    status = chain_status(platform.db, platform.vault, "https://cdp.example")
    assert (status.head_seq, status.head_hash, status.head_intact) == (0, "0" * 64, None)
    assert status.pending == 0 and status.latest_checkpoint is None and status.unsigned == 0


def test_status_reports_head_pending_and_a_verified_checkpoint(platform: Platform) -> None:
    service = AuditService(platform.db, platform.vault, "https://cdp.example")
    for i in range(3):
        add(platform, at=T0 + timedelta(seconds=i))
    service.seal()
    checkpoint = service.checkpoint()
    assert checkpoint is not None
    add(platform, at=T0 + timedelta(seconds=9))
    service.seal()
    add(platform, at=T0 + timedelta(seconds=10))
    status = chain_status(platform.db, platform.vault, "https://cdp.example")
    assert status.head_seq == 4 and status.head_intact is True and status.unsigned == 1
    assert status.pending == 1 and status.oldest_pending_at == T0 + timedelta(seconds=10)
    latest = status.latest_checkpoint
    assert latest is not None and latest.signature_valid and latest.matches_chain
    assert latest.checkpoint.seq == 3 and status.public_keys == service.public_keys()
    body = status.to_dict()
    assert body["latest_checkpoint"]["seq"] == 3 and body["latest_checkpoint"]["signature_valid"] is True


def test_status_notices_a_rewritten_head_and_a_checkpointed_hash(platform: Platform) -> None:
    service = AuditService(platform.db, platform.vault, "https://cdp.example")
    for i in range(3):
        add(platform, at=T0 + timedelta(seconds=i))
    service.seal()
    service.checkpoint()
    with platform.db.transaction() as session:
        session.execute(text("UPDATE audit_entry SET purpose = 'sales' WHERE seq = 3"))
    status = chain_status(platform.db, platform.vault, "https://cdp.example")
    assert status.head_intact is False
    assert status.latest_checkpoint is not None and status.latest_checkpoint.matches_chain
    with platform.db.transaction() as session:
        session.execute(text("UPDATE audit_entry SET hash = :h WHERE seq = 3"), {"h": "f" * 64})
    status = chain_status(platform.db, platform.vault, "https://cdp.example")
    assert status.latest_checkpoint is not None and not status.latest_checkpoint.matches_chain
    assert status.latest_checkpoint.signature_valid  # the signature is fine; the chain moved


def test_checkpoints_page_by_seq_and_verify_with_the_listed_keys(platform: Platform) -> None:
    service = AuditService(platform.db, platform.vault, "https://cdp.example")
    for i in range(3):
        add(platform, at=T0 + timedelta(seconds=i))
        service.seal()
        service.checkpoint()
    first = checkpoints(platform.db, platform.vault, limit=2)
    assert [c.seq for c in first.checkpoints] == [1, 2] and first.next_after == 2
    rest = checkpoints(platform.db, platform.vault, after=2)
    assert [c.seq for c in rest.checkpoints] == [3] and rest.next_after is None
    for c in first.checkpoints + rest.checkpoints:
        assert verify_signature(first.public_keys[c.key_id], c.message, c.signature)


def test_subject_search_finds_entries_before_and_after_the_sequencer_indexes_them(platform: Platform) -> None:
    from cdp.audit import record_now
    from cdp.audit.queries import search

    record_now(platform.db, AuditEvent("profile.read", subjects=("cust_1",)))
    record_now(platform.db, AuditEvent("profile.read", subjects=("custX1", "cust-10")))
    pending = search(platform.db, subject="cust_1").items
    assert [entry.subjects for entry in pending] == [("cust_1",)]  # "_" is not a wildcard, no prefixes
    seal(platform.db)
    sealed = search(platform.db, subject="cust_1").items
    assert [(entry.subjects, entry.seq is not None) for entry in sealed] == [(("cust_1",), True)]
