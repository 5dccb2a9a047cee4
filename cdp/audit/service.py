"""The audit log's operations as one service: seal, checkpoint, verify, public keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cdp.audit.checkpoints import Checkpoint, sign_checkpoint
from cdp.audit.sequencer import SealResult, seal
from cdp.audit.verify import VerifyReport, verify_chain
from cdp.db import Database
from cdp.vault import Vault
from cdp.vault.audit_keys import AuditSigningKeys


@dataclass
class AuditService:
    db: Database
    vault: Vault
    origin: str

    def seal(self, *, batch_size: int = 2000) -> SealResult:
        return seal(self.db, batch_size=batch_size)

    def checkpoint(self, *, min_interval: timedelta | None = None) -> Checkpoint | None:
        return sign_checkpoint(self.db, self.vault, self.origin, min_interval=min_interval)

    def seal_and_checkpoint(
        self, *, min_interval: timedelta | None = None
    ) -> tuple[SealResult, Checkpoint | None]:
        """One sequencer tick: link what is pending, then sign the head if it is due."""
        result = self.seal()
        return result, self.checkpoint(min_interval=min_interval)

    def public_keys(self) -> dict[str, str]:
        with self.db.read() as session:
            return AuditSigningKeys(session, self.vault).public_keys()

    def verify(self) -> VerifyReport:
        return verify_chain(self.db, self.public_keys())
