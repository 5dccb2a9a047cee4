"""The local outbox on SQLite and PostgreSQL: messages encrypted under the recipient's own key, newest
first, and gone for good once the recipient is crypto-shredded."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from cdp.access.outbox import Outbox, OutboxError
from cdp.db.models import OutboxMessage
from cdp.db.types import utcnow
from cdp.platform import Platform
from cdp.vault import SubjectShredded
from cdp.vault.subjects import SubjectStore


def subject(platform: Platform) -> uuid.UUID:
    with platform.db.transaction() as session:
        return SubjectStore(session, platform.vault.keys).create()[0]


def put(
    platform: Platform, subject_id: uuid.UUID, body: str, recipient: str = "quintessa@example.org"
) -> uuid.UUID:
    with platform.db.transaction() as session:
        return Outbox(session, platform.vault).put(
            subject_id, purpose="sign_in_code", recipient=recipient, subject="Your code", body=body
        )


def latest(platform: Platform, limit: int = 50) -> list[str]:
    with platform.db.read() as session:
        return [entry.body for entry in Outbox(session, platform.vault).latest(limit)]


def test_message_round_trips_and_is_encrypted_at_rest(platform: Platform) -> None:
    message_id = put(platform, subject(platform), "Your code is 424242")
    with platform.db.read() as session:
        [entry] = Outbox(session, platform.vault).latest()
        raw = session.execute(select(OutboxMessage.enc_message)).scalar_one()
    assert (entry.id, entry.channel, entry.purpose) == (message_id, "email", "sign_in_code")
    assert (entry.recipient, entry.subject, entry.body) == (
        "quintessa@example.org",
        "Your code",
        "Your code is 424242",
    )
    for plain in (b"quintessa", b"424242", b"Your code"):
        assert plain not in raw
    assert "424242" not in repr(entry) and "quintessa" not in repr(entry)


def test_newest_first_and_limited(platform: Platform) -> None:
    owner = subject(platform)
    ids = [put(platform, owner, f"message {n}") for n in range(3)]
    with platform.db.transaction() as session:
        for n, message_id in enumerate(ids):
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .values(created_at=utcnow().replace(year=2020 + n))
            )
    assert latest(platform) == ["message 2", "message 1", "message 0"]
    assert latest(platform, limit=2) == ["message 2", "message 1"]


def test_messages_of_a_shredded_subject_are_unreadable_and_skipped(platform: Platform) -> None:
    erased, kept = subject(platform), subject(platform)
    put(platform, erased, "code for the erased customer")
    put(platform, kept, "code for the other customer")
    with platform.db.transaction() as session:
        SubjectStore(session, platform.vault.keys).shred([erased])
    assert latest(platform) == ["code for the other customer"]
    with platform.db.read() as session, pytest.raises(SubjectShredded):
        SubjectStore(session, platform.vault.keys).open(erased)
    with pytest.raises(SubjectShredded):
        put(platform, erased, "no new messages to an erased customer")


def test_unknown_channel_is_refused(platform: Platform) -> None:
    with platform.db.transaction() as session, pytest.raises(OutboxError):
        Outbox(session, platform.vault).put(
            subject(platform),
            purpose="sign_in_code",
            recipient="a@example.org",
            subject="s",
            body="b",
            channel="sms",
        )
