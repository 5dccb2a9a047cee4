"""What the authorization code grant and refresh tokens persist: codes, sign-ins (token families) and
refresh tokens — only SHA-256 hashes of the secret values, never the values.

A *family* is one sign-in of one person through one client: it holds the granted scope and lives for
``refresh_token_ttl_seconds``. Every refresh token and every access token issued from it name it (the
access token's ``sid`` claim), so revoking the family — sign-out, refresh-token reuse, a second use of its
authorization code — stops all of them at once.

Single use is enforced by conditional updates (``UPDATE … SET used_at = now WHERE … AND used_at IS
NULL``): of two concurrent redemptions exactly one sees a row change, on SQLite (writers serialized) and
PostgreSQL (the row lock makes the second re-check the condition) alike.

The family issued from a code gets an id derived from the code's hash, so a replayed code finds the
family to revoke (RFC 6749 §4.1.2, RFC 9700 §4.5) without the code table having to point at it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cdp.access.roles import ROLE_SCOPES
from cdp.db.models import (
    OAuthAuthorizationCode,
    OAuthClient,
    OAuthRefreshToken,
    OAuthTokenFamily,
    SourceRecord,
    StaffUser,
    Subject,
)
from cdp.db.types import utcnow

PrincipalKind = Literal["user", "customer"]
S256 = "S256"

REVOKED_SIGN_OUT = "revoked"
REVOKED_REFRESH_REUSE = "refresh_reuse"
REVOKED_CODE_REUSE = "code_reuse"
REVOKED_WRONG_CLIENT = "wrong_client"
REVOKED_PRINCIPAL = "principal_disabled"


def token_hash(value: str) -> bytes:
    """SHA-256 of a code or refresh token: 256-bit random values need no salt or slow hash, and a
    database dump then holds nothing that can be presented."""
    return hashlib.sha256(value.encode("utf-8")).digest()


def new_secret_token() -> str:
    """A 256-bit random code or refresh token, URL-safe."""
    return secrets.token_urlsafe(32)


def family_id_for_code(code_hash: bytes) -> uuid.UUID:
    """The id of the family issued from a code. Derived (domain-separated) from the code's hash rather
    than from the code, so knowing a family id (it is in access tokens) reveals nothing about the code."""
    return uuid.UUID(bytes=hashlib.sha256(b"cdp-family|" + code_hash).digest()[:16], version=4)


# -- principals ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceOwner:
    """A person who signed in: who they are for tokens (``principal``) and what they may be granted."""

    principal: str
    """``user:<uuid>`` for staff, ``customer:<source record uuid>`` for a customer."""
    kind: PrincipalKind
    role: str
    department: str | None
    scopes: frozenset[str]

    @classmethod
    def staff(
        cls, user_id: uuid.UUID, role: str, department: str | None, scopes: frozenset[str]
    ) -> ResourceOwner:
        return cls(f"user:{user_id}", "user", role, department, frozenset(scopes))

    @classmethod
    def customer(cls, record_id: uuid.UUID) -> ResourceOwner:
        return cls(f"customer:{record_id}", "customer", "customer", None, ROLE_SCOPES["customer"])


def parse_principal(principal: str) -> tuple[PrincipalKind, uuid.UUID] | None:
    """``user:<uuid>`` / ``customer:<uuid>`` → (kind, id); None for anything else (a client id)."""
    kind, sep, raw = principal.partition(":")
    if not sep or kind not in ("user", "customer"):
        return None
    try:
        return ("user" if kind == "user" else "customer"), uuid.UUID(raw)
    except ValueError:
        return None


def current_owner(session: Session, principal: str) -> ResourceOwner | None:
    """The person behind ``principal`` as they are now, or None if they may no longer get tokens: a
    disabled or deleted staff user, or a customer whose record is gone or crypto-shredded."""
    parsed = parse_principal(principal)
    if parsed is None:
        return None
    kind, ident = parsed
    if kind == "user":
        user = session.get(StaffUser, ident)
        if user is None or user.disabled_at is not None:
            return None
        return ResourceOwner.staff(user.id, user.role, user.department, frozenset(user.scopes.split()))
    wrapped = session.execute(
        select(Subject.wrapped_key)
        .join(SourceRecord, SourceRecord.subject_id == Subject.id)
        .where(SourceRecord.id == ident)
    ).one_or_none()
    if wrapped is None or wrapped[0] is None:
        return None
    return ResourceOwner.customer(ident)


# -- stored values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCode:
    """An authorization code as stored (without the code). Authlib reads it through the getters."""

    code_hash: bytes
    client_id: str
    principal: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    auth_time: datetime
    expires_at: datetime
    used_at: datetime | None

    @property
    def family_id(self) -> uuid.UUID:
        return family_id_for_code(self.code_hash)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or utcnow())


@dataclass(frozen=True)
class Family:
    id: uuid.UUID
    client_id: str
    principal: str
    scope: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None

    @property
    def usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > utcnow()


@dataclass(frozen=True)
class StoredRefreshToken:
    """A refresh token as stored, with its family. Authlib reads it through the getters."""

    token_hash: bytes
    family: Family
    expires_at: datetime
    used_at: datetime | None

    def get_scope(self) -> str:
        return self.family.scope

    def check_client(self, client: object) -> bool:
        get_client_id = getattr(client, "get_client_id", None)
        return callable(get_client_id) and get_client_id() == self.family.client_id

    @property
    def usable(self) -> bool:
        return self.used_at is None and self.expires_at > utcnow() and self.family.usable


def _family(row: OAuthTokenFamily) -> Family:
    return Family(
        row.id,
        row.client_id,
        row.principal,
        row.scope,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.revoked_reason,
    )


class GrantStore:
    """Codes, families and refresh tokens in one session (the caller's unit of work)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- authorization codes

    def save_code(
        self,
        code: str,
        *,
        client_id: str,
        principal: str,
        redirect_uri: str,
        scope: str,
        code_challenge: str,
        code_challenge_method: str,
        ttl_seconds: int,
    ) -> None:
        """Keep an issued code (its hash) bound to the client, redirect URI, principal, scope and the
        PKCE challenge. Only S256 is accepted: ``plain`` gives nothing against a leaked request."""
        if code_challenge_method != S256:
            raise ValueError("only the S256 code challenge method is supported")
        now = utcnow()
        self.session.add(
            OAuthAuthorizationCode(
                code_hash=token_hash(code),
                client_id=client_id,
                principal=principal,
                redirect_uri=redirect_uri,
                scope=scope,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                auth_time=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )

    def find_code(self, code: str) -> StoredCode | None:
        """The code in whatever state (used, expired): callers decide, so a replay can be detected."""
        row = self.session.get(OAuthAuthorizationCode, token_hash(code))
        if row is None:
            return None
        return StoredCode(
            row.code_hash,
            row.client_id,
            row.principal,
            row.redirect_uri,
            row.scope,
            row.code_challenge,
            row.code_challenge_method,
            row.auth_time,
            row.expires_at,
            row.used_at,
        )

    def consume_code(self, code: StoredCode) -> bool:
        """Mark the code used; False if it already was (a concurrent or repeated redemption)."""
        result = self.session.execute(
            update(OAuthAuthorizationCode)
            .where(
                OAuthAuthorizationCode.code_hash == code.code_hash,
                OAuthAuthorizationCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    # -- families and refresh tokens

    def start_family(
        self, *, family_id: uuid.UUID, client_id: str, principal: str, scope: str, ttl_seconds: int
    ) -> Family:
        now = utcnow()
        row = OAuthTokenFamily(
            id=family_id,
            client_id=client_id,
            principal=principal,
            scope=scope,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
        self.session.add(row)
        self.session.flush()
        return _family(row)

    def family(self, family_id: uuid.UUID) -> Family | None:
        row = self.session.get(OAuthTokenFamily, family_id)
        return _family(row) if row else None

    def issue_refresh_token(self, family: Family) -> str:
        """A new refresh token in ``family``, valid until the family expires."""
        value = new_secret_token()
        self.session.add(
            OAuthRefreshToken(
                token_hash=token_hash(value),
                family_id=family.id,
                issued_at=utcnow(),
                expires_at=family.expires_at,
            )
        )
        return value

    def find_refresh_token(self, value: str) -> StoredRefreshToken | None:
        """The refresh token and its family in whatever state (used, revoked, expired)."""
        found = self.session.execute(
            select(OAuthRefreshToken, OAuthTokenFamily)
            .join(OAuthTokenFamily, OAuthTokenFamily.id == OAuthRefreshToken.family_id)
            .where(OAuthRefreshToken.token_hash == token_hash(value))
        ).one_or_none()
        if found is None:
            return None
        token, family = found
        return StoredRefreshToken(token.token_hash, _family(family), token.expires_at, token.used_at)

    def use_refresh_token(self, token: StoredRefreshToken) -> bool:
        """Mark the refresh token used (it is being rotated); False if it already was — reuse."""
        result = self.session.execute(
            update(OAuthRefreshToken)
            .where(OAuthRefreshToken.token_hash == token.token_hash, OAuthRefreshToken.used_at.is_(None))
            .values(used_at=utcnow())
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def revoke_family(self, family_id: uuid.UUID, reason: str) -> bool:
        """Revoke a sign-in: its refresh tokens are refused and every access token naming it (``sid``)
        stops working at the next request. True if it was active; revoking twice keeps the first
        reason."""
        result = self.session.execute(
            update(OAuthTokenFamily)
            .where(OAuthTokenFamily.id == family_id, OAuthTokenFamily.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def revoke_principal(self, principal: str, reason: str = REVOKED_PRINCIPAL) -> int:
        """Revoke every active sign-in of one person (``user:<uuid>`` / ``customer:<uuid>``), e.g. on
        "sign out everywhere". Returns how many families were revoked."""
        return self.revoke_principals([principal], reason)

    def revoke_principals(self, principals: Sequence[str], reason: str = REVOKED_PRINCIPAL) -> int:
        """Revoke every active sign-in of these people at once (an erasure batch); how many families."""
        revoked = 0
        now = utcnow()
        for start in range(0, len(principals), 1000):
            result = self.session.execute(
                update(OAuthTokenFamily)
                .where(
                    OAuthTokenFamily.principal.in_(principals[start : start + 1000]),
                    OAuthTokenFamily.revoked_at.is_(None),
                )
                .values(revoked_at=now, revoked_reason=reason)
            )
            revoked += int(result.rowcount)  # type: ignore[attr-defined]
        return revoked

    def client_enabled(self, client_id: str) -> bool:
        disabled = self.session.execute(
            select(OAuthClient.disabled_at).where(OAuthClient.client_id == client_id)
        ).one_or_none()
        return disabled is not None and disabled[0] is None
