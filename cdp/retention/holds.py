"""Legal holds: data a DPO has frozen (litigation, an investigation, a regulator's order). Nothing under
an active hold is destroyed — not by the retention sweep, not by an erasure request — until the hold is
released, and both placing and releasing need a reason and are audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, record
from cdp.db.models import EntityMember, LegalHold
from cdp.db.types import utcnow
from cdp.errors import CdpError


class HoldError(CdpError):
    pass


class HoldNotFound(CdpError):
    pass


@dataclass(frozen=True)
class HoldView:
    id: uuid.UUID
    record_id: uuid.UUID
    entity_id: uuid.UUID | None
    reason: str
    created_by: str
    created_at: datetime
    released_by: str | None
    released_at: datetime | None
    release_reason: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "record_id": str(self.record_id),
            "customer_id": str(self.entity_id) if self.entity_id else None,
            "reason": self.reason,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "active": self.active,
            "released_by": self.released_by,
            "released_at": self.released_at.isoformat() if self.released_at else None,
            "release_reason": self.release_reason,
        }


def _view(row: LegalHold) -> HoldView:
    return HoldView(
        row.id,
        row.record_id,
        row.entity_id,
        row.reason,
        row.created_by,
        row.created_at,
        row.released_by,
        row.released_at,
        row.release_reason,
    )


def _reason(text: str) -> str:
    cleaned = " ".join(text.split())
    if not 3 <= len(cleaned) <= 300:
        raise HoldError("a reason of 3 to 300 characters is required (a case number, not personal data)")
    return cleaned


class LegalHolds:
    """Holds over one session; the caller owns the transaction (and its audit entry commits with it)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def place(
        self,
        *,
        reason: str,
        actor: str,
        entity_id: uuid.UUID | None = None,
        record_id: uuid.UUID | None = None,
    ) -> list[HoldView]:
        """Hold a whole customer (each of its records, as they are now) or one record."""
        if (entity_id is None) == (record_id is None):
            raise HoldError("hold either a customer or a record")
        why = _reason(reason)
        if entity_id is not None:
            records = list(
                self.session.execute(
                    select(EntityMember.record_id).where(EntityMember.entity_id == entity_id)
                ).scalars()
            )
            if not records:
                raise HoldNotFound(f"customer {entity_id} does not exist")
        else:
            assert record_id is not None
            entity_id = self.session.execute(
                select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
            ).scalar_one_or_none()
            if entity_id is None:
                raise HoldNotFound(f"record {record_id} does not exist")
            records = [record_id]
        now = utcnow()
        rows = [
            LegalHold(
                id=uuid.uuid4(),
                record_id=r,
                entity_id=entity_id,
                reason=why,
                created_by=actor,
                created_at=now,
            )
            for r in records
        ]
        self.session.add_all(rows)
        self.session.flush()
        record(
            self.session,
            AuditEvent(
                "retention.hold",
                subjects=(str(entity_id), *(str(r) for r in records)),
                details={"holds": len(rows)},
            ),
        )
        return [_view(row) for row in rows]

    def release(self, hold_id: uuid.UUID, *, reason: str, actor: str) -> HoldView:
        row = self.session.get(LegalHold, hold_id, with_for_update=True)
        if row is None:
            raise HoldNotFound(f"legal hold {hold_id} does not exist")
        if row.released_at is not None:
            raise HoldError(f"legal hold {hold_id} was already released")
        row.released_at = utcnow()
        row.released_by = actor
        row.release_reason = _reason(reason)
        self.session.flush()
        subjects = (str(row.entity_id), str(row.record_id)) if row.entity_id else (str(row.record_id),)
        record(
            self.session, AuditEvent("retention.release", subjects=subjects, details={"hold_id": str(row.id)})
        )
        return _view(row)

    def search(
        self, *, entity_id: uuid.UUID | None = None, active_only: bool = True, limit: int = 200
    ) -> list[HoldView]:
        query = select(LegalHold).order_by(LegalHold.created_at.desc(), LegalHold.id).limit(limit)
        if entity_id is not None:
            query = query.where(LegalHold.entity_id == entity_id)
        if active_only:
            query = query.where(LegalHold.released_at.is_(None))
        return [_view(row) for row in self.session.execute(query).scalars()]
