"""The local outbox: messages cdp would send (sign-in codes, later receipts), kept instead of sent.

The demo never talks to a mail server; the operator reads the outbox (``cdp outbox list``). A message
is personal data (an address, often a secret code), so recipient, subject and body are encrypted as one
value under the *recipient's* subject key: erasing the customer crypto-shreds their messages with
everything else, and a database dump shows only the channel, purpose and time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.db.models import OutboxMessage, Subject
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.vault import SubjectShredded, Vault
from cdp.vault.subject_keys import WrappedKey
from cdp.vault.subjects import SubjectStore

TABLE = "outbox_message"
CHANNELS = frozenset({"email"})


class OutboxError(CdpError):
    pass


@dataclass(frozen=True)
class OutboxEntry:
    id: uuid.UUID
    created_at: datetime
    channel: str
    purpose: str
    recipient: str
    subject: str
    body: str

    def __repr__(self) -> str:
        # Entries carry addresses and sign-in codes; keep them out of tracebacks and test output.
        return f"OutboxEntry(id={self.id}, channel={self.channel}, purpose={self.purpose}, <redacted>)"


class Outbox:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault
        self.subjects = SubjectStore(session, vault.keys)

    def put(
        self,
        subject_id: uuid.UUID,
        *,
        purpose: str,
        recipient: str,
        subject: str,
        body: str,
        channel: str = "email",
    ) -> uuid.UUID:
        """Queue a message to the person ``subject_id`` holds the key of; returns the message id."""
        if channel not in CHANNELS:
            raise OutboxError(f"unknown channel {channel!r}; channels: {', '.join(sorted(CHANNELS))}")
        if not purpose or len(purpose) > 32:
            raise OutboxError("purpose must be 1-32 characters")
        cipher = self.subjects.open(subject_id)
        message_id = uuid.uuid4()
        self.session.add(
            OutboxMessage(
                id=message_id,
                subject_id=subject_id,
                channel=channel,
                purpose=purpose,
                created_at=utcnow(),
                enc_message=cipher.encrypt(
                    TABLE,
                    str(message_id),
                    "message",
                    {"recipient": recipient, "subject": subject, "body": body},
                ),
            )
        )
        self.session.flush()
        return message_id

    def latest(self, limit: int = 50) -> list[OutboxEntry]:
        """The newest readable messages first, decrypted. Messages of shredded subjects are skipped:
        they are unrecoverable by design, not an error. A tampered message still raises."""
        rows = self.session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.subject_id,
                OutboxMessage.created_at,
                OutboxMessage.channel,
                OutboxMessage.purpose,
                OutboxMessage.enc_message,
                Subject.key_version,
                Subject.kek_version,
                Subject.wrapped_key,
            )
            .join(Subject, Subject.id == OutboxMessage.subject_id)
            .where(Subject.wrapped_key.is_not(None))
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
            .limit(limit)
        ).all()
        entries: list[OutboxEntry] = []
        for row in rows:
            try:
                cipher = self.vault.keys.open(
                    row.subject_id, WrappedKey(row.key_version, row.kek_version, row.wrapped_key)
                )
            except SubjectShredded:
                continue
            message = cipher.decrypt(TABLE, str(row.id), "message", row.enc_message)
            assert isinstance(message, dict)
            entries.append(
                OutboxEntry(
                    id=row.id,
                    created_at=row.created_at,
                    channel=row.channel,
                    purpose=row.purpose,
                    recipient=str(message["recipient"]),
                    subject=str(message["subject"]),
                    body=str(message["body"]),
                )
            )
        return entries
