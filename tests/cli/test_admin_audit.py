"""The audit trail of the administrative commands: each runs as ``operator:<OS user>``, and each change
to clients, staff users and keys leaves an entry of ids, roles and counts — never a secret, a password,
a username or a client's free-text name. A change that fails leaves a failed entry instead."""

from __future__ import annotations

import getpass
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from cdp.access.clients import ClientRepository
from cdp.access.roles import PolicyError
from cdp.access.users import UserRepository
from cdp.cli import cli
from cdp.config import Settings
from cdp.db.models import AuditEntry
from cdp.platform import Platform

OPERATOR = "ops-alex"
PASSWORD = "a long enough passphrase"
CLIENT_NAME = "billing export job"


@dataclass(frozen=True)
class Entry:
    action: str
    outcome: str
    actor: str
    actor_kind: str
    role: str | None
    subjects: list[str]
    details: dict[str, Any]
    text: str


def _entry(row: AuditEntry) -> Entry:
    return Entry(
        row.action,
        row.outcome,
        row.actor,
        row.actor_kind,
        row.role,
        json.loads(row.subjects),
        json.loads(row.details),
        " ".join(str(getattr(row, c.key)) for c in AuditEntry.__table__.columns),
    )


@dataclass
class Admin:
    """A data directory, the CLI run in-process against it, and the audit entries it left."""

    data_dir: Path
    platform: Platform

    def run(self, *args: str, stdin: str | None = None, operator: str | None = OPERATOR) -> Result:
        env = {"CDP_DATA_DIR": str(self.data_dir), "CDP_CONFIG": None, "CDP_DATABASE_URL": None}
        if operator is not None:
            env |= {"LOGNAME": operator, "USER": operator, "LNAME": operator, "USERNAME": operator}
        return CliRunner().invoke(cli, list(args), input=stdin, env=env)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        return result.output

    def entries(self, action: str) -> list[Entry]:
        with self.platform.db.read() as session:
            rows = session.execute(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.recorded_at)
            ).scalars()
            return [_entry(row) for row in rows]

    def only(self, action: str) -> Entry:
        found = self.entries(action)
        assert len(found) == 1, found
        return found[0]

    def create_user(
        self, username: str, role: str = "support_agent", *scopes: str, department: str | None = None
    ) -> str:
        args = ["users", "create", "--username", username, "--role", role, "--password-file", "-"]
        if department is not None:
            args += ["--department", department]
        for scope in scopes or ("profiles:read",):
            args += ["--scope", scope]
        return self.ok(*args, stdin=PASSWORD + "\n")

    def user_id(self, username: str) -> uuid.UUID:
        with self.platform.db.read() as session:
            user = UserRepository(session, self.platform.vault, self.platform.settings).by_username(username)
        assert user is not None
        return user.id


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    data_dir = tmp_path / "var"
    opened, _ = Platform.initialize(Settings(data_dir=data_dir))
    try:
        yield Admin(data_dir, opened)
    finally:
        opened.close()


def assert_operator(entry: Entry, name: str = OPERATOR) -> None:
    assert (entry.actor, entry.actor_kind, entry.role) == (f"operator:{name}", "operator", "operator")


# -- clients ------------------------------------------------------------------------------------------


def test_clients_create_records_the_client_but_never_its_secret_or_name(admin: Admin) -> None:
    output = admin.ok(
        "clients", "create", "--name", CLIENT_NAME, "--role", "department_agent",
        "--department", "sales", "--scope", "ingest", "--scope", "sources:read",
    )  # fmt: skip
    client_id = re.search(r"client_id:\s+(\S+)", output)
    secret = re.search(r"client_secret:\s+(\S+)", output)
    assert client_id and secret
    entry = admin.only("client.create")
    assert_operator(entry)
    assert (entry.outcome, entry.subjects) == ("success", [])
    assert entry.details == {
        "client_id": client_id[1],
        "role": "department_agent",
        "department": "sales",
        "scopes": ["ingest", "sources:read"],
        "grant_types": ["client_credentials"],
        "client_type": "confidential",
    }
    assert secret[1] not in entry.text and CLIENT_NAME not in entry.text


def test_clients_disable_records_the_client_id(admin: Admin) -> None:
    with admin.platform.db.transaction() as session:
        client, _ = ClientRepository(session).create(
            name=CLIENT_NAME, role="department_agent", department="sales", scopes=("ingest",),
            grant="client_credentials",
        )  # fmt: skip
    admin.ok("clients", "disable", client.client_id)
    entry = admin.only("client.disable")
    assert_operator(entry)
    assert (entry.outcome, entry.details) == ("success", {"client_id": client.client_id})


def test_a_refused_client_registration_leaves_only_a_failed_entry(admin: Admin) -> None:
    result = admin.run(
        "clients", "create", "--name", CLIENT_NAME, "--role", "no_such_role", "--scope", "ingest"
    )
    assert isinstance(result.exception, PolicyError)
    entry = admin.only("client.create")
    assert_operator(entry)
    assert (entry.outcome, entry.details) == ("failed", {"error": "PolicyError"})
    assert CLIENT_NAME not in entry.text


# -- staff users --------------------------------------------------------------------------------------


def test_users_create_records_the_account_by_id_never_its_username_or_password(admin: Admin) -> None:
    admin.create_user("samantha", "department_agent", "profiles:read", "ingest", department="sales")
    user_id = admin.user_id("samantha")
    entry = admin.only("user.create")
    assert_operator(entry)
    assert (entry.outcome, entry.subjects) == ("success", [f"user:{user_id}"])
    assert entry.details == {
        "user_id": str(user_id),
        "role": "department_agent",
        "department": "sales",
        "scopes": ["ingest", "profiles:read"],
        "totp_enrolled": False,
    }
    assert "samantha" not in entry.text and PASSWORD not in entry.text


def test_users_disable_and_enable_are_recorded_against_the_account(admin: Admin) -> None:
    admin.create_user("samantha")
    user_id = admin.user_id("samantha")
    admin.ok("users", "disable", "samantha")
    admin.ok("users", "enable", "samantha")
    disabled, enabled = admin.only("user.disable"), admin.only("user.enable")
    for entry in (disabled, enabled):
        assert_operator(entry)
        assert entry.outcome == "success" and entry.subjects == [f"user:{user_id}"]
        assert "samantha" not in entry.text
    assert disabled.details == {"user_id": str(user_id), "revoked_sign_ins": 0}
    assert enabled.details == {"user_id": str(user_id)}


def test_credential_changes_say_which_credential_and_nothing_of_it(admin: Admin) -> None:
    admin.create_user("samantha")
    new_password = "another long passphrase"
    admin.ok("users", "set-password", "samantha", "--password-file", "-", stdin=new_password + "\n")
    uri = admin.ok("users", "enroll-totp", "samantha")
    secret = re.search(r"secret=([A-Z2-7]+)", uri)
    assert secret
    password, totp = admin.entries("user.credentials")
    assert password.details == {"user_id": str(admin.user_id("samantha")), "credential": "password"}
    assert totp.details["credential"] == "totp"
    for entry in (password, totp):
        assert_operator(entry)
        assert new_password not in entry.text and secret[1] not in entry.text


def test_disabling_an_unknown_user_leaves_a_not_found_entry_without_the_name(admin: Admin) -> None:
    result = admin.run("users", "disable", "nobody-here")
    assert result.exit_code != 0
    entry = admin.only("user.disable")
    assert_operator(entry)
    assert (entry.outcome, entry.details) == ("not_found", {"error": "UserNotFound"})
    assert "nobody-here" not in entry.text


# -- keys ---------------------------------------------------------------------------------------------


def test_keys_rotate_records_the_target_kek_and_the_rewrapped_count(admin: Admin) -> None:
    admin.create_user("carla", "compliance_officer", "audit:read")  # a TOTP secret: one data key
    output = admin.ok("keys", "rotate")
    assert "rotated to KEK v2: 1 data keys rewrapped" in output
    entry = admin.only("key.rotate")
    assert_operator(entry)
    assert entry.outcome == "success"
    assert entry.details == {"target_kek_version": 2, "rewrapped": 1, "resumed": False, "retired": [1]}


def test_keys_rotate_signing_records_the_new_kid(admin: Admin) -> None:
    output = admin.ok("keys", "rotate-signing")
    kid = re.search(r"new signing key (\S+);", output)
    assert kid
    entry = admin.only("key.signing_rotate")
    assert_operator(entry)
    assert entry.details == {"key": "token_signing", "kid": kid[1]}


# -- the operator -------------------------------------------------------------------------------------


def test_an_operator_the_os_cannot_name_is_recorded_as_unknown(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nameless() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(getpass, "getuser", nameless)
    result = admin.run("keys", "rotate-signing", operator=None)
    assert result.exit_code == 0, result.output
    assert_operator(admin.only("key.signing_rotate"), "unknown")


# -- the repositories, on both backends ---------------------------------------------------------------


def test_an_account_change_and_its_entry_commit_or_roll_back_together(platform: Platform) -> None:
    with platform.db.transaction() as session:
        user, _ = UserRepository(session, platform.vault, platform.settings).create(
            username="samantha", password=PASSWORD, role="support_agent", scopes=("profiles:read",)
        )
    with pytest.raises(RuntimeError), platform.db.transaction() as session:
        UserRepository(session, platform.vault, platform.settings).disable("samantha")
        raise RuntimeError("the rest of the unit of work failed")
    with platform.db.read() as session:
        actions = session.execute(select(AuditEntry.action, AuditEntry.actor)).all()
        account = UserRepository(session, platform.vault, platform.settings).by_id(user.id)
    assert actions == [("user.create", "system:cdp")]
    assert account is not None and account.active
