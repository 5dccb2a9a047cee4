"""The demo's accounts: created once, secrets only in an operator-only file, and they work — a staff
password signs in, the department service's secret gets a token that reads a seeded customer."""

from __future__ import annotations

import base64
import re
import stat
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from api import create_app
from cdp.access.users import UserRepository, sign_in
from cdp.db.models import EntityMember
from cdp.demo.principals import STAFF, demo_logins, ensure_demo_access, sample_customer_email
from cdp.demo.seed import seed
from cdp.platform import Platform


def test_demo_accounts_are_created_once_and_work(platform: Platform, tmp_path: Path) -> None:
    seed(platform.db, platform.vault, work_dir=tmp_path, people=30, seed_value=3)
    access = ensure_demo_access(platform, tmp_path)
    assert access.created and access.sample_customer
    assert stat.S_IMODE(access.credentials.stat().st_mode) == 0o600
    text = access.credentials.read_text(encoding="utf-8")
    with platform.db.read() as session:
        users = UserRepository(session, platform.vault, platform.settings)
        assert {u.username for u in users.all()} == {name for name, *_ in STAFF}
        assert all(u.totp_enabled == (u.role in {"compliance_officer", "dpo"}) for u in users.all())

    password = re.search(r"staff support\s+role support_agent\s+password (\S+)", text)
    assert password is not None
    assert sign_in(platform.db, platform.vault, platform.settings, "support", password.group(1)).role == (
        "support_agent"
    )

    client_id = re.search(r"client_id (\S+)", text)
    secret = re.search(r"client_secret (\S+)", text)
    assert client_id and secret
    client = create_app(platform=platform).test_client()
    basic = base64.b64encode(f"{client_id.group(1)}:{secret.group(1)}".encode()).decode()
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    ).get_json()["access_token"]
    read = client.get(
        f"/v1/customers/{access.sample_customer}?purpose=support",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert read.status_code == 200 and read.get_json()["attributes"]

    again = ensure_demo_access(platform, tmp_path)
    assert not again.created and access.credentials.read_text(encoding="utf-8") == text


def test_demo_logins_are_read_back_with_their_web_apps_and_totp(platform: Platform, tmp_path: Path) -> None:
    seed(platform.db, platform.vault, work_dir=tmp_path, people=30, seed_value=3)
    access = ensure_demo_access(platform, tmp_path)
    logins = {login.username: login for login in demo_logins(access.credentials)}
    assert set(logins) == {name for name, *_ in STAFF}
    assert logins["support"].apps == ("/staff/",) and logins["support"].totp_uri is None
    compliance = logins["compliance"]
    assert compliance.apps[0] == "/console/"
    code = compliance.totp_now()
    assert code is not None and code.isdigit()
    user = sign_in(platform.db, platform.vault, platform.settings, "compliance", compliance.password, code)
    assert user.role == "compliance_officer"
    email = sample_customer_email(platform)
    assert email is not None and "@" in email


def test_demo_logins_of_a_missing_file_are_none(tmp_path: Path) -> None:
    assert demo_logins(tmp_path / "nothing.txt") == []


def test_the_sample_customer_is_one_with_an_email_even_if_the_largest_has_none(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo prints a customer to sign in to the privacy center as; the generator leaves some records
    without an email, so the customer with the most records may have none and the next one is taken."""
    import cdp.demo.principals as principals

    seed(platform.db, platform.vault, work_dir=tmp_path / "demo", people=30, seed_value=42)
    with platform.db.read() as session:
        members = func.count().label("members")
        largest = session.execute(
            select(EntityMember.entity_id, members)
            .group_by(EntityMember.entity_id)
            .order_by(members.desc(), EntityMember.entity_id)
            .limit(1)
        ).one()[0]
        hidden = set(
            session.execute(select(EntityMember.record_id).where(EntityMember.entity_id == largest)).scalars()
        )

    class WithoutTheirEmails(principals.RecordRepository):  # type: ignore[misc]
        def get(self, record_id: uuid.UUID) -> Any:
            record = super().get(record_id)
            if record_id in hidden:
                return SimpleNamespace(data=SimpleNamespace(email=None))
            return record

    monkeypatch.setattr(principals, "RecordRepository", WithoutTheirEmails)
    email = sample_customer_email(platform)
    assert email is not None and "@" in email
    with platform.db.read() as session:
        owners = {
            m.entity_id
            for m in session.execute(select(EntityMember)).scalars()
            if principals.RecordRepository(session, platform.vault).get(m.record_id).data.email == email
        }
    assert owners and largest not in owners
