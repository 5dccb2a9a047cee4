"""OAuth client registry: create (secret shown once), look up, disable.

Two kinds of client:

* **Machine clients** (``grant="client_credentials"``): a department service acting as itself. ``role``
  is the client's own role (one of the service roles) and bounds its scopes; always confidential.
* **Sign-in apps** (``grant="authorization_code"``): a web or native app people sign in to. ``role``
  names the app's *audience* (:data:`CLIENT_AUDIENCES`) — who may sign in through it and how:

  - ``customer`` — a self-service app (privacy centre): customers sign in with a one-time code sent to
    their email; scopes within the customer role's (``self:read``, ``self:write``).
  - ``staff`` — a staff app: members of staff sign in with username, password and TOTP when enrolled;
    scopes within the union of the staff roles' scopes.

  The client's scopes are a ceiling: a token carries ``requested ∩ client scopes ∩ the person's
  scopes`` (a staff user's granted scopes, or the customer role's), and the person's role and
  department, never the client's. Such a client is confidential (a secret, for server-side apps) or
  public (``public=True``: no secret, token endpoint authentication ``none``; browser and native apps),
  uses PKCE S256 either way, and gets refresh tokens (grant types ``authorization_code
  refresh_token``). It needs at least one redirect URI, matched exactly (RFC 9700 §2.1): absolute
  ``https``, or ``http`` on a loopback host for native apps (RFC 8252 §7.3), without a fragment.

Registering and disabling a client are audited in the transaction that makes the change
(``client.create``, ``client.disable``): the client id, role, department, scopes and grant types —
never the secret, nor the free-text name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.access.roles import ROLE_SCOPES, SERVICE_ROLES, PolicyError, check_grantable
from cdp.audit import AuditEvent, record
from cdp.db.models import OAuthClient
from cdp.db.types import utcnow
from cdp.errors import CdpError

GRANT_TYPES = ("client_credentials", "authorization_code")

CLIENT_AUDIENCES: dict[str, frozenset[str]] = {
    "customer": ROLE_SCOPES["customer"],
    "staff": frozenset().union(*(ROLE_SCOPES[r] for r in SERVICE_ROLES)),
}
"""Audience of a sign-in app (its ``role``) → the scopes the app may be registered for."""

CONFIDENTIAL = "confidential"
PUBLIC = "public"
MAX_REDIRECT_URIS = 10
_LOOPBACK_NAMES = frozenset({"localhost"})
# Hosts are restricted to what DNS names and IP literals need, so a registered URI's origin can be put
# into a Content-Security-Policy header as is (no spaces, quotes, semicolons or commas).
_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_URI_CHARS = re.compile(r"[!#$%&-;=?-\[\]_a-z~]{1,2000}", re.ASCII | re.IGNORECASE)


class ClientNotFound(CdpError):
    pass


@dataclass(frozen=True)
class Client:
    id: uuid.UUID
    client_id: str
    name: str
    role: str
    """A machine client's role, or a sign-in app's audience (``customer`` or ``staff``)."""
    department: str | None
    scopes: frozenset[str]
    grant_types: frozenset[str]
    created_at: datetime
    disabled_at: datetime | None
    client_type: str = CONFIDENTIAL
    redirect_uris: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def public(self) -> bool:
        """A public client holds no secret: it authenticates with ``none`` and relies on PKCE."""
        return self.client_type == PUBLIC

    @property
    def audience(self) -> str | None:
        """Who signs in through this client (``customer`` / ``staff``), or None for a machine client."""
        return self.role if "authorization_code" in self.grant_types else None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def secret_matches(client_hash: bytes | None, presented: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the stored hash. A public
    client has no secret, and no presented secret matches it."""
    if client_hash is None:
        return False
    return hmac.compare_digest(client_hash, hash_secret(presented))


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def check_redirect_uri(uri: str) -> str:
    """Validate one redirect URI for registration; returns it unchanged (it is matched exactly later).

    Absolute ``https`` URIs, or ``http`` only on a loopback host (RFC 8252 §7.3, native apps); no
    fragment (RFC 6749 §3.1.2), no user info, only URI characters (no spaces: URIs are stored
    space-separated)."""
    if not _URI_CHARS.fullmatch(uri):
        raise PolicyError("a redirect URI must be 1-2000 URI characters without spaces")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise PolicyError("a redirect URI must be an absolute URI") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not (_DNS_NAME.fullmatch(host) or _is_ipv6(host)):
        raise PolicyError("a redirect URI must be an absolute https URI (http only for loopback)")
    if "@" in parts.netloc:
        raise PolicyError("a redirect URI must not carry user information")
    if "#" in uri:
        raise PolicyError("a redirect URI must not contain a fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise PolicyError(
            "http redirect URIs are allowed only for loopback hosts (127.0.0.1, [::1], localhost)"
        )
    return uri


def redirect_origin(uri: str) -> str:
    """``scheme://host[:port]`` of a registered redirect URI (validated at registration, so safe to
    put in a Content-Security-Policy header)."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


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
        row.client_type,
        tuple(row.redirect_uris.split()),
    )


class ClientRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self,
        *,
        name: str,
        role: str,
        scopes: Iterable[str],
        department: str | None = None,
        grant: str,
        redirect_uris: Sequence[str] = (),
        public: bool = False,
    ) -> tuple[Client, str | None]:
        """Register a client; returns it with its secret, which is never stored and never shown again
        (None for a public client, which has none)."""
        if grant not in GRANT_TYPES:
            raise PolicyError(f"unsupported grant {grant!r}; supported: {', '.join(GRANT_TYPES)}")
        if not name.strip() or len(name) > 100:
            raise PolicyError("client name must be 1-100 characters")
        if grant == "client_credentials":
            if role not in SERVICE_ROLES:
                raise PolicyError(f"role {role} cannot use the client_credentials grant")
            if public:
                raise PolicyError("a client_credentials client is confidential: it cannot be public")
            if redirect_uris:
                raise PolicyError("a client_credentials client has no redirect URIs")
            granted = check_grantable(role, scopes, department)
            grant_types = grant
        else:
            granted = self._check_sign_in_app(role, scopes, department)
            if not redirect_uris:
                raise PolicyError("an authorization_code client needs at least one redirect URI")
            if len(redirect_uris) > MAX_REDIRECT_URIS:
                raise PolicyError(f"at most {MAX_REDIRECT_URIS} redirect URIs")
            redirect_uris = [check_redirect_uri(uri) for uri in dict.fromkeys(redirect_uris)]
            grant_types = "authorization_code refresh_token"
        secret = None if public else secrets.token_urlsafe(32)
        row = OAuthClient(
            id=uuid.uuid4(),
            client_id=f"cdp-{secrets.token_hex(12)}",
            secret_hash=hash_secret(secret) if secret is not None else None,
            client_type=PUBLIC if public else CONFIDENTIAL,
            redirect_uris=" ".join(redirect_uris),
            name=name.strip(),
            role=role,
            department=department,
            scopes=" ".join(sorted(granted)),
            grant_types=grant_types,
            created_at=utcnow(),
        )
        self.session.add(row)
        self.session.flush()
        client = _client(row)
        details = {
            "client_id": client.client_id,
            "role": client.role,
            "department": client.department,
            "scopes": sorted(client.scopes),
            "grant_types": sorted(client.grant_types),
            "client_type": client.client_type,
        }
        record(self.session, AuditEvent("client.create", details=details))
        return client, secret

    @staticmethod
    def _check_sign_in_app(audience: str, scopes: Iterable[str], department: str | None) -> frozenset[str]:
        if audience not in CLIENT_AUDIENCES:
            raise PolicyError(
                f"an authorization_code client's role is its audience: {' or '.join(CLIENT_AUDIENCES)}"
            )
        if department is not None:
            raise PolicyError("an authorization_code client has no department: tokens carry the user's")
        wanted = frozenset(scopes)
        if not wanted:
            raise PolicyError("grant at least one scope")
        beyond = sorted(wanted - CLIENT_AUDIENCES[audience])
        if beyond:
            raise PolicyError(f"a {audience} app may not hold scope(s): {', '.join(beyond)}")
        return wanted

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
        """Disable a client: every token it holds stops working at the next request, and its refresh
        tokens are refused."""
        row = self.session.execute(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).scalar_one_or_none()
        if row is None:
            raise ClientNotFound(f"client {client_id} does not exist")
        if row.disabled_at is None:
            row.disabled_at = utcnow()
        record(self.session, AuditEvent("client.disable", details={"client_id": row.client_id}))
        return _client(row)
