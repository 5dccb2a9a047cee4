"""Browser sessions of the web apps: the privacy center, the department view and the compliance console.

Each web app is an OAuth client of cdp's own authorization server (authorization code + PKCE), and the
browser never sees a token. The browser holds one random secret in an HttpOnly cookie; the database holds

* its SHA-256 (a stolen database row cannot be replayed as a cookie),
* the sign-in (OAuth token family) the session rides on, so anything that revokes the family — signing
  out elsewhere, an erasure, a disabled account, refresh-token reuse — ends the session on its next
  request, and
* the session's state (the PKCE verifier and ``state`` while signing in; then the access and refresh
  tokens and small page notices) as JSON wrapped under the active KEK with AES-GCM, the session id as
  associated data, so a blob copied to another row does not open.

A session starts *pending* (short-lived, no principal) and becomes *active* when the sign-in completes,
under a new secret (no session fixation). It ends after :data:`IDLE_TIMEOUT` without use, at its absolute
expiry (the sign-in's), or when it is signed out; :meth:`WebSessions.purge` removes ended rows.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cdp.db.models import OAuthTokenFamily, WebSession
from cdp.db.types import utcnow
from cdp.vault import Vault, VaultError

APPS = ("privacy", "staff", "console")
PENDING_TTL = timedelta(minutes=10)
IDLE_TIMEOUT = timedelta(minutes=30)
_TOUCH_EVERY = timedelta(seconds=60)
_AAD_PREFIX = b"cdp-web-session/1:"


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass
class ActiveSession:
    """A loaded session. ``state`` is the decrypted JSON state; change it and call
    :meth:`WebSessions.save` to keep the change."""

    id: uuid.UUID
    app: str
    principal: str | None
    family_id: uuid.UUID | None
    expires_at: datetime
    state: dict[str, Any] = field(default_factory=dict)
    touch_due: bool = False

    @property
    def pending(self) -> bool:
        return self.family_id is None


class WebSessions:
    """The ``web_session`` table. Callers own the unit of work (``db.transaction()``)."""

    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault

    def _seal(self, session_id: uuid.UUID, state: dict[str, Any]) -> tuple[int, bytes]:
        version = self.vault.keks.active_version()
        plaintext = json.dumps(state, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return version, self.vault.keks.wrap(version, plaintext, _AAD_PREFIX + session_id.bytes)

    def _open(self, row: WebSession) -> dict[str, Any] | None:
        try:
            plaintext = self.vault.keks.unwrap(row.kek_version, row.enc_state, _AAD_PREFIX + row.id.bytes)
        except (VaultError, KeyError, ValueError):
            return None  # e.g. its KEK was retired: the session simply ends
        loaded = json.loads(plaintext)
        return loaded if isinstance(loaded, dict) else None

    def start(self, app: str, state: dict[str, Any], *, now: datetime | None = None) -> tuple[str, uuid.UUID]:
        """A pending session for a sign-in about to start; returns the cookie secret and the id."""
        if app not in APPS:
            raise ValueError(f"unknown web app {app!r}")
        at = now or utcnow()
        session_id = uuid.uuid4()
        secret = secrets.token_urlsafe(32)
        version, blob = self._seal(session_id, state)
        self.session.add(
            WebSession(
                id=session_id,
                app=app,
                secret_hash=secret_hash(secret),
                kek_version=version,
                enc_state=blob,
                created_at=at,
                last_seen_at=at,
                expires_at=at + PENDING_TTL,
            )
        )
        self.session.flush()
        return secret, session_id

    def find(
        self, app: str, secret: str, *, now: datetime | None = None, touch: bool = True
    ) -> ActiveSession | None:
        """The live session of ``app`` behind a cookie secret, or None (unknown, another app's, idle
        too long, expired, its sign-in revoked or expired, or its state unreadable). With ``touch``,
        ``last_seen_at`` moves at most once a minute; without, :attr:`ActiveSession.touch_due` says
        whether the caller should :meth:`touch` it (so a page load can stay a read)."""
        if not secret or len(secret) > 128:
            return None
        at = now or utcnow()
        row = self.session.execute(
            select(WebSession).where(WebSession.secret_hash == secret_hash(secret))
        ).scalar_one_or_none()
        if row is None or row.app != app or row.expires_at <= at or row.last_seen_at + IDLE_TIMEOUT <= at:
            return None
        if row.family_id is not None:
            family = self.session.get(OAuthTokenFamily, row.family_id)
            if family is None or family.revoked_at is not None or family.expires_at <= at:
                return None
        state = self._open(row)
        if state is None:
            return None
        touch_due = at - row.last_seen_at >= _TOUCH_EVERY
        if touch and touch_due:
            row.last_seen_at = at
            touch_due = False
        found = ActiveSession(row.id, row.app, row.principal, row.family_id, row.expires_at, state)
        found.touch_due = touch_due
        return found

    def touch(self, session_id: uuid.UUID, *, now: datetime | None = None) -> None:
        row = self.session.get(WebSession, session_id)
        if row is not None:
            row.last_seen_at = now or utcnow()

    def save(self, active: ActiveSession) -> None:
        """Store the session's changed state (wrapped again, under the active KEK)."""
        row = self.session.get(WebSession, active.id)
        if row is None:
            return
        row.kek_version, row.enc_state = self._seal(active.id, active.state)

    def activate(
        self,
        active: ActiveSession,
        *,
        family_id: uuid.UUID,
        principal: str,
        expires_at: datetime,
        state: dict[str, Any],
        now: datetime | None = None,
    ) -> str:
        """The sign-in completed: bind the session to its sign-in under a new secret (the pending
        session's cookie is worthless from now on); returns the new secret."""
        row = self.session.get(WebSession, active.id)
        if row is None:
            raise LookupError("the session ended")
        at = now or utcnow()
        secret = secrets.token_urlsafe(32)
        row.secret_hash = secret_hash(secret)
        row.family_id = family_id
        row.principal = principal
        row.expires_at = expires_at
        row.last_seen_at = at
        row.kek_version, row.enc_state = self._seal(active.id, state)
        active.family_id, active.principal, active.expires_at, active.state = (
            family_id,
            principal,
            expires_at,
            state,
        )
        return secret

    def end(self, session_id: uuid.UUID) -> None:
        self.session.execute(delete(WebSession).where(WebSession.id == session_id))

    def end_principal(self, principal: str) -> int:
        """End every session of a principal (an erased customer, a disabled account)."""
        result = self.session.execute(delete(WebSession).where(WebSession.principal == principal))
        return int(getattr(result, "rowcount", 0) or 0)

    def purge(self, *, now: datetime | None = None) -> int:
        """Delete sessions past their expiry or idle timeout; returns how many."""
        at = now or utcnow()
        result = self.session.execute(
            delete(WebSession).where(
                (WebSession.expires_at <= at) | (WebSession.last_seen_at <= at - IDLE_TIMEOUT)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
