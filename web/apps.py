"""The three web apps, as data: who signs in to each, and the scopes each asks for.

A person's token holds the scopes the app asks for *and* their own account holds (the authorization
server intersects them), so the same console shows a compliance officer the audit trail and a DPO the
request queue too; each page checks the scopes it needs and says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp.access.clients import CLIENT_AUDIENCES


@dataclass(frozen=True)
class WebApp:
    name: str
    title: str
    prefix: str
    audience: str
    """``customer`` or ``staff``: which sign-in page the authorization server shows."""
    scopes: tuple[str, ...]
    tagline: str

    @property
    def client_name(self) -> str:
        return f"cdp web: {self.title}"

    @property
    def cookie(self) -> str:
        return f"__Host-cdp-{self.name}"

    def redirect_uri(self, issuer: str) -> str:
        return f"{issuer}{self.prefix}/callback"


PRIVACY = WebApp(
    name="privacy",
    title="Privacy center",
    prefix="/privacy",
    audience="customer",
    scopes=("self:read", "self:write"),
    tagline="See the data held about you, choose what it may be used for, take a copy or have it erased.",
)
STAFF = WebApp(
    name="staff",
    title="Department view",
    prefix="/staff",
    audience="staff",
    scopes=("profiles:read", "identity:read", "identity:manage", "sources:read"),
    tagline="Find a customer and see their profile, contact history and identity, as your role allows.",
)
CONSOLE = WebApp(
    name="console",
    title="Compliance console",
    prefix="/console",
    audience="staff",
    scopes=("audit:read", "dsr:manage", "retention:manage", "identity:read", "sources:read"),
    tagline="Audit access, verify the audit chain, follow requests, retention, legal holds and keys.",
)
WEB_APPS = (PRIVACY, STAFF, CONSOLE)

DOCS = WebApp(
    name="docs",
    title="API reference",
    prefix="/docs",
    audience="staff",
    scopes=tuple(sorted(CLIENT_AUDIENCES["staff"])),
    tagline="Every operation of the HTTP API, its schemas and errors; sign in to try them out.",
)
"""The interactive API reference (:mod:`web.docs`). Its OAuth client is a public PKCE client like the
apps' own, asking for every staff scope: the authorization server grants only those the signed-in
person's account holds, so the reference never lets anyone do more than their role allows."""

WEB_PATH_PREFIXES = (*(f"{app.prefix}/" for app in (*WEB_APPS, DOCS)), "/web/static/")
"""The web apps' HTML pages and their stylesheet. They hold no authority of their own: every read and
change they make is an in-process call to the API under the signed-in person's token (:mod:`web.gateway`),
which is where scopes, policy and the audit entry apply (and what the API's own tests enumerate)."""
