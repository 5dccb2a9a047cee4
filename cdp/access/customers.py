"""Customer sign-in to the self-service apps with a one-time code sent to their email.

A customer has no password: they prove they hold a mailbox a source record names. ``request_code``
answers every well-formed address the same way — a login id, a row in ``login_code`` — whether or not it
belongs to a customer, so the sign-in page cannot be used to find out who is one. Only a keyed hash of
the code is stored (HMAC under a blind-index sub-key bound to the login id), so a database dump alone
cannot brute-force the million possible codes; a code is single-use, short-lived and allows a few
guesses only.

As with staff sign-in, a wrong guess must be counted even though the caller gets an exception: use
:func:`verify_customer_code`, which commits the count before re-raising.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cdp.access.outbox import Outbox
from cdp.access.users import SignInFailed
from cdp.config import Settings
from cdp.db import Database
from cdp.db.models import LoginCode, SourceRecord
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.identity.normalize import NormalizationError, normalize_email
from cdp.sources.records import RecordRepository
from cdp.vault import Vault, VaultError

CODE_DIGITS = 6
MAX_LIVE_CODES = 5
"""Unused, unexpired codes one address may have at once; more requests are refused until some expire."""
EMAIL_INDEX = "email"
"""The blind-index kind ingestion stores email match keys under (see cdp/sources/prepare.py)."""
CODE_KIND = "login_code"
PURPOSE = "sign_in_code"
MESSAGE_SUBJECT = "Your cdp sign-in code"


class InvalidEmail(CdpError):
    """The address is not a syntactically valid email. The message never repeats the input."""

    def __init__(self) -> None:
        super().__init__("that is not a valid email address")


class TooManyRequests(CdpError):
    """Too many codes outstanding for one address (the message does not name it)."""

    def __init__(self) -> None:
        super().__init__("too many sign-in codes requested for this address; use one or wait a few minutes")


@dataclass(frozen=True)
class CustomerIdentity:
    """Who signed in: the source record whose email received the code."""

    record_id: uuid.UUID

    @property
    def principal(self) -> str:
        return f"customer:{self.record_id}"


def _random_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


class CustomerSignIn:
    def __init__(self, session: Session, vault: Vault, settings: Settings) -> None:
        self.session = session
        self.vault = vault
        self.settings = settings
        self.records = RecordRepository(session, vault)

    def _code_hash(self, login_id: uuid.UUID, code: str) -> bytes:
        """Keyed and bound to the login id: equal codes of two sign-ins hash differently, and without
        the blind-index key the hash says nothing about the code."""
        return self.vault.blind.fingerprint(CODE_KIND, f"{login_id}:{code}".encode())

    def request_code(self, email: str, *, now: datetime | None = None) -> uuid.UUID:
        """Start a sign-in; returns the login id to verify the code against — for any valid address.

        A known address (the ``email`` blind index, normalized exactly as ingestion does) gets a code in
        the outbox, sent to the address as its most recently updated source record holds it; an
        unknown one gets a row with an unguessable hash and no record, so the two look the same to the
        caller and in the database. Raises :class:`InvalidEmail` or :class:`TooManyRequests`.
        """
        at = now or utcnow()
        try:
            match_key = normalize_email(email).match_key
        except NormalizationError:
            raise InvalidEmail() from None
        email_token = self.vault.blind.token(EMAIL_INDEX, match_key)
        live = self.session.execute(
            select(func.count())
            .select_from(LoginCode)
            .where(
                LoginCode.email_token == email_token, LoginCode.used_at.is_(None), LoginCode.expires_at > at
            )
        ).scalar_one()
        if live >= MAX_LIVE_CODES:
            raise TooManyRequests()

        login_id = uuid.uuid4()
        found = self._recipient(match_key)
        code = _random_code()
        if found is not None:
            record_id, subject_id, address = found
            code_hash = self._code_hash(login_id, code)
        else:
            record_id = None
            code_hash = secrets.token_bytes(len(self._code_hash(login_id, code)))
        self.session.add(
            LoginCode(
                id=login_id,
                email_token=email_token,
                record_id=record_id,
                code_hash=code_hash,
                created_at=at,
                expires_at=at + timedelta(seconds=self.settings.login_code_ttl_seconds),
                attempts=0,
            )
        )
        self.session.flush()
        if found is not None:
            minutes = max(1, self.settings.login_code_ttl_seconds // 60)
            Outbox(self.session, self.vault).put(
                subject_id,
                purpose=PURPOSE,
                recipient=address,
                subject=MESSAGE_SUBJECT,
                body=(
                    f"Your cdp sign-in code is {code}. It expires in {minutes} minutes and works once.\n"
                    "If you did not ask to sign in, ignore this message: nobody can sign in without it."
                ),
            )
        return login_id

    def _recipient(self, match_key: str) -> tuple[uuid.UUID, uuid.UUID, str] | None:
        """(record id, subject id, address to send to) of the most recently updated record with this
        email. A blind-index token is only a pointer: the record is decrypted and its address compared
        before it is trusted, and records whose subject was shredded are passed over."""
        ids = self.records.find(EMAIL_INDEX, match_key)
        if not ids:
            return None
        candidates = self.session.execute(
            select(SourceRecord.id)
            .where(SourceRecord.id.in_(ids))
            .order_by(SourceRecord.updated_at.desc(), SourceRecord.id)
        ).scalars()
        for record_id in candidates:
            try:
                stored = self.records.get(record_id)
            except VaultError:
                continue
            if stored.data.email is None:
                continue
            try:
                address = normalize_email(stored.data.email)
            except NormalizationError:
                continue
            if address.match_key == match_key:
                return stored.id, stored.subject_id, address.display
        return None

    def verify_code(self, login_id: uuid.UUID, code: str, *, now: datetime | None = None) -> CustomerIdentity:
        """Check a code; returns who signed in, or raises :class:`SignInFailed` with reason
        ``bad_code`` (unknown login id, wrong code, or an address that is no customer's),
        ``used_code``, ``expired_code`` or ``too_many_attempts``.

        A wrong code counts an attempt; after ``login_code_max_attempts`` the code is dead even if the
        right one follows. **The caller must commit when this raises** (the count is flushed first):
        use :func:`verify_customer_code`. Success marks the code used and voids the address's other
        outstanding codes, so one sign-in leaves nothing else to guess.
        """
        at = now or utcnow()
        row = self.session.execute(
            select(LoginCode).where(LoginCode.id == login_id).with_for_update()
        ).scalar_one_or_none()
        presented = "".join(code.split())
        if row is None:
            self._code_hash(login_id, presented)  # the same work as a real check
            raise SignInFailed("bad_code")
        if row.used_at is not None:
            raise SignInFailed("used_code")
        if row.expires_at <= at:
            raise SignInFailed("expired_code")
        if row.attempts >= self.settings.login_code_max_attempts:
            raise SignInFailed("too_many_attempts")
        matches = hmac.compare_digest(self._code_hash(row.id, presented), row.code_hash)
        if not matches or row.record_id is None:
            row.attempts += 1
            self.session.flush()
            raise SignInFailed("bad_code")
        row.used_at = at
        self.session.execute(
            update(LoginCode)
            .where(LoginCode.email_token == row.email_token, LoginCode.used_at.is_(None))
            .values(used_at=at)
        )
        self.session.flush()
        return CustomerIdentity(row.record_id)

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete expired codes (used or not); returns how many."""
        result = self.session.execute(delete(LoginCode).where(LoginCode.expires_at <= (now or utcnow())))
        return int(result.rowcount)  # type: ignore[attr-defined]


def verify_customer_code(
    db: Database,
    vault: Vault,
    settings: Settings,
    login_id: uuid.UUID,
    code: str,
    *,
    now: datetime | None = None,
) -> CustomerIdentity:
    """One code check in its own transaction, which commits the attempt count even when the check
    fails; :class:`SignInFailed` is re-raised after the commit."""
    failure: SignInFailed | None = None
    with db.transaction() as session:
        try:
            return CustomerSignIn(session, vault, settings).verify_code(login_id, code, now=now)
        except SignInFailed as exc:
            failure = exc
    assert failure is not None
    raise failure
