"""Signed checkpoints: Ed25519 signatures over "the first N entries hash to H".

A checkpoint lets anyone holding the public key check an exported slice of the log without the
database, and bounds what an attacker with write access to the database could rewrite unnoticed: every
entry up to the latest checkpoint is fixed by a signature they cannot make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.audit.canonical import checkpoint_message
from cdp.audit.sequencer import chain_head, lock_chain
from cdp.db import Database
from cdp.db.models import AuditCheckpoint
from cdp.db.types import utcnow
from cdp.vault import Vault
from cdp.vault.audit_keys import AuditSigningKeys


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    seq: int
    head_hash: str
    signed_at: datetime
    key_id: str
    signature: str

    @property
    def message(self) -> bytes:
        return checkpoint_message(self.origin, self.seq, self.head_hash, self.signed_at)

    def to_dict(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "signed_at": self.signed_at.isoformat(),
            "key_id": self.key_id,
            "signature": self.signature,
            "message": self.message.decode("ascii"),
        }


def _from_row(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(row.origin, row.seq, row.head_hash, row.signed_at, row.key_id, row.signature)


def latest_checkpoint(session: Session) -> Checkpoint | None:
    row = session.execute(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
    ).scalar_one_or_none()
    return _from_row(row) if row is not None else None


def all_checkpoints(session: Session) -> list[Checkpoint]:
    rows = session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).scalars()
    return [_from_row(row) for row in rows]


def _due(session: Session, min_interval: timedelta | None) -> bool:
    head = chain_head(session)
    if head.seq == 0:
        return False
    latest = latest_checkpoint(session)
    if latest is None:
        return True
    if latest.seq >= head.seq:
        return False
    return min_interval is None or utcnow() - latest.signed_at >= min_interval


def sign_checkpoint(
    db: Database, vault: Vault, origin: str, *, min_interval: timedelta | None = None
) -> Checkpoint | None:
    """Sign the current head, unless it is already signed or (with ``min_interval``) the latest
    checkpoint is younger than that. Returns the new checkpoint, or None.

    Whether one is due is decided first without any lock (every server worker asks twice a second);
    the chain lock is taken only to sign, and the question asked again under it."""
    with db.read() as session:
        if not _due(session, min_interval):
            return None
    with db.transaction() as session:
        lock_chain(session)
        if not _due(session, min_interval):
            return None
        head = chain_head(session)
        now = utcnow()
        signer = AuditSigningKeys(session, vault).active()
        signature = signer.sign(checkpoint_message(origin, head.seq, head.hash, now))
        session.add(
            AuditCheckpoint(
                seq=head.seq,
                head_hash=head.hash,
                origin=origin,
                signed_at=now,
                key_id=signer.key_id,
                signature=signature,
            )
        )
        return Checkpoint(origin, head.seq, head.hash, now, signer.key_id, signature)
