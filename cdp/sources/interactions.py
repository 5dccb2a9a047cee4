"""Interactions (contact history): stored encrypted under the customer's subject key, read as a
timeline ordered by time with keyset pagination."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from cdp.db.models import Interaction, Subject
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.vault import Vault
from cdp.vault.cipher import FieldCipher
from cdp.vault.subject_keys import WrappedKey
from cdp.vault.subjects import SubjectStore

INTERACTION_TABLE = "interaction"


class InvalidCursor(CdpError):
    pass


@dataclass
class NewInteraction:
    record_id: uuid.UUID
    subject_id: uuid.UUID
    natural_key: bytes
    occurred_at: datetime
    channel: str
    direction: str
    kind: str
    department: str
    details: dict[str, Any]
    fingerprint: bytes


@dataclass(frozen=True)
class ExistingInteraction:
    id: uuid.UUID
    subject_id: uuid.UUID
    fingerprint: bytes


@dataclass(frozen=True)
class TimelineEntry:
    id: uuid.UUID
    record_id: uuid.UUID
    source_id: uuid.UUID
    occurred_at: datetime
    channel: str
    direction: str
    kind: str
    department: str
    details: dict[str, Any]


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next_cursor: str | None


def encode_cursor(occurred_at: datetime, entry_id: uuid.UUID) -> str:
    raw = f"{occurred_at.isoformat()}|{entry_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, entry_id = raw.split("|")
        return datetime.fromisoformat(at), uuid.UUID(entry_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("the pagination cursor is not valid") from None


class InteractionRepository:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault

    def natural_key(self, source_id: uuid.UUID, identity: str) -> bytes:
        return self.vault.blind.token("interaction_id", f"{source_id}:{identity}")

    def existing(
        self, source_id: uuid.UUID, natural_keys: Sequence[bytes]
    ) -> dict[bytes, ExistingInteraction]:
        found: dict[bytes, ExistingInteraction] = {}
        keys = list(natural_keys)
        for start in range(0, len(keys), 500):
            rows = self.session.execute(
                select(
                    Interaction.natural_key, Interaction.id, Interaction.subject_id, Interaction.fingerprint
                ).where(
                    Interaction.source_id == source_id, Interaction.natural_key.in_(keys[start : start + 500])
                )
            ).all()
            for row in rows:
                found[row.natural_key] = ExistingInteraction(row.id, row.subject_id, row.fingerprint)
        return found

    def insert(self, source_id: uuid.UUID, items: Sequence[NewInteraction]) -> None:
        if not items:
            return
        now = utcnow()
        ciphers: dict[uuid.UUID, FieldCipher] = {}
        rows = []
        for item in items:
            cipher = ciphers.get(item.subject_id)
            if cipher is None:
                cipher = ciphers[item.subject_id] = self._cipher(item.subject_id)
            interaction_id = uuid.uuid4()
            rows.append(
                {
                    "id": interaction_id,
                    "source_id": source_id,
                    "natural_key": item.natural_key,
                    "record_id": item.record_id,
                    "subject_id": item.subject_id,
                    "occurred_at": item.occurred_at,
                    "channel": item.channel,
                    "direction": item.direction,
                    "kind": item.kind,
                    "department": item.department,
                    "ingested_at": now,
                    "updated_at": now,
                    "version": 1,
                    "fingerprint": item.fingerprint,
                    "enc_details": cipher.encrypt(
                        INTERACTION_TABLE, str(interaction_id), "details", item.details
                    ),
                }
            )
        self.session.execute(insert(Interaction), rows)

    def update(self, existing: ExistingInteraction, item: NewInteraction) -> None:
        cipher = self._cipher(existing.subject_id)
        self.session.execute(
            update(Interaction)
            .where(Interaction.id == existing.id)
            .values(
                occurred_at=item.occurred_at,
                channel=item.channel,
                direction=item.direction,
                kind=item.kind,
                department=item.department,
                updated_at=utcnow(),
                version=Interaction.version + 1,
                fingerprint=item.fingerprint,
                enc_details=cipher.encrypt(INTERACTION_TABLE, str(existing.id), "details", item.details),
            )
        )

    def _cipher(self, subject_id: uuid.UUID) -> FieldCipher:
        return SubjectStore(self.session, self.vault.keys).open(subject_id)

    def timeline(
        self,
        subject_ids: Sequence[uuid.UUID],
        *,
        limit: int = 50,
        cursor: str | None = None,
        with_details: bool = True,
        department: str | None = None,
    ) -> TimelinePage:
        """Interactions of these subjects (one resolved customer may have many), newest first.

        ``with_details=False`` leaves the encrypted content (summary, content, outcome, amounts) closed —
        the reader may see that contact happened, not what was said; ``department`` keeps one
        department's interactions only."""
        if not 1 <= limit <= 500:
            raise ValueError("limit must be between 1 and 500")
        query = (
            select(Interaction, Subject.key_version, Subject.kek_version, Subject.wrapped_key)
            .join(Subject, Subject.id == Interaction.subject_id)
            .where(Interaction.subject_id.in_(list(subject_ids)))
            .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
            .limit(limit + 1)
        )
        if department is not None:
            query = query.where(Interaction.department == department)
        if cursor is not None:
            at, last_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    Interaction.occurred_at < at,
                    and_(Interaction.occurred_at == at, Interaction.id < last_id),
                )
            )
        rows = self.session.execute(query).all()
        entries = []
        for interaction, key_version, kek_version, wrapped in rows[:limit]:
            details: Any = {}
            if with_details:
                cipher = self.vault.keys.open(
                    interaction.subject_id, WrappedKey(key_version, kek_version, wrapped)
                )
                details = cipher.decrypt(
                    INTERACTION_TABLE, str(interaction.id), "details", interaction.enc_details
                )
            entries.append(
                TimelineEntry(
                    id=interaction.id,
                    record_id=interaction.record_id,
                    source_id=interaction.source_id,
                    occurred_at=interaction.occurred_at,
                    channel=interaction.channel,
                    direction=interaction.direction,
                    kind=interaction.kind,
                    department=interaction.department,
                    details=details if isinstance(details, dict) else {},
                )
            )
        next_cursor = encode_cursor(entries[-1].occurred_at, entries[-1].id) if len(rows) > limit else None
        return TimelinePage(entries, next_cursor)
