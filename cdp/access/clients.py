"""OAuth client registry: create (secret shown once), look up, disable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.access.roles import SERVICE_ROLES, PolicyError, check_grantable
from cdp.db.models import OAuthClient
from cdp.db.types import utcnow
from cdp.errors import CdpError

GRANT_TYPES = ("client_credentials",)


class ClientNotFound(CdpError):
    pass


@dataclass(frozen=True)
class Client:
    id: uuid.UUID
    client_id: str
    name: str
    role: str
    department: str | None
    scopes: frozenset[str]
    grant_types: frozenset[str]
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def secret_matches(client_hash: bytes | None, presented: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the stored hash. A public
    client has no secret, and no presented secret matches it."""
    if client_hash is None:
        return False
    return hmac.compare_digest(client_hash, hash_secret(presented))


def _client(row: OAuthClient) -> Client:
    return Client(
        row.id,
        row.client_id,
        row.name,
        row.role,
        row.department,
        frozenset(row.scopes.split()),
        frozenset(row.grant_types.split()),
        row.created_at,
        row.disabled_at,
    )


class ClientRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self, *, name: str, role: str, scopes: Iterable[str], department: str | None = None, grant: str
    ) -> tuple[Client, str]:
        """Register a client; returns it with its secret, which is never stored and never shown again."""
        if grant not in GRANT_TYPES:
            raise PolicyError(f"unsupported grant {grant!r}; supported: {', '.join(GRANT_TYPES)}")
        if grant == "client_credentials" and role not in SERVICE_ROLES:
            raise PolicyError(f"role {role} cannot use the client_credentials grant")
        if not name.strip() or len(name) > 100:
            raise PolicyError("client name must be 1-100 characters")
        granted = check_grantable(role, scopes, department)
        secret = secrets.token_urlsafe(32)
        row = OAuthClient(
            id=uuid.uuid4(),
            client_id=f"cdp-{secrets.token_hex(12)}",
            secret_hash=hash_secret(secret),
            name=name.strip(),
            role=role,
            department=department,
            scopes=" ".join(sorted(granted)),
            grant_types=grant,
            created_at=utcnow(),
        )
        self.session.add(row)
        self.session.flush()
        return _client(row), secret

    def by_client_id(self, client_id: str) -> Client | None:
        found = self.with_secret_hash(client_id)
        return found[0] if found else None

    def with_secret_hash(self, client_id: str) -> tuple[Client, bytes | None] | None:
        """The client and the hash its secret is checked against, in one lookup."""
        row = self.session.execute(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).scalar_one_or_none()
        return (_client(row), row.secret_hash) if row else None

    def all(self) -> list[Client]:
        return [
            _client(r)
            for r in self.session.execute(select(OAuthClient).order_by(OAuthClient.created_at)).scalars()
        ]

    def disable(self, client_id: str) -> Client:
        """Disable a client: every token it holds stops working at the next request."""
        row = self.session.execute(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).scalar_one_or_none()
        if row is None:
            raise ClientNotFound(f"client {client_id} does not exist")
        if row.disabled_at is None:
            row.disabled_at = utcnow()
        return _client(row)
