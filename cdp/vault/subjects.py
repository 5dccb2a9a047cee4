"""Database side of data keys: creating subjects, loading wrapped keys, shredding, rotation batches.

Kept in the vault package because wrapped keys are key material; other packages only ever see a
subject id and an opened :class:`~cdp.vault.cipher.FieldCipher`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from cdp.db.models import BlindIndexEntry, Subject, table_of
from cdp.db.types import utcnow
from cdp.vault.cipher import FieldCipher
from cdp.vault.errors import VaultError
from cdp.vault.subject_keys import SubjectKeys, WrappedKey


class SubjectNotFound(VaultError):
    pass


@dataclass(frozen=True)
class KeyVersionCount:
    kek_version: int | None
    subjects: int


class SubjectStore:
    def __init__(self, session: Session, keys: SubjectKeys) -> None:
        self.session = session
        self.keys = keys

    def create_many(self, count: int) -> list[tuple[uuid.UUID, FieldCipher]]:
        """New subjects, each with a fresh data key; returns the opened ciphers to encrypt with."""
        created: list[tuple[uuid.UUID, FieldCipher]] = []
        rows = []
        now = utcnow()
        for _ in range(count):
            subject_id = uuid.uuid4()
            wrapped, cipher = self.keys.new(subject_id)
            rows.append(
                {
                    "id": subject_id,
                    "created_at": now,
                    "key_version": wrapped.key_version,
                    "kek_version": wrapped.kek_version,
                    "wrapped_key": wrapped.blob,
                }
            )
            created.append((subject_id, cipher))
        if rows:
            self.session.execute(insert(Subject), rows)
        return created

    def create(self) -> tuple[uuid.UUID, FieldCipher]:
        return self.create_many(1)[0]

    def wrapped_key(self, subject_id: uuid.UUID) -> WrappedKey:
        row = self.session.execute(
            select(Subject.key_version, Subject.kek_version, Subject.wrapped_key).where(
                Subject.id == subject_id
            )
        ).one_or_none()
        if row is None:
            raise SubjectNotFound(f"subject {subject_id} does not exist")
        return WrappedKey(row.key_version, row.kek_version, row.wrapped_key)

    def open(self, subject_id: uuid.UUID) -> FieldCipher:
        return self.keys.open(subject_id, self.wrapped_key(subject_id))

    def shred(self, subject_ids: Iterable[uuid.UUID]) -> int:
        """Destroy the data keys (and blind-index tokens) of these subjects. Idempotent.

        The ciphertext rows may stay until the erasure job deletes them: without the key they are noise.
        """
        ids = list(subject_ids)
        if not ids:
            return 0
        self.session.execute(delete(BlindIndexEntry).where(BlindIndexEntry.subject_id.in_(ids)))
        result = self.session.execute(
            update(Subject)
            .where(Subject.id.in_(ids), Subject.wrapped_key.is_not(None))
            .values(wrapped_key=None, kek_version=None, shredded_at=utcnow())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def count_by_kek_version(self) -> list[KeyVersionCount]:
        rows = self.session.execute(
            select(Subject.kek_version, func.count())
            .group_by(Subject.kek_version)
            .order_by(Subject.kek_version)
        ).all()
        return [KeyVersionCount(version, count) for version, count in rows]

    def pending_rewrap(self, target_kek_version: int) -> int:
        return int(
            self.session.execute(
                select(func.count())
                .select_from(Subject)
                .where(Subject.wrapped_key.is_not(None), Subject.kek_version != target_kek_version)
            ).scalar_one()
        )

    def rewrap_batch(
        self, target_kek_version: int, limit: int, after: uuid.UUID | None = None
    ) -> tuple[int, uuid.UUID | None]:
        """Rewrap up to ``limit`` data keys not yet under the target KEK, in id order after ``after``.
        Returns how many were rewrapped and the last id seen (the cursor for the next batch).

        Keyset pagination keeps every batch as cheap as the first: without ``after`` each batch would
        walk past all the rows earlier batches already did. The update is guarded by the old KEK
        version, so a concurrent shred or rotation is never undone.
        """
        query = (
            select(Subject.id, Subject.key_version, Subject.kek_version, Subject.wrapped_key)
            .where(Subject.wrapped_key.is_not(None), Subject.kek_version != target_kek_version)
            .order_by(Subject.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(Subject.id > after)
        rows = self.session.execute(query).all()
        updates: list[dict[str, object]] = []
        for row in rows:
            new = self.keys.rewrap(
                row.id, WrappedKey(row.key_version, row.kek_version, row.wrapped_key), target_kek_version
            )
            updates.append(
                {
                    "b_id": row.id,
                    "b_old": row.kek_version,
                    "kek_version": new.kek_version,
                    "wrapped_key": new.blob,
                }
            )
        if updates:
            table = table_of(Subject)
            self.session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.kek_version == bindparam("b_old"))
                .values(kek_version=bindparam("kek_version"), wrapped_key=bindparam("wrapped_key")),
                updates,
            )
        return len(updates), (rows[-1].id if rows else None)
