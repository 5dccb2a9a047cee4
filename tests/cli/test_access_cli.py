"""`cdp users ...` and `cdp outbox list` end to end: the real console module in a subprocess over an
initialized scratch directory — what an operator sees, and that passwords never appear in it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from cdp.access.customers import CustomerSignIn
from cdp.access.users import SignInFailed, sign_in
from cdp.cli import cli
from cdp.config import Settings
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from tests.cli.test_cli import cdp, ok, one_line_error
from tests.sources.test_ingest import CRM_HEADER, CRM_MAPPING, CRM_ROWS

PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.mktemp("access-initialized")
    ok(cdp(template, "init"))
    return template


@pytest.fixture
def workdir(initialized: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(initialized, work)
    (work / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
    return work


@pytest.fixture
def platform(workdir: Path) -> Iterator[Platform]:
    """The same data directory opened in-process, to check what the commands changed."""
    opened = Platform.open(Settings(data_dir=workdir / "var"))
    try:
        yield opened
    finally:
        opened.close()


def create(workdir: Path, username: str, role: str, *scopes: str) -> str:
    args = ["users", "create", "--username", username, "--role", role, "--password-file", "pw"]
    for scope in scopes:
        args += ["--scope", scope]
    return ok(cdp(workdir, *args))


def user_row(stdout: str, username: str) -> list[str]:
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == username:
            return cells
    raise AssertionError(f"no row for {username} in:\n{stdout}")


def test_create_from_a_password_file_and_list(workdir: Path, platform: Platform) -> None:
    created = create(workdir, "sam", "support_agent", "profiles:read", "ingest")
    assert "created user sam: role support_agent, scopes: ingest profiles:read" in created
    assert "otpauth" not in created
    listed = ok(cdp(workdir, "users", "list"))
    assert user_row(listed, "sam") == [
        "sam",
        "support_agent",
        "ingest profiles:read",
        "no",
        "active",
        "never",
    ]
    assert PASSWORD not in created + listed
    assert sign_in(platform.db, platform.vault, platform.settings, "sam", PASSWORD).username == "sam"


def test_admin_gets_a_totp_uri_once_and_needs_it(workdir: Path, platform: Platform) -> None:
    created = create(workdir, "ada", "admin", "sources:manage")
    uri = re.search(r"otpauth://totp/\S+", created)
    assert uri and "authenticator app" in created
    assert user_row(ok(cdp(workdir, "users", "list")), "ada")[3] == "yes"
    with pytest.raises(SignInFailed):
        sign_in(platform.db, platform.vault, platform.settings, "ada", PASSWORD)
    code = pyotp.parse_uri(uri[0]).now()
    sign_in(platform.db, platform.vault, platform.settings, "ada", PASSWORD, code)

    enrolled = ok(cdp(workdir, "users", "enroll-totp", "ada"))
    new_uri = re.search(r"otpauth://totp/\S+", enrolled)
    assert new_uri and new_uri[0] != uri[0]


def test_policy_errors_are_one_line_without_the_password(workdir: Path) -> None:
    line = one_line_error(
        cdp(
            workdir,
            "users",
            "create",
            "--username",
            "cus",
            "--role",
            "customer",
            "--scope",
            "self:read",
            "--password-file",
            "pw",
        )
    )
    assert "not a staff role" in line
    (workdir / "short").write_text("tiny secret\n", encoding="utf-8")
    line = one_line_error(
        cdp(
            workdir,
            "users",
            "create",
            "--username",
            "sam",
            "--role",
            "support_agent",
            "--scope",
            "profiles:read",
            "--password-file",
            "short",
        )
    )
    assert "at least 12 characters" in line and "tiny secret" not in line
    create(workdir, "sam", "support_agent", "profiles:read")
    assert "already taken" in one_line_error(
        cdp(
            workdir,
            "users",
            "create",
            "--username",
            "sam",
            "--role",
            "support_agent",
            "--scope",
            "profiles:read",
            "--password-file",
            "pw",
        )
    )
    assert "does not exist" in one_line_error(cdp(workdir, "users", "disable", "nobody"))


def test_disable_enable_and_set_password(workdir: Path, platform: Platform) -> None:
    create(workdir, "sam", "support_agent", "profiles:read")
    assert "disabled sam" in ok(cdp(workdir, "users", "disable", "sam"))
    assert user_row(ok(cdp(workdir, "users", "list")), "sam")[4].startswith("disabled ")
    assert "enabled sam" in ok(cdp(workdir, "users", "enable", "sam"))
    assert user_row(ok(cdp(workdir, "users", "list")), "sam")[4] == "active"
    (workdir / "new").write_text("another long passphrase", encoding="utf-8")
    assert "password of sam changed" in ok(
        cdp(workdir, "users", "set-password", "sam", "--password-file", "new")
    )
    with pytest.raises(SignInFailed):
        sign_in(platform.db, platform.vault, platform.settings, "sam", PASSWORD)
    sign_in(platform.db, platform.vault, platform.settings, "sam", "another long passphrase")


def test_password_prompt_asks_twice_and_hides_input(workdir: Path, platform: Platform) -> None:
    result = CliRunner().invoke(
        cli,
        ["users", "create", "--username", "pat", "--role", "support_agent", "--scope", "profiles:read"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env={"CDP_DATA_DIR": str(workdir / "var"), "CDP_CONFIG": None, "CDP_DATABASE_URL": None},
    )
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output and PASSWORD not in result.output
    sign_in(platform.db, platform.vault, platform.settings, "pat", PASSWORD)


def test_outbox_list_shows_the_codes_with_a_warning(workdir: Path, platform: Platform) -> None:
    service = IngestService(platform.db, platform.vault, today=date(2026, 3, 1), resolve=False)
    service.register_source(CRM_MAPPING)
    (workdir / "crm.csv").write_text(CRM_HEADER + "".join(CRM_ROWS), encoding="utf-8")
    service.ingest_file("crm", workdir / "crm.csv")
    with platform.db.transaction() as session:
        CustomerSignIn(session, platform.vault, platform.settings).request_code("john.smith@example.com")

    result = cdp(workdir, "outbox", "list")
    listed = ok(result)
    assert "local demo outbox" in result.stderr
    assert "john.smith@example.com" in listed and "sign_in_code" in listed
    assert re.search(r"sign-in code is \d{6}", listed)


def test_app_clients_are_registered_with_exact_redirect_uris(workdir: Path, platform: Platform) -> None:
    public = ok(
        cdp(
            workdir,
            "clients",
            "create",
            "--name",
            "privacy center",
            "--grant",
            "authorization_code",
            "--role",
            "customer",
            "--scope",
            "self:read",
            "--redirect-uri",
            "https://privacy.example/cb",
            "--public",
        )
    )
    assert "client_secret" not in public and "PKCE" in public
    assert "redirect URIs: https://privacy.example/cb" in public
    console = ok(
        cdp(
            workdir,
            "clients",
            "create",
            "--name",
            "360 view",
            "--grant",
            "authorization_code",
            "--role",
            "staff",
            "--scope",
            "profiles:read",
            "--redirect-uri",
            "http://127.0.0.1:9000/cb",
        )
    )
    assert re.search(r"client_secret: \S{40,}", console)
    listing = ok(cdp(workdir, "clients", "list", COLUMNS="250"))
    assert "authorization_code (public)" in listing and "privacy center" in listing
    refused = one_line_error(
        cdp(
            workdir,
            "clients",
            "create",
            "--name",
            "bad",
            "--grant",
            "authorization_code",
            "--role",
            "staff",
            "--scope",
            "profiles:read",
            "--redirect-uri",
            "http://evil.example/cb",
        )
    )
    assert "redirect" in refused.lower()
    mixed = cdp(
        workdir,
        "clients",
        "create",
        "--name",
        "svc",
        "--role",
        "support_agent",
        "--scope",
        "profiles:read",
        "--public",
    )
    assert mixed.returncode == 2 and "authorization_code grant only" in mixed.stderr
