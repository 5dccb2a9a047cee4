"""Staff accounts: Argon2id passwords, TOTP second factor, lockout after repeated failures.

Staff sign in to the web apps (authorization code grant) with a username, a password and — for the roles
that can see the audit trail or administer the platform — a TOTP code. The rules live here; the HTTP layer
only shows a form and calls :func:`sign_in`.

Failures count, and must be *kept* even though the caller gets an exception: a unit of work that rolls
back on :class:`SignInFailed` would let an attacker guess passwords forever. So :meth:`authenticate`
updates the row, flushes and then raises, and :func:`sign_in` is the transaction that commits the
counter before re-raising. Every failure carries the same message; only ``reason`` (for the audit log,
never shown to the user) says what went wrong.

Passwords, TOTP secrets and codes never appear in messages, logs or reprs.

Every change to an account is audited in the transaction that makes it (``user.create``,
``user.disable``, ``user.enable``, ``user.credentials``), naming the account by id (``user:<uuid>``),
never by username: the actor is whoever the current audit scope names (the operator, at the CLI).
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Final, NoReturn

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.access.grants import GrantStore
from cdp.access.roles import ROLE_SCOPES, PolicyError, check_grantable
from cdp.audit import AuditEvent, record
from cdp.config import Settings
from cdp.db import Database
from cdp.db.models import StaffUser as StaffUserRow
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.vault import Vault
from cdp.vault.subjects import SubjectStore

TABLE = "staff_user"
TOTP_ISSUER = "cdp"
TOTP_STEP_SECONDS = 30
TOTP_VALID_WINDOW = 1
"""Steps accepted either side of the current one: tolerates a clock off by up to 30 s."""
PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024
"""Argon2 takes any length, but an unbounded one lets a request make the server hash megabytes."""

TOTP_REQUIRED_ROLES = frozenset({"compliance_officer", "dpo", "admin"})
"""Roles that see the audit trail, handle data-subject requests or administer the platform: a stolen
password alone must not be enough for them."""
STAFF_ROLES = frozenset(ROLE_SCOPES) - {"customer"}

SIGN_IN_FAILED_MESSAGE: Final = "Sign-in failed: check your username, password and code"
SIGN_IN_FAILURE_REASONS: Final = frozenset(
    {
        "unknown_user",
        "bad_password",
        "bad_totp",
        "totp_required",
        "locked",
        "disabled",
        "expired_code",
        "too_many_attempts",
        "used_code",
        "bad_code",
    }
)

_USERNAME = re.compile(r"[a-z0-9._-]{3,64}")
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 "low memory") defaults


class SignInFailed(CdpError):
    """A sign-in was refused. The message is the same for every cause, so it never tells an attacker
    whether a username exists, the password was right or the account is locked; ``reason`` (one of
    :data:`SIGN_IN_FAILURE_REASONS`) and ``user_id`` (the account the attempt was against, when one
    exists) are for the audit log only."""

    def __init__(self, reason: str, user_id: uuid.UUID | None = None) -> None:
        if reason not in SIGN_IN_FAILURE_REASONS:
            raise ValueError(f"unknown sign-in failure reason {reason!r}")
        self.reason = reason
        self.user_id = user_id
        super().__init__(SIGN_IN_FAILED_MESSAGE)

    def __reduce__(self) -> tuple[type[SignInFailed], tuple[str, uuid.UUID | None]]:
        return (type(self), (self.reason, self.user_id))


class UserNotFound(CdpError):
    pass


@dataclass(frozen=True)
class StaffUser:
    """A staff account as the rest of the platform sees it: no hash, no secret."""

    id: uuid.UUID
    username: str
    role: str
    department: str | None
    scopes: frozenset[str]
    totp_enabled: bool
    created_at: datetime
    last_login_at: datetime | None
    locked_until: datetime | None
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        """Not disabled. A lockout is temporary and does not make an account inactive."""
        return self.disabled_at is None

    @property
    def principal(self) -> str:
        """The token subject of this user (``user:<uuid>``)."""
        return f"user:{self.id}"

    def locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or utcnow())


def _user(row: StaffUserRow) -> StaffUser:
    return StaffUser(
        id=row.id,
        username=row.username,
        role=row.role,
        department=row.department,
        scopes=frozenset(row.scopes.split()),
        totp_enabled=row.enc_totp_secret is not None,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
        locked_until=row.locked_until,
        disabled_at=row.disabled_at,
    )


@cache
def _dummy_hash() -> str:
    """A hash no password matches, verified for unknown usernames so they take as long as known ones."""
    return _hasher.hash(secrets.token_urlsafe(32))


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _normalize_username(username: str) -> str:
    return username.strip().lower()


def check_password_policy(username: str, password: str) -> None:
    """Length bounds and not the username. Messages never include the password."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise PolicyError(f"password must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise PolicyError(f"password must be at most {PASSWORD_MAX_LENGTH} characters")
    if password.strip().casefold() == username.casefold():
        raise PolicyError("password must not be the username")


def _totp_step(at: datetime) -> int:
    return int(at.timestamp()) // TOTP_STEP_SECONDS


def _matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step (within the window) whose code this is, or None. Every candidate is compared in
    constant time, and all of them are computed, so timing does not tell which step matched."""
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS)
    presented = code.replace(" ", "").encode("ascii", errors="replace")
    current = _totp_step(at)
    found: int | None = None
    for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode("ascii"), presented) and found is None:
            found = step
    return found


class UserRepository:
    def __init__(self, session: Session, vault: Vault, settings: Settings) -> None:
        self.session = session
        self.vault = vault
        self.settings = settings
        self.subjects = SubjectStore(session, vault.keys)

    # -- administration ------------------------------------------------------------------------------

    def create(
        self,
        *,
        username: str,
        password: str,
        role: str,
        scopes: Iterable[str],
        department: str | None = None,
    ) -> tuple[StaffUser, str | None]:
        """Create a staff account. For roles in :data:`TOTP_REQUIRED_ROLES` a TOTP secret is enrolled at
        once and its ``otpauth://`` provisioning URI returned (show it once; it is the secret); otherwise
        the second item is None."""
        name = _normalize_username(username)
        if not _USERNAME.fullmatch(name):
            raise PolicyError("username must be 3-64 characters of a-z, 0-9, '.', '_' and '-'")
        if role == "customer":
            raise PolicyError("role customer is not a staff role: customers sign in with an emailed code")
        granted = check_grantable(role, scopes, department)
        check_password_policy(name, password)
        if self._row(name) is not None:
            raise PolicyError(f"username {name} is already taken")
        row = StaffUserRow(
            id=uuid.uuid4(),
            username=name,
            password_hash=_hasher.hash(password),
            role=role,
            department=department,
            scopes=" ".join(sorted(granted)),
            failed_attempts=0,
            created_at=utcnow(),
        )
        self.session.add(row)
        self.session.flush()
        uri = self._enroll(row) if role in TOTP_REQUIRED_ROLES else None
        self._audit(
            "user.create",
            row,
            role=role,
            department=department,
            scopes=sorted(granted),
            totp_enrolled=uri is not None,
        )
        return _user(row), uri

    def enroll_totp(self, username: str) -> str:
        """Enrol (or re-enrol) a TOTP secret; returns the provisioning URI, to be shown once. A previous
        secret is crypto-shredded, so an old authenticator stops working immediately."""
        row = self._require(username)
        uri = self._enroll(row)
        self._audit("user.credentials", row, credential="totp")
        return uri

    def _enroll(self, row: StaffUserRow) -> str:
        secret = pyotp.random_base32()
        previous = row.totp_subject_id
        subject_id, cipher = self.subjects.create()
        row.totp_subject_id = subject_id
        row.enc_totp_secret = cipher.encrypt(TABLE, str(row.id), "totp_secret", secret)
        row.last_totp_step = None
        if previous is not None:
            self.subjects.shred([previous])
        self.session.flush()
        return pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS).provisioning_uri(
            name=row.username, issuer_name=TOTP_ISSUER
        )

    def disable(self, username: str) -> StaffUser:
        """Disable an account: it can no longer sign in, its access tokens fail at the next request (the
        per-request check), and its sign-ins (refresh-token families) are revoked now — so enabling the
        account again later does not bring old sessions back."""
        row = self._require(username)
        if row.disabled_at is None:
            row.disabled_at = utcnow()
        self.session.flush()
        revoked = GrantStore(self.session).revoke_principal(f"user:{row.id}")
        self._audit("user.disable", row, revoked_sign_ins=revoked)
        return _user(row)

    def enable(self, username: str) -> StaffUser:
        """Re-enable an account and clear any lockout and failure count."""
        row = self._require(username)
        row.disabled_at = None
        row.locked_until = None
        row.failed_attempts = 0
        self.session.flush()
        self._audit("user.enable", row)
        return _user(row)

    def set_password(self, username: str, password: str) -> StaffUser:
        """Replace the password (same policy as at creation). A lockout stays; ``enable`` clears it."""
        row = self._require(username)
        check_password_policy(row.username, password)
        row.password_hash = _hasher.hash(password)
        self.session.flush()
        self._audit("user.credentials", row, credential="password")
        return _user(row)

    def _audit(self, action: str, row: StaffUserRow, **details: object) -> None:
        record(
            self.session,
            AuditEvent(action, subjects=(f"user:{row.id}",), details={"user_id": str(row.id), **details}),
        )

    # -- lookups -------------------------------------------------------------------------------------

    def by_id(self, user_id: uuid.UUID) -> StaffUser | None:
        row = self.session.get(StaffUserRow, user_id)
        return _user(row) if row is not None else None

    def by_username(self, username: str) -> StaffUser | None:
        row = self._row(_normalize_username(username))
        return _user(row) if row is not None else None

    def all(self) -> list[StaffUser]:
        rows = self.session.execute(select(StaffUserRow).order_by(StaffUserRow.username)).scalars()
        return [_user(row) for row in rows]

    def _row(self, name: str, *, for_update: bool = False) -> StaffUserRow | None:
        query = select(StaffUserRow).where(StaffUserRow.username == name)
        if for_update:
            query = query.with_for_update()
        return self.session.execute(query).scalar_one_or_none()

    def _require(self, username: str) -> StaffUserRow:
        row = self._row(_normalize_username(username))
        if row is None:
            raise UserNotFound(f"user {_normalize_username(username)} does not exist")
        return row

    # -- sign-in -------------------------------------------------------------------------------------

    def authenticate(
        self, username: str, password: str, totp_code: str | None = None, *, now: datetime | None = None
    ) -> StaffUser:
        """Check a sign-in; returns the user or raises :class:`SignInFailed`.

        The row is locked for the check (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writers are
        serialized anyway), so concurrent guesses cannot lose failure counts or replay one TOTP code.
        A wrong password or a wrong or missing TOTP code counts a failure; reaching
        ``login_max_failures`` locks the account for ``login_lockout_seconds`` and starts the count
        again. While locked or disabled even the right password is refused, and the count is left
        alone. The password is verified on every path — unknown user (against a dummy hash), locked,
        disabled — so response time does not tell them apart.

        **The caller must commit when this raises**: the failure count is flushed before
        :class:`SignInFailed` is raised, and a rollback would undo it. Use :func:`sign_in`, which does.
        """
        at = now or utcnow()
        row = self._row(_normalize_username(username), for_update=True)
        if row is None:
            _password_matches(_dummy_hash(), password)
            raise SignInFailed("unknown_user")
        password_ok = _password_matches(row.password_hash, password)
        if row.disabled_at is not None:
            raise SignInFailed("disabled", row.id)
        if row.locked_until is not None and row.locked_until > at:
            raise SignInFailed("locked", row.id)
        if not password_ok:
            self._fail(row, "bad_password", at)
        step: int | None = None
        if row.enc_totp_secret is not None and row.totp_subject_id is not None:
            if not totp_code or not totp_code.strip():
                self._fail(row, "totp_required", at)
            secret = self.subjects.open(row.totp_subject_id).decrypt(
                TABLE, str(row.id), "totp_secret", row.enc_totp_secret
            )
            assert isinstance(secret, str)
            step = _matching_step(secret, totp_code, at)
            if step is None or (row.last_totp_step is not None and step <= row.last_totp_step):
                self._fail(row, "bad_totp", at)
        elif row.role in TOTP_REQUIRED_ROLES:
            self._fail(row, "totp_required", at)
        row.failed_attempts = 0
        row.locked_until = None
        row.last_login_at = at
        if step is not None:
            row.last_totp_step = step
        if _hasher.check_needs_rehash(row.password_hash):
            row.password_hash = _hasher.hash(password)
        self.session.flush()
        return _user(row)

    def _fail(self, row: StaffUserRow, reason: str, at: datetime) -> NoReturn:
        row.failed_attempts = (row.failed_attempts or 0) + 1
        if row.failed_attempts >= self.settings.login_max_failures:
            row.locked_until = at + timedelta(seconds=self.settings.login_lockout_seconds)
            row.failed_attempts = 0
        self.session.flush()
        raise SignInFailed(reason, row.id)


def sign_in(
    db: Database,
    vault: Vault,
    settings: Settings,
    username: str,
    password: str,
    totp_code: str | None = None,
    *,
    now: datetime | None = None,
) -> StaffUser:
    """One staff sign-in in its own transaction, which commits the failure count even when the sign-in
    fails; :class:`SignInFailed` is re-raised after the commit."""
    failure: SignInFailed | None = None
    with db.transaction() as session:
        try:
            return UserRepository(session, vault, settings).authenticate(
                username, password, totp_code, now=now
            )
        except SignInFailed as exc:
            failure = exc
    assert failure is not None
    raise failure
