"""Appending: entries commit with their operation, record_now commits before it returns (group commit
under concurrency), and a failed append fails the caller instead of being dropped."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import func, select

from cdp.audit import AuditActor, AuditError, AuditEvent, acting_as, record, record_now
from cdp.audit.events import ActorKind
from cdp.audit.log import GroupCommit, _writer
from cdp.audit.sequencer import seal
from cdp.db.models import AuditEntry, AuditSubject
from cdp.errors import DatabaseUnavailable
from cdp.platform import Platform


def _count(platform: Platform) -> int:
    with platform.db.read() as session:
        return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def test_an_entry_recorded_in_a_rolled_back_transaction_is_gone_with_it(platform: Platform) -> None:
    with pytest.raises(RuntimeError), platform.db.transaction() as session:
        record(session, AuditEvent("identity.merge", subjects=(str(uuid.uuid4()),)))
        raise RuntimeError("the operation failed after auditing")
    assert _count(platform) == 0


def test_an_entry_names_the_scope_actor_and_request_and_indexes_its_subjects(platform: Platform) -> None:
    actor = AuditActor("client-1", ActorKind.CLIENT, "support_agent", "support")
    customer, record_id = str(uuid.uuid4()), str(uuid.uuid4())
    with acting_as(actor, "req-42") as scope:
        entry_id = record_now(
            platform.db,
            AuditEvent(
                "profile.read", purpose="support", subjects=(record_id, customer), fields=("phone", "email")
            ),
        )
    assert scope.recorded == ["profile.read"]
    seal(platform.db)  # the sequencer writes the subject index
    with platform.db.read() as session:
        entry = session.get(AuditEntry, entry_id)
        indexed = session.execute(
            select(AuditSubject.subject_id).where(AuditSubject.entry_id == entry_id)
        ).scalars()
        assert entry is not None
        assert (entry.actor, entry.actor_kind, entry.role, entry.department) == (
            "client-1",
            "client",
            "support_agent",
            "support",
        )
        assert entry.request_id == "req-42" and entry.purpose == "support" and entry.seq == 1
        assert entry.fields == '["email","phone"]'
        assert sorted(indexed) == sorted([customer, record_id])


def test_outside_any_scope_the_system_is_accountable(platform: Platform) -> None:
    entry_id = record_now(platform.db, AuditEvent("sources.read"))
    with platform.db.read() as session:
        entry = session.get(AuditEntry, entry_id)
        assert entry is not None and (entry.actor, entry.actor_kind) == ("system:cdp", "system")


def test_details_with_floats_or_unknown_actions_are_refused_before_anything_is_written(
    platform: Platform,
) -> None:
    with pytest.raises(AuditError, match="floats"):
        record_now(platform.db, AuditEvent("sources.read", details={"ratio": 0.5}))
    with pytest.raises(AuditError, match="unknown audit action"):
        AuditEvent("profile.peek")
    with pytest.raises(AuditError, match="ids"):
        AuditEvent("profile.read", subjects=("Maria Garcia <maria@example.com>",))
    assert _count(platform) == 0


def test_concurrent_callers_each_return_only_after_their_own_entry_is_committed(platform: Platform) -> None:
    def append(i: int) -> bool:
        entry_id = record_now(platform.db, AuditEvent("sources.read", details={"i": i}))
        with platform.db.read() as session:  # another connection: sees only committed rows
            return session.get(AuditEntry, entry_id) is not None

    with ThreadPoolExecutor(8) as pool:
        visible = list(pool.map(append, range(200)))
    assert all(visible)
    assert _count(platform) == 200


def test_a_failed_batch_fails_every_waiter_and_the_next_callers_still_get_through(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer: GroupCommit = _writer(platform.db)
    real_write = platform.db.raw_write
    failing = threading.Event()
    failing.set()

    def flaky_write(**options):  # type: ignore[no-untyped-def]
        if failing.is_set():
            raise OSError("disk full")
        return real_write(**options)

    monkeypatch.setattr(platform.db, "raw_write", flaky_write)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(record_now, platform.db, AuditEvent("sources.read")) for _ in range(20)]
        errors = [f.exception() for f in futures]
    assert all(isinstance(error, AuditError) for error in errors)
    assert not writer._leading and not writer._queue

    failing.clear()
    record_now(platform.db, AuditEvent("sources.read"))
    assert _count(platform) == 1


@pytest.mark.parametrize(
    "lost",
    [
        psycopg.OperationalError("terminating connection due to administrator command"),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=["psycopg", "sqlite3"],
)
def test_a_database_gone_during_the_append_is_unavailable_not_an_audit_failure(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, lost: Exception
) -> None:
    """A restart or failover hitting the append's raw cursor is transient: DatabaseUnavailable (a 503 the
    client may retry), while any other failure stays an AuditError (a 500): the operation is refused."""

    def gone(**_options):  # type: ignore[no-untyped-def]
        raise lost

    monkeypatch.setattr(platform.db, "raw_write", gone)
    with pytest.raises(DatabaseUnavailable) as refused:
        record_now(platform.db, AuditEvent("sources.read"))
    assert refused.value.__cause__ is lost
    assert not isinstance(refused.value, AuditError)


def test_the_scope_tells_committed_entries_from_ones_inside_an_open_transaction(platform: Platform) -> None:
    with acting_as(AuditActor.anonymous()) as scope:
        with pytest.raises(RuntimeError), platform.db.transaction() as session:
            record(session, AuditEvent("identity.merge"))
            raise RuntimeError("rolled back")
        record_now(platform.db, AuditEvent("auth.token_rejected"))
    assert scope.recorded == ["identity.merge", "auth.token_rejected"]
    assert scope.committed == ["auth.token_rejected"]
