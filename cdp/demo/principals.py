"""Demo accounts, so an operator can try purpose-bound reads the moment the demo server is up.

Created once, on the first seed: one member of staff per reading role and one department service
(client credentials). Their passwords and secret are random and written to a credentials file readable
by the operator only (0600) inside the demo data directory — the one place the demo keeps secrets, as its
outbox is the one place it "sends" mail. Nothing here is used outside the demo.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import pyotp
from sqlalchemy import func, select

from cdp.access.clients import ClientRepository
from cdp.access.users import UserRepository
from cdp.db.models import Entity, EntityMember, StaffUser
from cdp.platform import Platform
from cdp.sources.records import RecordRepository

CREDENTIALS_FILE = "credentials.txt"

# username, role, department, scopes
STAFF = (
    ("support", "support_agent", None, ("profiles:read",)),
    ("sales", "department_agent", "sales", ("profiles:read", "sources:read")),
    ("marketing", "marketing_analyst", None, ("profiles:read", "analytics:read", "analytics:manage")),
    ("compliance", "compliance_officer", None, ("profiles:read", "audit:read", "identity:read")),
    ("dpo", "dpo", None, ("profiles:read", "dsr:manage", "consent:manage", "identity:read")),
    ("steward", "data_steward", None, ("identity:read", "identity:manage")),
)


@dataclass(frozen=True)
class DemoAccess:
    credentials: Path
    created: bool
    sample_customer: str | None


def ensure_demo_access(platform: Platform, demo_dir: Path) -> DemoAccess:
    """Create the demo accounts unless staff already exist; returns where their credentials are."""
    path = demo_dir / CREDENTIALS_FILE
    with platform.db.transaction() as session:
        sample = session.execute(select(Entity.id).order_by(Entity.id).limit(1)).scalar_one_or_none()
        if session.execute(select(func.count()).select_from(StaffUser)).scalar_one():
            return DemoAccess(path, False, str(sample) if sample else None)
        users = UserRepository(session, platform.vault, platform.settings)
        lines = [
            "# cdp demo accounts - fictitious, for this demo only. Created once; delete this file when done.",
            f"# sign in to the web apps: {platform.settings.issuer}/staff/ (department view) and "
            f"{platform.settings.issuer}/console/ (compliance console); TOTP codes: cdp demo totp USER",
            "",
        ]
        for username, role, department, scopes in STAFF:
            password = secrets.token_urlsafe(12)
            _, totp = users.create(
                username=username, password=password, role=role, scopes=scopes, department=department
            )
            lines.append(f"staff {username:<11} role {role:<19} password {password}")
            if totp:
                lines.append(f"      {'':<11} TOTP (add to an authenticator app): {totp}")
        client, secret = ClientRepository(session).create(
            name="demo support desk",
            role="support_agent",
            scopes=("profiles:read",),
            grant="client_credentials",
        )
        lines += [
            "",
            "department service (client credentials, role support_agent, scope profiles:read):",
            f"client_id {client.client_id}",
            f"client_secret {secret}",
        ]
        # Written before the accounts commit: if the file cannot be written, no account exists whose
        # secret nobody knows.
        demo_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return DemoAccess(path, True, str(sample) if sample else None)


# -- signing in to the web apps -----------------------------------------------------------------------

WEB_APPS_OF_ROLE = {
    "support_agent": ("/staff/",),
    "department_agent": ("/staff/",),
    "marketing_analyst": ("/staff/",),
    "data_steward": ("/staff/",),
    "compliance_officer": ("/console/", "/staff/"),
    "dpo": ("/console/", "/staff/"),
}
"""Which web app each demo role signs in to (the first is its home)."""
_STAFF_LINE = re.compile(r"staff (\S+)\s+role (\S+)\s+password (\S+)")
_TOTP_LINE = re.compile(r"TOTP \(add to an authenticator app\): (otpauth://\S+)")


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    password: str
    totp_uri: str | None

    @property
    def apps(self) -> tuple[str, ...]:
        return WEB_APPS_OF_ROLE.get(self.role, ())

    def totp_now(self) -> str | None:
        """The current TOTP code, as the operator's authenticator app would show it."""
        if self.totp_uri is None:
            return None
        parsed = pyotp.parse_uri(self.totp_uri)
        assert isinstance(parsed, pyotp.TOTP)
        return parsed.now()


def demo_logins(credentials: Path) -> list[DemoLogin]:
    """The staff accounts written to the demo's credentials file (empty if there is none)."""
    try:
        lines = credentials.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    logins: list[DemoLogin] = []
    for line in lines:
        staff = _STAFF_LINE.search(line)
        if staff is not None:
            logins.append(DemoLogin(staff.group(1), staff.group(2), staff.group(3), None))
            continue
        totp = _TOTP_LINE.search(line)
        if totp is not None and logins:
            logins[-1] = replace(logins[-1], totp_uri=totp.group(1))
    return logins


def sample_customer_email(platform: Platform) -> str | None:
    """An email address a demo customer signs in to the privacy center with: one of a customer known to
    several departments (the most records first), so their profile shows what identity resolution joined.
    Customers whose records hold no email are passed over (the generator leaves some out on purpose)."""
    with platform.db.read() as session:
        members = func.count().label("members")
        candidates = session.execute(
            select(EntityMember.entity_id, members)
            .group_by(EntityMember.entity_id)
            .order_by(members.desc(), EntityMember.entity_id)
        ).all()
        records = RecordRepository(session, platform.vault)
        for entity, _ in candidates:
            member_ids = session.execute(
                select(EntityMember.record_id).where(EntityMember.entity_id == entity)
            ).scalars()
            for record_id in member_ids:
                email = records.get(record_id).data.email
                if email:
                    return str(email)
    return None
