"""Demo accounts, so an operator can try purpose-bound reads the moment the demo server is up.

Created once, on the first seed: one member of staff per reading role and one department service
(client credentials). Their passwords and secret are random and written to a credentials file readable
by the operator only (0600) inside the demo data directory — the one place the demo keeps secrets, as its
outbox is the one place it "sends" mail. Nothing here is used outside the demo.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from cdp.access.clients import ClientRepository
from cdp.access.users import UserRepository
from cdp.db.models import Entity, StaffUser
from cdp.platform import Platform

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
            f"# sign in at {platform.settings.issuer}/oauth/authorize through an app client "
            "(cdp clients create --grant authorization_code ...)",
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
