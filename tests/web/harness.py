"""A seeded world for the web apps, and sign-in helpers that walk the real OAuth flow.

The world is the demo's: fictitious customers from four departments, ingested and resolved, plus one
staff account per role with a known password (and the TOTP secret for roles that require one). Sign-in
goes through ``/<app>/login`` → ``/oauth/authorize`` (the real pages, the real outbox for customers'
codes) → ``/<app>/callback``, with Flask's test client or with Chromium (``tests/browser``).
"""

from __future__ import annotations

import html
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api import create_app
from cdp.access.outbox import Outbox
from cdp.access.users import UserRepository
from cdp.config import Settings
from cdp.db.models import EntityMember, SourceRecord
from cdp.demo.seed import seed
from cdp.platform import Platform
from cdp.sources.records import RecordRepository
from tests.api.tokens import service_token

ISSUER = "https://localhost"
PASSWORD = "a long and correct test passphrase"
# username, role, department, scopes: one account per role a web app serves.
STAFF = (
    ("support", "support_agent", None, ("profiles:read",)),
    ("sales", "department_agent", "sales", ("profiles:read", "sources:read")),
    ("marketing", "marketing_analyst", None, ("profiles:read",)),
    ("compliance", "compliance_officer", None, ("profiles:read", "audit:read", "identity:read")),
    ("dpo", "dpo", None, ("profiles:read", "audit:read", "dsr:manage", "retention:manage", "identity:read")),
    ("steward", "data_steward", None, ("identity:read", "identity:manage", "sources:read")),
)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass
class WebWorld:
    platform: Platform
    app: Flask
    totp_secrets: dict[str, str] = field(default_factory=dict)
    _accounts: int = 0
    _customers: list[tuple[str, uuid.UUID, uuid.UUID]] | None = None

    def customers(self) -> list[tuple[str, uuid.UUID, uuid.UUID]]:
        """(email, record id, entity id) of each customer known to several records whose email address
        no other customer's records hold (so signing in with it is unambiguous), one per customer, in a
        fixed order. Taken once, on first use: a test that erases someone does not shift the others."""
        if self._customers is None:
            with self.platform.db.read() as session:
                rows = session.execute(
                    select(SourceRecord.id, EntityMember.entity_id).join(
                        EntityMember, EntityMember.record_id == SourceRecord.id
                    )
                ).all()
                records = RecordRepository(session, self.platform.vault)
                sizes = Counter(entity_id for _, entity_id in rows)
                owners: dict[str, set[uuid.UUID]] = defaultdict(set)
                first: dict[uuid.UUID, tuple[str, uuid.UUID]] = {}
                for record_id, entity_id in sorted(rows):
                    email = records.get(record_id).data.email
                    if email and "@" in email:
                        owners[email.casefold()].add(entity_id)
                        if sizes[entity_id] >= 2:
                            first.setdefault(entity_id, (email, record_id))
            self._customers = sorted(
                (email, record_id, entity_id)
                for entity_id, (email, record_id) in first.items()
                if len(owners[email.casefold()]) == 1
            )
        return self._customers

    def customer(self, index: int = 0) -> tuple[str, uuid.UUID, uuid.UUID]:
        """The ``index``-th of :meth:`customers`: distinct indexes are distinct people."""
        return self.customers()[index]

    def account(self, kind: str) -> str:
        """A new staff account of one of the :data:`STAFF` kinds (``support``, ``compliance`` …);
        returns its username. Fresh per sign-in, so TOTP codes are never replayed (the server refuses a
        time step twice) and one test's lockouts or sign-outs never touch another's."""
        _, role, department, scopes = next(entry for entry in STAFF if entry[0] == kind)
        self._accounts += 1
        username = f"{kind}-{self._accounts}"
        with self.platform.db.transaction() as session:
            users = UserRepository(session, self.platform.vault, self.platform.settings)
            _, uri = users.create(
                username=username, password=PASSWORD, role=role, scopes=scopes, department=department
            )
        if uri is not None:
            self.totp_secrets[username] = parse_qs(urlsplit(uri).query)["secret"][0]
        return username

    def totp(self, username: str) -> str:
        return pyotp.TOTP(self.totp_secrets[username]).now()

    def support_reads(self, entity_id: uuid.UUID) -> None:
        """A support desk's machine client (client credentials) reads the customer's profile for
        support (allowed) and for DSR handling (refused by its role), so access logs and reports have an
        allowed and a refused read to show."""
        api = self.app.test_client()
        token = service_token(self.platform, api, "support_agent", department="support", name="support desk")
        headers = {"Authorization": f"Bearer {token}"}
        assert api.get(f"/v1/customers/{entity_id}?purpose=support", headers=headers).status_code == 200
        assert api.get(f"/v1/customers/{entity_id}?purpose=dsr", headers=headers).status_code == 403

    def latest_code(self) -> str:
        with self.platform.db.read() as session:
            body = Outbox(session, self.platform.vault).latest(limit=1)[0].body
        return next(word.strip(".") for word in body.split() if word.strip(".").isdigit())


def build_world(tmp_path: Path, *, people: int = 40, issuer: str = ISSUER) -> WebWorld:
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp", issuer=issuer))
    seed(platform.db, platform.vault, work_dir=tmp_path / "demo", people=people, seed_value=42)
    world = WebWorld(platform, create_app(platform=platform))
    return world


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def _local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _to_authorize(client: FlaskClient, prefix: str) -> dict[str, str]:
    started = client.get(f"{prefix}/login")
    assert started.status_code == 303, started.status_code
    page = client.get(_local(started.location))
    assert page.status_code == 200, page.status_code
    return hidden_fields(page.text)


def _finish(client: FlaskClient, answer_status: int, location: str | None) -> None:
    assert answer_status == 302 and location, answer_status
    done = client.get(_local(location))
    assert done.status_code == 303, done.status_code


def sign_in_customer(client: FlaskClient, world: WebWorld, email: str) -> None:
    """Sign in to the privacy center with an emailed code, through the real sign-in pages."""
    fields = _to_authorize(client, "/privacy")
    asked = client.post("/oauth/authorize", data={**fields, "email": email})
    assert asked.status_code == 200, asked.status_code
    answer = client.post("/oauth/authorize", data={**hidden_fields(asked.text), "code": world.latest_code()})
    _finish(client, answer.status_code, answer.location)


def sign_in_staff(client: FlaskClient, world: WebWorld, prefix: str, kind: str) -> str:
    """Sign in to a staff app (``/staff`` or ``/console``) as a new account of ``kind``, with password
    and, if enrolled, TOTP; returns the username."""
    username = world.account(kind)
    fields = _to_authorize(client, prefix)
    form = {**fields, "username": username, "password": PASSWORD}
    if username in world.totp_secrets:
        form["totp"] = world.totp(username)
    answer = client.post("/oauth/authorize", data=form)
    _finish(client, answer.status_code, answer.location)
    return username


def csrf_of(page: str) -> str:
    token = hidden_fields(page).get("csrf_token")
    assert token, "the page has no CSRF token"
    return token


def web_client(world: WebWorld) -> FlaskClient:
    """A test client that talks to the app as the browser would: over ``https://localhost`` (the
    cookies are ``Secure``), sending the ``Origin`` of the site with POSTs is up to the caller."""
    client = world.app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client
