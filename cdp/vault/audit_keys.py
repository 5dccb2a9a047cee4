"""Ed25519 keys that sign audit checkpoints: generated here, private halves encrypted at rest.

Each private key is encrypted under a data key of its own (a subject row as key holder, like the token
signing keys), so KEK rotation covers it and a database dump alone cannot forge a checkpoint. Public keys
are plain: anyone holding one can check a checkpoint offline (:func:`verify_signature`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.db.models import AuditSigningKey
from cdp.db.types import utcnow
from cdp.vault import Vault
from cdp.vault.subjects import SubjectStore

TABLE = "audit_signing_key"


def key_id_of(public_key_hex: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def verify_signature(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is a valid Ed25519 signature of ``message`` under the key."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(signature_hex), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class CheckpointSigner:
    key_id: str
    public_key: str
    _private: Ed25519PrivateKey

    def sign(self, message: bytes) -> str:
        return self._private.sign(message).hex()


class AuditSigningKeys:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.subjects = SubjectStore(session, vault.keys)

    def _create(self) -> CheckpointSigner:
        private = Ed25519PrivateKey.generate()
        public_hex = (
            private.public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            .hex()
        )
        key_id = key_id_of(public_hex)
        subject_id, cipher = self.subjects.create()
        raw = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self.session.add(
            AuditSigningKey(
                key_id=key_id,
                public_key=public_hex,
                subject_id=subject_id,
                enc_private=cipher.encrypt(TABLE, key_id, "private", raw),
                created_at=utcnow(),
            )
        )
        self.session.flush()
        return CheckpointSigner(key_id, public_hex, private)

    def active(self) -> CheckpointSigner:
        """The current checkpoint signer, created on first use."""
        row = self.session.execute(
            select(AuditSigningKey)
            .where(AuditSigningKey.retired_at.is_(None))
            .order_by(AuditSigningKey.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            return self._create()
        raw = self.subjects.open(row.subject_id).decrypt(TABLE, row.key_id, "private", row.enc_private)
        assert isinstance(raw, bytes)
        return CheckpointSigner(row.key_id, row.public_key, Ed25519PrivateKey.from_private_bytes(raw))

    def rotate(self) -> CheckpointSigner:
        """A new signer; older keys stay listed (their checkpoints must stay verifiable) but sign no more."""
        now = utcnow()
        for row in self.session.execute(
            select(AuditSigningKey).where(AuditSigningKey.retired_at.is_(None))
        ).scalars():
            row.retired_at = now
        return self._create()

    def public_keys(self) -> dict[str, str]:
        """Every checkpoint key ever used, by key id (hex raw public keys)."""
        return {
            row.key_id: row.public_key
            for row in self.session.execute(
                select(AuditSigningKey).order_by(AuditSigningKey.created_at)
            ).scalars()
        }
