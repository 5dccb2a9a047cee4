"""Access-token bookkeeping that must hold across processes: revocations and principal status.

Access tokens are short-lived signed JWTs; what makes revocation and "disable takes effect at once"
work is this check on every request — one indexed lookup each.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from cdp.db.models import OAuthClient, RevokedToken
from cdp.db.types import utcnow


class TokenRegistry:
    def __init__(self, session: Session) -> None:
        self.session = session

    def revoke(self, jti: str, client_id: str, expires_at: datetime) -> None:
        if self.session.get(RevokedToken, jti) is None:
            self.session.add(
                RevokedToken(jti=jti, client_id=client_id, expires_at=expires_at, revoked_at=utcnow())
            )

    def is_usable(self, jti: str, client_id: str) -> bool:
        """False if the token was revoked or its client is disabled or gone."""
        row = self.session.execute(
            select(OAuthClient.disabled_at, exists().where(RevokedToken.jti == jti)).where(
                OAuthClient.client_id == client_id
            )
        ).one_or_none()
        return row is not None and row[0] is None and not row[1]

    def prune(self) -> int:
        """Forget revocations of tokens that have expired anyway."""
        result = self.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
        return int(result.rowcount)  # type: ignore[attr-defined]
