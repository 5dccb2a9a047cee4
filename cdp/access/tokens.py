"""Access-token bookkeeping that must hold across processes: revocations and principal status.

Access tokens are short-lived signed JWTs; what makes revocation and "disable takes effect at once"
work is :meth:`TokenRegistry.is_usable` on every request — one statement of primary-key / unique-index
probes, cheap enough for the hot path.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Delete, delete, exists, select
from sqlalchemy.orm import Session

from cdp.db.models import (
    OAuthAuthorizationCode,
    OAuthClient,
    OAuthRefreshToken,
    OAuthTokenFamily,
    RevokedToken,
    StaffUser,
)
from cdp.db.types import utcnow


class TokenRegistry:
    def __init__(self, session: Session) -> None:
        self.session = session

    def revoke(self, jti: str, client_id: str, expires_at: datetime) -> None:
        if self.session.get(RevokedToken, jti) is None:
            self.session.add(
                RevokedToken(jti=jti, client_id=client_id, expires_at=expires_at, revoked_at=utcnow())
            )

    def is_usable(
        self,
        jti: str,
        client_id: str,
        *,
        user_id: uuid.UUID | None = None,
        family_id: uuid.UUID | None = None,
    ) -> bool:
        """False if the token was revoked, its client is disabled or gone, its staff user (``user_id``,
        for tokens of a signed-in member of staff) is disabled or gone, or its sign-in (``family_id``,
        the ``sid`` claim) was revoked or pruned. One round trip: the client row by its unique
        ``client_id`` with EXISTS probes by primary key."""
        columns = [OAuthClient.disabled_at, exists().where(RevokedToken.jti == jti)]
        if user_id is not None:
            columns.append(
                exists().where(StaffUser.id == user_id, StaffUser.disabled_at.is_(None)).label("user_ok")
            )
        if family_id is not None:
            columns.append(
                exists()
                .where(OAuthTokenFamily.id == family_id, OAuthTokenFamily.revoked_at.is_(None))
                .label("family_ok")
            )
        row = self.session.execute(select(*columns).where(OAuthClient.client_id == client_id)).one_or_none()
        if row is None or row[0] is not None or row[1]:
            return False
        return all(row[2:])

    def prune(self) -> dict[str, int]:
        """Delete what can no longer be used, by table: revocations of access tokens that have expired
        anyway, expired authorization codes, and expired sign-ins (token families) with their refresh
        tokens. An access token naming a pruned family is refused, so pruning fails closed."""
        now = utcnow()
        expired = select(OAuthTokenFamily.id).where(OAuthTokenFamily.expires_at < now)
        statements: dict[str, Delete] = {
            "revoked_tokens": delete(RevokedToken).where(RevokedToken.expires_at < now),
            "authorization_codes": delete(OAuthAuthorizationCode).where(
                OAuthAuthorizationCode.expires_at < now
            ),
            # Before the families, rather than relying on ON DELETE CASCADE alone (SQLite honours it
            # only with the foreign_keys pragma).
            "refresh_tokens": delete(OAuthRefreshToken).where(OAuthRefreshToken.family_id.in_(expired)),
            "token_families": delete(OAuthTokenFamily).where(OAuthTokenFamily.expires_at < now),
        }
        counts: dict[str, int] = {}
        for name, statement in statements.items():
            result = self.session.execute(statement)
            counts[name] = int(result.rowcount)  # type: ignore[attr-defined]
        return counts
