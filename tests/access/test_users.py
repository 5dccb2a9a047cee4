"""Staff sign-in on SQLite and PostgreSQL: Argon2id at rest, lockout that survives the failed request,
TOTP required for the powerful roles and never replayable, secrets never stored or shown in clear."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from cdp.access.roles import PolicyError
from cdp.access.users import (
    SIGN_IN_FAILED_MESSAGE,
    SignInFailed,
    StaffUser,
    UserNotFound,
    UserRepository,
    sign_in,
)
from cdp.config import Settings
from cdp.db.models import StaffUser as StaffUserRow
from cdp.db.models import Subject
from cdp.db.types import utcnow
from cdp.platform import Platform

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=utcnow().tzinfo)


def create(
    platform: Platform,
    username: str = "alice",
    role: str = "support_agent",
    scopes: tuple[str, ...] = ("profiles:read",),
    password: str = PASSWORD,
) -> tuple[StaffUser, str | None]:
    with platform.db.transaction() as session:
        return UserRepository(session, platform.vault, platform.settings).create(
            username=username, password=password, role=role, scopes=scopes
        )


def row(platform: Platform, username: str = "alice") -> StaffUserRow:
    with platform.db.read() as session:
        found = session.execute(select(StaffUserRow).where(StaffUserRow.username == username)).scalar_one()
        session.expunge(found)
        return found


def attempt(
    platform: Platform,
    password: str = PASSWORD,
    code: str | None = None,
    *,
    username: str = "alice",
    now: datetime = NOW,
    settings: Settings | None = None,
) -> StaffUser:
    return sign_in(
        platform.db, platform.vault, settings or platform.settings, username, password, code, now=now
    )


def refused(platform: Platform, *args: str | None, **kwargs: object) -> str:
    with pytest.raises(SignInFailed) as caught:
        attempt(platform, *args, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == SIGN_IN_FAILED_MESSAGE
    return caught.value.reason


def secret_of(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


def test_password_is_stored_as_an_argon2id_hash_never_in_clear(platform: Platform) -> None:
    user, uri = create(platform)
    assert uri is None and not user.totp_enabled
    stored = row(platform)
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert PASSWORD not in repr(user)
    assert attempt(platform).id == user.id


def test_right_password_signs_in_records_the_login_and_ignores_username_case(platform: Platform) -> None:
    create(platform)
    user = attempt(platform, username="  Alice ")
    assert user.username == "alice" and user.last_login_at == NOW
    assert row(platform).failed_attempts == 0


def test_wrong_password_counts_a_failure_that_outlives_the_exception(platform: Platform) -> None:
    create(platform)
    assert refused(platform, "not the password at all") == "bad_password"
    assert row(platform).failed_attempts == 1  # committed although sign_in raised
    attempt(platform)
    assert row(platform).failed_attempts == 0


def test_lockout_after_max_failures_refuses_even_the_right_password(platform: Platform) -> None:
    settings = platform.settings.with_overrides(login_max_failures=3, login_lockout_seconds=600)
    create(platform)
    for _ in range(3):
        assert refused(platform, "wrong password 123", settings=settings) == "bad_password"
    locked = row(platform)
    assert locked.locked_until == NOW + timedelta(seconds=600)
    assert locked.failed_attempts == 0  # the lockout starts a fresh count
    assert refused(platform, PASSWORD, settings=settings, now=NOW + timedelta(seconds=599)) == "locked"
    after = row(platform)
    assert (after.failed_attempts, after.locked_until) == (0, locked.locked_until)


def test_lockout_expires(platform: Platform) -> None:
    settings = platform.settings.with_overrides(login_max_failures=2, login_lockout_seconds=60)
    create(platform)
    for _ in range(2):
        refused(platform, "wrong password 123", settings=settings)
    later = NOW + timedelta(seconds=61)
    assert attempt(platform, settings=settings, now=later).last_login_at == later
    assert row(platform).locked_until is None


def test_unknown_user_and_wrong_password_fail_alike(platform: Platform) -> None:
    create(platform)
    with pytest.raises(SignInFailed) as unknown:
        attempt(platform, username="mallory")
    with pytest.raises(SignInFailed) as wrong:
        attempt(platform, "wrong password 123")
    assert str(unknown.value) == str(wrong.value) == SIGN_IN_FAILED_MESSAGE
    assert (unknown.value.reason, wrong.value.reason) == ("unknown_user", "bad_password")
    assert "mallory" not in str(unknown.value) and "wrong password" not in repr(wrong.value)


def test_compliance_officer_gets_totp_at_creation_and_cannot_sign_in_without_a_code(
    platform: Platform,
) -> None:
    user, uri = create(platform, role="compliance_officer", scopes=("audit:read",))
    assert uri is not None and uri.startswith("otpauth://totp/cdp:alice?")
    assert parse_qs(urlparse(uri).query)["issuer"] == ["cdp"]
    assert user.totp_enabled
    totp = pyotp.TOTP(secret_of(uri))
    window = {totp.at(NOW + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in window)
    assert refused(platform) == "totp_required"
    assert refused(platform, PASSWORD, wrong) == "bad_totp"
    assert row(platform).failed_attempts == 2  # a missing or wrong code counts like a wrong password
    code = totp.at(NOW)
    assert attempt(platform, PASSWORD, code).id == user.id


def test_totp_code_is_accepted_once_and_earlier_steps_never(platform: Platform) -> None:
    _, uri = create(platform, role="dpo", scopes=("dsr:manage",))
    assert uri is not None
    totp = pyotp.TOTP(secret_of(uri))
    attempt(platform, PASSWORD, totp.at(NOW))
    assert refused(platform, PASSWORD, totp.at(NOW), now=NOW + timedelta(seconds=5)) == "bad_totp"
    # the previous step is inside the clock-skew window, yet older than the accepted one
    assert refused(platform, PASSWORD, totp.at(NOW - timedelta(seconds=30)), now=NOW) == "bad_totp"
    later = NOW + timedelta(seconds=30)
    assert attempt(platform, PASSWORD, totp.at(later), now=later).last_login_at == later


def test_right_password_with_a_stale_code_is_refused(platform: Platform) -> None:
    _, uri = create(platform, role="admin", scopes=("sources:manage",))
    assert uri is not None
    stale = pyotp.TOTP(secret_of(uri)).at(NOW - timedelta(minutes=5))
    assert refused(platform, PASSWORD, stale) == "bad_totp"


def test_totp_secret_is_not_stored_in_clear(platform: Platform) -> None:
    _, uri = create(platform, role="admin", scopes=("sources:manage",))
    assert uri is not None
    secret = secret_of(uri)
    forms = [secret.encode(), secret.lower().encode(), base64.b32decode(secret)]
    with platform.db.read() as session:
        values = session.execute(select(StaffUserRow.__table__)).one()  # type: ignore[arg-type]
    for value in values:
        raw = value if isinstance(value, bytes) else str(value).encode()
        for form in forms:
            assert form not in raw


def test_reenrolling_totp_shreds_the_old_secret(platform: Platform) -> None:
    _, first = create(platform, role="admin", scopes=("sources:manage",))
    assert first is not None
    old_subject = row(platform).totp_subject_id
    with platform.db.transaction() as session:
        second = UserRepository(session, platform.vault, platform.settings).enroll_totp("alice")
    assert secret_of(second) != secret_of(first)
    with platform.db.read() as session:
        assert session.get(Subject, old_subject).wrapped_key is None  # type: ignore[union-attr]
    assert refused(platform, PASSWORD, pyotp.TOTP(secret_of(first)).at(NOW)) == "bad_totp"
    attempt(platform, PASSWORD, pyotp.TOTP(secret_of(second)).at(NOW))


def test_role_that_requires_totp_is_refused_until_enrolled(platform: Platform) -> None:
    create(platform, role="admin", scopes=("sources:manage",))
    with platform.db.transaction() as session:
        stored = session.execute(select(StaffUserRow)).scalar_one()
        stored.enc_totp_secret = None
        stored.totp_subject_id = None
    assert refused(platform) == "totp_required"


def test_disabled_user_is_refused_until_enabled(platform: Platform) -> None:
    create(platform)
    with platform.db.transaction() as session:
        disabled = UserRepository(session, platform.vault, platform.settings).disable("alice")
    assert not disabled.active
    assert refused(platform) == "disabled"
    with platform.db.transaction() as session:
        assert UserRepository(session, platform.vault, platform.settings).enable("alice").active
    attempt(platform)


def test_enable_clears_a_lockout(platform: Platform) -> None:
    settings = platform.settings.with_overrides(login_max_failures=1)
    create(platform)
    refused(platform, "wrong password 123", settings=settings)
    assert refused(platform, settings=settings) == "locked"
    with platform.db.transaction() as session:
        UserRepository(session, platform.vault, settings).enable("alice")
    attempt(platform, settings=settings)


def test_outdated_hash_parameters_are_upgraded_at_sign_in(platform: Platform) -> None:
    create(platform)
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    with platform.db.transaction() as session:
        session.execute(select(StaffUserRow)).scalar_one().password_hash = weak
    attempt(platform)
    upgraded = row(platform).password_hash
    assert upgraded != weak and upgraded.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(upgraded)
    attempt(platform)  # and the new hash verifies


def test_set_password_replaces_the_old_one(platform: Platform) -> None:
    create(platform)
    with platform.db.transaction() as session:
        UserRepository(session, platform.vault, platform.settings).set_password(
            "alice", "a brand new passphrase"
        )
    assert refused(platform) == "bad_password"
    attempt(platform, "a brand new passphrase")


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        ("alice", "short pw", "at least 12"),
        ("alice", "x" * 1025, "at most 1024"),
        ("alice.longname", "Alice.Longname", "not be the username"),
    ],
)
def test_password_policy_refuses_without_echoing_the_password(
    platform: Platform, username: str, password: str, expected: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        create(platform, username=username, password=password)
    assert expected in str(caught.value)
    assert password not in str(caught.value)
    with platform.db.read() as session:
        assert session.execute(select(StaffUserRow)).first() is None


def test_customer_role_bad_username_and_duplicates_are_refused(platform: Platform) -> None:
    with pytest.raises(PolicyError, match="not a staff role"):
        create(platform, role="customer", scopes=("self:read",))
    with pytest.raises(PolicyError, match="username"):
        create(platform, username="a b")
    with pytest.raises(PolicyError, match="may not hold"):
        create(platform, scopes=("audit:read",))
    create(platform)
    with pytest.raises(PolicyError, match="already taken"):
        create(platform, username="ALICE")


def test_lookups_and_unknown_users(platform: Platform) -> None:
    user, _ = create(platform)
    with platform.db.transaction() as session:
        repo = UserRepository(session, platform.vault, platform.settings)
        assert repo.by_id(user.id) == repo.by_username("ALICE") == user
        assert [u.username for u in repo.all()] == ["alice"]
        assert repo.by_username("bob") is None
        with pytest.raises(UserNotFound):
            repo.disable("bob")
