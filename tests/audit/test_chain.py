"""Tampering with the sealed audit log by raw SQL, the way someone with write access to the database
would, is caught by verification at the entry where it happened — on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import bindparam, select, text

from cdp.audit import ActorKind, AuditActor, AuditEvent, AuditService, record_now
from cdp.audit.canonical import checkpoint_message, document_hash, entry_document
from cdp.audit.sequencer import document_of
from cdp.audit.verify import ChainProblem, VerifyReport, verify_chain
from cdp.db.models import AuditEntry
from cdp.db.types import UTCDateTime, utcnow
from cdp.platform import Platform
from cdp.vault.audit_keys import key_id_of

ORIGIN = "https://cdp.example.test"
CHAIN_LENGTH = 20
AGENT = AuditActor("client-7f3a", ActorKind.CLIENT, role="support_agent", department="care")


def record_reads(platform: Platform, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        record_now(
            platform.db,
            AuditEvent(
                "profile.read",
                purpose="support",
                subjects=(f"cust-{i}", f"rec-{i}"),
                fields=("email", "phone"),
                details={"records": i},
            ),
            actor=AGENT,
        )


def service(platform: Platform) -> AuditService:
    return AuditService(platform.db, platform.vault, ORIGIN)


@dataclass
class Chain:
    platform: Platform
    ids: dict[int, str]
    """Entry id (canonical UUID text) by seq, as sealed."""
    keys: dict[str, str]
    """The checkpoint keys as they were before any tampering: what a verifier trusts."""

    def sql(self, statement: str, **params: Any) -> None:
        with self.platform.db.engine.begin() as connection:
            connection.execute(text(statement), params)

    def verify(self) -> VerifyReport:
        return verify_chain(self.platform.db, self.keys)

    def problem(self) -> ChainProblem:
        report = self.verify()
        assert not report.ok, "tampering went unnoticed"
        assert report.first_problem is not None
        return report.first_problem

    def row(self, seq: int) -> AuditEntry:
        with self.platform.db.read() as session:
            return session.execute(select(AuditEntry).where(AuditEntry.seq == seq)).scalar_one()

    @property
    def is_sqlite(self) -> bool:
        return self.platform.db.is_sqlite


def sealed_chain(platform: Platform, length: int = CHAIN_LENGTH) -> Chain:
    record_reads(platform, length)
    result, checkpoint = service(platform).seal_and_checkpoint()
    assert result.sealed == length and checkpoint is not None and checkpoint.seq == length
    with platform.db.read() as session:
        rows = session.execute(select(AuditEntry.seq, AuditEntry.id).where(AuditEntry.seq.is_not(None)))
        ids = {seq: str(entry_id) for seq, entry_id in rows if seq is not None}
    return Chain(platform, ids, service(platform).public_keys())


@pytest.fixture
def chain(platform: Platform) -> Chain:
    return sealed_chain(platform)


K = 7
"""The entry the tests tamper with: somewhere in the middle of the chain."""


def test_an_untampered_chain_verifies(chain: Chain) -> None:
    report = chain.verify()
    assert report.ok, report.first_problem
    assert (report.entries, report.first_seq, report.head_seq) == (CHAIN_LENGTH, 1, CHAIN_LENGTH)
    assert (report.checkpoints, report.latest_checkpoint, report.pending) == (1, CHAIN_LENGTH, 0)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "identity.merge"),
        ("actor", "client-0000"),
        ("actor_kind", "user"),
        ("role", "admin"),
        ("department", "sales"),
        ("purpose", "marketing"),
        ("request_id", "req-1"),
        ("subjects", '["cust-999","rec-7"]'),
        ("fields", '["email"]'),
        ("details", '{"records":70}'),
        ("outcome", "denied"),
        ("hash", "f" * 64),
    ],
)
def test_changing_a_column_of_an_entry_is_caught_at_that_entry(chain: Chain, column: str, value: str) -> None:
    chain.sql(f"UPDATE audit_entry SET {column} = :value WHERE seq = :k", value=value, k=K)  # noqa: S608

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K, chain.ids[K])
    assert "modified" in problem.reason


def test_changing_when_an_entry_was_recorded_is_caught_at_that_entry(chain: Chain) -> None:
    shifted = "datetime(recorded_at, '-1 second')" if chain.is_sqlite else "recorded_at - interval '1 second'"
    chain.sql(f"UPDATE audit_entry SET recorded_at = {shifted} WHERE seq = :k", k=K)  # noqa: S608

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K, chain.ids[K])
    assert "modified" in problem.reason


def test_relinking_an_entry_to_another_predecessor_is_caught_at_that_entry(chain: Chain) -> None:
    chain.sql("UPDATE audit_entry SET prev_hash = :h WHERE seq = :k", h=chain.row(K - 2).hash, k=K)

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K, chain.ids[K])
    assert "prev_hash" in problem.reason


def test_deleting_an_entry_is_caught_at_the_gap(chain: Chain) -> None:
    chain.sql("DELETE FROM audit_entry WHERE seq = :k", k=K)

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K + 1, chain.ids[K + 1])
    assert "gap" in problem.reason


def test_deleting_the_last_entries_is_caught_by_the_checkpoint_beyond_the_head(chain: Chain) -> None:
    chain.sql("DELETE FROM audit_entry WHERE seq > :k", k=CHAIN_LENGTH - 3)

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (CHAIN_LENGTH - 2, None)
    assert f"up to seq {CHAIN_LENGTH}" in problem.reason


def test_inserting_a_correctly_hashed_forged_entry_breaks_the_link_after_it(chain: Chain) -> None:
    chain.sql("UPDATE audit_entry SET seq = -seq WHERE seq >= :k", k=K)
    chain.sql("UPDATE audit_entry SET seq = 1 - seq WHERE seq <= :k", k=-K)
    forged_id, at = uuid.uuid4(), utcnow()
    prev_hash = chain.row(K - 1).hash
    assert prev_hash is not None
    document = entry_document(
        seq=K,
        prev_hash=prev_hash,
        entry_id=str(forged_id),
        recorded_at=at,
        action="profile.read",
        outcome="success",
        actor=AGENT.principal,
        actor_kind=AGENT.kind.value,
        role=AGENT.role,
        department=AGENT.department,
        purpose="support",
        request_id=None,
        subjects="[]",
        fields="[]",
        details="{}",
    )
    insert = text(
        "INSERT INTO audit_entry (id, seq, recorded_at, action, outcome, actor, actor_kind, role, department,"
        " purpose, subjects, fields, details, prev_hash, hash, sealed_at)"
        " VALUES (:id, :seq, :at, 'profile.read', 'success', :actor, 'client', 'support_agent', 'care',"
        " 'support', '[]', '[]', '{}', :prev, :hash, :at)"
    ).bindparams(bindparam("id", type_=AuditEntry.id.type), bindparam("at", type_=UTCDateTime()))
    with chain.platform.db.engine.begin() as connection:
        connection.execute(
            insert,
            {
                "id": forged_id,
                "seq": K,
                "at": at,
                "actor": AGENT.principal,
                "prev": prev_hash,
                "hash": document_hash(document),
            },
        )

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K + 1, chain.ids[K])
    assert "prev_hash" in problem.reason


def test_swapping_two_entries_is_caught_at_the_first_of_them(chain: Chain) -> None:
    chain.sql("UPDATE audit_entry SET seq = -1 WHERE seq = 5")
    chain.sql("UPDATE audit_entry SET seq = 5 WHERE seq = 9")
    chain.sql("UPDATE audit_entry SET seq = 9 WHERE seq = -1")

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (5, chain.ids[9])


def test_rewriting_the_chain_with_recomputed_hashes_is_caught_by_the_signed_checkpoint(chain: Chain) -> None:
    chain.sql("UPDATE audit_entry SET purpose = 'marketing' WHERE seq = :k", k=K)
    prev = chain.row(K - 1).hash
    assert prev is not None
    for seq in range(K, CHAIN_LENGTH + 1):
        digest = document_hash(document_of(chain.row(seq), seq, prev))
        chain.sql("UPDATE audit_entry SET prev_hash = :p, hash = :h WHERE seq = :s", p=prev, h=digest, s=seq)
        prev = digest

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (CHAIN_LENGTH, chain.ids[CHAIN_LENGTH])
    assert "checkpoint" in problem.reason


def test_removing_an_entry_from_the_subject_index_is_caught_at_that_entry(chain: Chain) -> None:
    chain.sql(
        "DELETE FROM audit_subject WHERE subject_id = :s"
        " AND entry_id IN (SELECT id FROM audit_entry WHERE seq = :k)",
        s=f"cust-{K - 1}",
        k=K,
    )

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K, chain.ids[K])
    assert "subject search index" in problem.reason


def test_adding_a_subject_to_the_index_is_caught_at_that_entry(chain: Chain) -> None:
    chain.sql(
        "INSERT INTO audit_subject (entry_id, subject_id)"
        " SELECT id, 'cust-999' FROM audit_entry WHERE seq = :k",
        k=K,
    )

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (K, chain.ids[K])
    assert "subject search index" in problem.reason


def test_a_checkpoint_naming_another_head_is_caught(chain: Chain) -> None:
    chain.sql("UPDATE audit_checkpoint SET head_hash = :h", h=chain.row(CHAIN_LENGTH - 1).hash)

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (CHAIN_LENGTH, chain.ids[CHAIN_LENGTH])
    assert "checkpoint" in problem.reason


def test_a_checkpoint_with_an_altered_signature_is_caught(chain: Chain) -> None:
    with chain.platform.db.read() as session:
        signature = session.execute(text("SELECT signature FROM audit_checkpoint")).scalar_one()
    altered = ("0" if signature[0] != "0" else "1") + signature[1:]
    chain.sql("UPDATE audit_checkpoint SET signature = :s", s=altered)

    problem = chain.problem()

    assert problem.seq == CHAIN_LENGTH and "signature" in problem.reason


def test_a_checkpoint_signed_by_a_key_slipped_into_the_database_is_caught_with_pinned_keys(
    chain: Chain,
) -> None:
    forger = Ed25519PrivateKey.generate()
    public = (
        forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    )
    key_id, head, at = key_id_of(public), chain.row(K).hash, utcnow()
    assert head is not None
    chain.sql(
        "INSERT INTO audit_signing_key (key_id, public_key, subject_id, enc_private, created_at)"
        " SELECT :kid, :pub, subject_id, enc_private, created_at FROM audit_signing_key",
        kid=key_id,
        pub=public,
    )
    signature = forger.sign(checkpoint_message(ORIGIN, K, head, at)).hex()
    insert = text(
        "INSERT INTO audit_checkpoint (seq, head_hash, origin, signed_at, key_id, signature)"
        " VALUES (:seq, :head, :origin, :at, :kid, :sig)"
    ).bindparams(bindparam("at", type_=UTCDateTime()))
    with chain.platform.db.engine.begin() as connection:
        connection.execute(
            insert, {"seq": K, "head": head, "origin": ORIGIN, "at": at, "kid": key_id, "sig": signature}
        )

    problem = chain.problem()

    assert problem.seq == K and "no valid signature by a known key" in problem.reason


def test_pending_entries_are_counted_not_failed(chain: Chain) -> None:
    record_reads(chain.platform, 3, start=100)

    report = chain.verify()

    assert report.ok, report.first_problem
    assert (report.pending, report.entries, report.head_seq) == (3, CHAIN_LENGTH, CHAIN_LENGTH)


def test_appending_after_a_checkpoint_and_resealing_extends_the_chain(chain: Chain) -> None:
    record_reads(chain.platform, 5, start=100)
    result, checkpoint = service(chain.platform).seal_and_checkpoint()
    assert result.sealed == 5 and checkpoint is not None

    report = chain.verify()

    assert report.ok, report.first_problem
    assert (report.entries, report.head_seq, report.checkpoints, report.pending) == (25, 25, 2, 0)
    assert chain.row(CHAIN_LENGTH + 1).prev_hash == chain.row(CHAIN_LENGTH).hash


def test_a_tampered_old_entry_stays_caught_after_more_checkpoints(chain: Chain) -> None:
    record_reads(chain.platform, 5, start=100)
    service(chain.platform).seal_and_checkpoint()
    chain.sql("UPDATE audit_entry SET outcome = 'failed' WHERE seq = 2")

    problem = chain.problem()

    assert (problem.seq, problem.entry_id) == (2, chain.ids[2])


def test_checkpoints_signed_with_a_rotated_key_keep_verifying(chain: Chain) -> None:
    from cdp.vault.audit_keys import AuditSigningKeys

    with chain.platform.db.transaction() as session:
        new_key = AuditSigningKeys(session, chain.platform.vault).rotate()
    record_reads(chain.platform, 2, start=100)
    _, checkpoint = service(chain.platform).seal_and_checkpoint()
    assert checkpoint is not None and checkpoint.key_id == new_key.key_id

    report = verify_chain(chain.platform.db, service(chain.platform).public_keys())

    assert report.ok and report.checkpoints == 2
    assert utcnow() - checkpoint.signed_at < timedelta(minutes=1)
