"""Signed statements of destruction: erasure receipts (one request) and destruction certificates (one
retention sweep).

The statement is canonical JSON of ids, counts, categories, policy versions and times — never a personal
value, so it can be handed to the customer, a regulator or an auditor and outlive the data. It is signed
with the Ed25519 key that signs audit checkpoints (one published key verifies both), over
``cdp-destruction/1\\n`` + the statement, and is issued in the same transaction as the destruction it
describes: there is never a destruction without its receipt, nor a receipt without its destruction.

Offline check: ``Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
bytes.fromhex(signature), b"cdp-destruction/1\\n" + statement.encode())`` — see docs/receipts.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.audit.canonical import canonical_json, timestamp
from cdp.db.models import AuditSigningKey, DestructionReceipt
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.vault import Vault
from cdp.vault.audit_keys import AuditSigningKeys, verify_signature

DOMAIN = b"cdp-destruction/1\n"
KINDS = ("erasure_receipt", "destruction_certificate")


class ReceiptNotFound(CdpError):
    pass


def signed_message(statement: str) -> bytes:
    return DOMAIN + statement.encode("utf-8")


@dataclass(frozen=True)
class SignedReceipt:
    id: uuid.UUID
    kind: str
    issued_at: datetime
    statement: str
    key_id: str
    public_key: str
    signature: str

    @property
    def content(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.statement)
        return loaded

    def verify(self, public_key: str | None = None) -> bool:
        """Whether the signature holds — under ``public_key`` when given (pin the key you trust), else
        under the key the receipt names."""
        if not verify_signature(
            public_key or self.public_key, signed_message(self.statement), self.signature
        ):
            return False
        return not self.envelope_mismatches()

    def envelope_mismatches(self) -> list[str]:
        """What the envelope says that its signed statement does not: the id, kind and time outside the
        statement are not signed, so they count only where they agree with those inside."""
        try:
            signed = json.loads(self.statement)
        except ValueError:
            return ["statement"]
        if not isinstance(signed, dict):
            return ["statement"]
        try:
            stated_time: datetime | None = datetime.fromisoformat(
                str(signed.get("issued_at", "")).replace("Z", "+00:00")
            )
        except ValueError:
            stated_time = None
        return [
            name
            for name, same in (
                ("id", signed.get("receipt_id") == str(self.id)),
                ("kind", signed.get("kind") == self.kind),
                ("issue time", stated_time == self.issued_at),
            )
            if not same
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "kind": self.kind,
            "issued_at": timestamp(self.issued_at),
            "statement": self.statement,
            "algorithm": "Ed25519",
            "key_id": self.key_id,
            "public_key": self.public_key,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedReceipt:
        """A receipt as exported (for offline verification); raises ``ValueError`` on a malformed one."""
        try:
            return cls(
                id=uuid.UUID(str(data["id"])),
                kind=str(data["kind"]),
                issued_at=datetime.fromisoformat(str(data["issued_at"]).replace("Z", "+00:00")),
                statement=str(data["statement"]),
                key_id=str(data["key_id"]),
                public_key=str(data["public_key"]),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a cdp receipt: {type(exc).__name__}") from None


class Receipts:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault

    def issue(self, kind: str, statement: dict[str, Any], *, now: datetime | None = None) -> SignedReceipt:
        """Sign and store a statement in the caller's transaction."""
        if kind not in KINDS:
            raise ValueError(f"receipt kind must be one of {', '.join(KINDS)}")
        issued_at = now or utcnow()
        receipt_id = uuid.uuid4()
        text = canonical_json(
            {"receipt_id": str(receipt_id), "kind": kind, "issued_at": timestamp(issued_at), **statement}
        )
        signer = AuditSigningKeys(self.session, self.vault).active()
        signature = signer.sign(signed_message(text))
        self.session.add(
            DestructionReceipt(
                id=receipt_id,
                kind=kind,
                issued_at=issued_at,
                statement=text,
                key_id=signer.key_id,
                signature=signature,
            )
        )
        self.session.flush()
        return SignedReceipt(receipt_id, kind, issued_at, text, signer.key_id, signer.public_key, signature)

    def get(self, receipt_id: uuid.UUID) -> SignedReceipt:
        row = self.session.execute(
            select(DestructionReceipt, AuditSigningKey.public_key)
            .join(AuditSigningKey, AuditSigningKey.key_id == DestructionReceipt.key_id)
            .where(DestructionReceipt.id == receipt_id)
        ).one_or_none()
        if row is None:
            raise ReceiptNotFound(f"receipt {receipt_id} does not exist")
        receipt, public_key = row
        return SignedReceipt(
            receipt.id,
            receipt.kind,
            receipt.issued_at,
            receipt.statement,
            receipt.key_id,
            public_key,
            receipt.signature,
        )

    def list(self, *, kind: str | None = None, limit: int = 100) -> list[SignedReceipt]:
        query = select(DestructionReceipt.id).order_by(DestructionReceipt.issued_at.desc()).limit(limit)
        if kind is not None:
            query = query.where(DestructionReceipt.kind == kind)
        return [self.get(receipt_id) for receipt_id in self.session.execute(query).scalars()]
