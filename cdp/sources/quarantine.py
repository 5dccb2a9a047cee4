"""Quarantine: rows that could not be ingested, kept encrypted with a reason until retried or discarded.

Each quarantined row gets a data key of its own, so discarding it (or erasing the person it describes)
crypto-shreds it like any other customer data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from cdp.db.models import QuarantinedRow
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.vault import Vault
from cdp.vault.subjects import SubjectStore

QUARANTINE_TABLE = "quarantined_row"


class QuarantineEntryNotFound(CdpError):
    pass


@dataclass(frozen=True)
class QuarantineEntry:
    id: uuid.UUID
    source_id: uuid.UUID
    run_id: uuid.UUID | None
    kind: str
    row_number: int
    reason: str
    detail: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Rejection:
    row_number: int
    reason: str
    detail: str
    values: dict[str, Any]


class QuarantineRepository:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault
        self.subjects = SubjectStore(session, vault.keys)

    def add_many(
        self, source_id: uuid.UUID, run_id: uuid.UUID | None, kind: str, rejected: Sequence[Rejection]
    ) -> None:
        """Quarantine rejected rows; a row already pending for this source (same content) is not added
        again, so re-ingesting a file with a bad row keeps one entry for it."""
        fingerprints = [self._fingerprint(kind, r.values) for r in rejected]
        pending: set[bytes] = set()
        if fingerprints:
            pending = set(
                self.session.execute(
                    select(QuarantinedRow.fingerprint).where(
                        QuarantinedRow.source_id == source_id,
                        QuarantinedRow.status == "pending",
                        QuarantinedRow.fingerprint.in_(fingerprints),
                    )
                ).scalars()
            )
        fresh: dict[bytes, Rejection] = {}
        for fingerprint, rejection in zip(fingerprints, rejected, strict=True):
            if fingerprint not in pending:
                fresh.setdefault(fingerprint, rejection)
        if not fresh:
            return
        now = utcnow()
        rows = []
        keys = self.subjects.create_many(len(fresh))
        for (fingerprint, rejection), (subject_id, cipher) in zip(fresh.items(), keys, strict=True):
            entry_id = uuid.uuid4()
            rows.append(
                {
                    "id": entry_id,
                    "source_id": source_id,
                    "run_id": run_id,
                    "kind": kind,
                    "row_number": rejection.row_number,
                    "reason": rejection.reason,
                    "detail": rejection.detail[:300],
                    "status": "pending",
                    "created_at": now,
                    "subject_id": subject_id,
                    "fingerprint": fingerprint,
                    "enc_payload": cipher.encrypt(
                        QUARANTINE_TABLE, str(entry_id), "payload", rejection.values
                    ),
                }
            )
        self.session.execute(insert(QuarantinedRow), rows)

    def _fingerprint(self, kind: str, values: dict[str, Any]) -> bytes:
        content = json.dumps(values, sort_keys=True, default=str).encode("utf-8", errors="surrogatepass")
        return self.vault.blind.fingerprint("quarantine_fingerprint", kind.encode() + b"|" + content)

    def entries(
        self,
        *,
        source_id: uuid.UUID | None = None,
        reason: str | None = None,
        status: str | None = "pending",
        kind: str | None = None,
        limit: int = 100,
    ) -> list[QuarantineEntry]:
        query = (
            select(QuarantinedRow).order_by(QuarantinedRow.created_at, QuarantinedRow.row_number).limit(limit)
        )
        if source_id is not None:
            query = query.where(QuarantinedRow.source_id == source_id)
        if reason is not None:
            query = query.where(QuarantinedRow.reason == reason)
        if status is not None:
            query = query.where(QuarantinedRow.status == status)
        if kind is not None:
            query = query.where(QuarantinedRow.kind == kind)
        return [_entry(row) for row in self.session.execute(query).scalars()]

    def counts_by_reason(self, source_id: uuid.UUID | None = None) -> dict[str, int]:
        query = (
            select(QuarantinedRow.reason, func.count())
            .where(QuarantinedRow.status == "pending")
            .group_by(QuarantinedRow.reason)
        )
        if source_id is not None:
            query = query.where(QuarantinedRow.source_id == source_id)
        return {reason: count for reason, count in self.session.execute(query).all()}

    def _row(self, entry_id: uuid.UUID) -> QuarantinedRow:
        row = self.session.get(QuarantinedRow, entry_id)
        if row is None:
            raise QuarantineEntryNotFound(f"quarantine entry {entry_id} does not exist")
        return row

    def entry(self, entry_id: uuid.UUID) -> QuarantineEntry:
        return _entry(self._row(entry_id))

    def payload(self, entry_id: uuid.UUID) -> tuple[QuarantineEntry, dict[str, Any]]:
        row = self._row(entry_id)
        cipher = self.subjects.open(row.subject_id)
        values = cipher.decrypt(QUARANTINE_TABLE, str(row.id), "payload", row.enc_payload)
        return _entry(row), values if isinstance(values, dict) else {}

    def requeue(self, entry_id: uuid.UUID, reason: str, detail: str) -> None:
        self.session.execute(
            update(QuarantinedRow)
            .where(QuarantinedRow.id == entry_id)
            .values(reason=reason, detail=detail[:300])
        )

    def close(self, entry_id: uuid.UUID, status: str) -> None:
        """Mark an entry reprocessed or discarded and shred its payload key: the raw row is gone."""
        row = self._row(entry_id)
        self.subjects.shred([row.subject_id])
        row.status = status
        row.resolved_at = utcnow()


def _entry(row: QuarantinedRow) -> QuarantineEntry:
    return QuarantineEntry(
        row.id,
        row.source_id,
        row.run_id,
        row.kind,
        row.row_number,
        row.reason,
        row.detail,
        row.status,
        row.created_at,
    )
