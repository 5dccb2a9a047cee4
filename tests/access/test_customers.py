"""Customer one-time-code sign-in on SQLite and PostgreSQL: the code reaches the outbox of the right
record, unknown addresses look the same as known ones, and codes are keyed, short-lived, single-use and
allow a few guesses only."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cdp.access.customers import (
    CustomerIdentity,
    CustomerSignIn,
    InvalidEmail,
    TooManyRequests,
    verify_customer_code,
)
from cdp.access.outbox import Outbox
from cdp.access.users import SIGN_IN_FAILED_MESSAGE, SignInFailed
from cdp.config import Settings
from cdp.db.models import LoginCode, OutboxMessage, SourceRecord
from cdp.db.types import utcnow
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.records import RecordRepository
from tests.sources.test_ingest import CRM_HEADER, CRM_MAPPING, CRM_ROWS

NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=utcnow().tzinfo)
MARIA = "maria.garcia@example.com"  # stored as "Maria.Garcia+news@Example.com"
JOHN_AGAIN = "L-4,Johnny,Smith,john.smith@example.com,,,,,,,silver,\n"


@pytest.fixture
def records(platform: Platform, tmp_path: Path) -> dict[str, uuid.UUID]:
    """The CRM sample (plus a second record with John's address), by source record id."""
    service = IngestService(platform.db, platform.vault, today=date(2026, 3, 1), resolve=False)
    service.register_source(CRM_MAPPING)
    path = tmp_path / "crm.csv"
    path.write_text(CRM_HEADER + "".join(CRM_ROWS) + JOHN_AGAIN, encoding="utf-8")
    service.ingest_file("crm", path)
    with platform.db.read() as session:
        ids = list(session.execute(select(SourceRecord.id)).scalars())
        stored = RecordRepository(session, platform.vault).get_many(ids)
    return {r.data.source_record_id: r.id for r in stored}


def request(
    platform: Platform, email: str, now: datetime = NOW, settings: Settings | None = None
) -> uuid.UUID:
    with platform.db.transaction() as session:
        return CustomerSignIn(session, platform.vault, settings or platform.settings).request_code(
            email, now=now
        )


def verify(
    platform: Platform,
    login_id: uuid.UUID,
    code: str,
    now: datetime = NOW,
    settings: Settings | None = None,
) -> CustomerIdentity:
    return verify_customer_code(
        platform.db, platform.vault, settings or platform.settings, login_id, code, now=now
    )


def refused(platform: Platform, login_id: uuid.UUID, code: str, **kwargs: object) -> str:
    with pytest.raises(SignInFailed) as caught:
        verify(platform, login_id, code, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == SIGN_IN_FAILED_MESSAGE
    return caught.value.reason


def outbox(platform: Platform) -> list[tuple[str, str, str, str]]:
    with platform.db.read() as session:
        return [(e.purpose, e.recipient, e.subject, e.body) for e in Outbox(session, platform.vault).latest()]


def sent_code(platform: Platform) -> str:
    body = outbox(platform)[0][3]
    found = re.search(r"\b(\d{6})\b", body)
    assert found, "no code in the message"
    return found[1]


def login_row(platform: Platform, login_id: uuid.UUID) -> LoginCode:
    with platform.db.read() as session:
        found = session.get(LoginCode, login_id)
        assert found is not None
        session.expunge(found)
        return found


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_code_goes_to_the_outbox_and_signs_the_record_in(
    platform: Platform, records: dict[str, uuid.UUID]
) -> None:
    login_id = request(platform, MARIA)
    [(purpose, recipient, subject, body)] = outbox(platform)
    assert (purpose, subject) == ("sign_in_code", "Your cdp sign-in code")
    assert recipient == "Maria.Garcia+news@example.com"  # the address as the record holds it
    assert "10 minutes" in body
    identity = verify(platform, login_id, sent_code(platform))
    assert identity == CustomerIdentity(records["L-1"])
    assert identity.principal == f"customer:{records['L-1']}"
    assert login_row(platform, login_id).used_at == NOW


def test_address_is_normalized_as_ingestion_does(platform: Platform, records: dict[str, uuid.UUID]) -> None:
    login_id = request(platform, "  Maria <MARIA.GARCIA+other-tag@EXAMPLE.COM> ")
    assert verify(platform, login_id, sent_code(platform)).record_id == records["L-1"]


def test_the_most_recently_updated_record_gets_the_code(
    platform: Platform, records: dict[str, uuid.UUID]
) -> None:
    for newer, older in (("L-4", "L-2"), ("L-2", "L-4")):
        with platform.db.transaction() as session:
            for record, at in ((newer, NOW), (older, NOW - timedelta(days=1))):
                session.execute(
                    update(SourceRecord).where(SourceRecord.id == records[record]).values(updated_at=at)
                )
        login_id = request(platform, "john.smith@example.com")
        assert verify(platform, login_id, sent_code(platform)).record_id == records[newer]


def test_unknown_address_gets_a_login_id_but_no_message(
    platform: Platform, records: dict[str, uuid.UUID]
) -> None:
    login_id = request(platform, "nobody@example.com")
    stored = login_row(platform, login_id)
    assert stored.record_id is None and stored.expires_at > NOW
    assert outbox(platform) == []
    assert refused(platform, login_id, "123456") == "bad_code"
    assert login_row(platform, login_id).attempts == 1  # counted like a real code, so it looks the same


def test_invalid_address_is_refused_without_echoing_it(platform: Platform) -> None:
    with pytest.raises(InvalidEmail) as caught:
        request(platform, "not-an-email@@example")
    assert "not-an-email" not in str(caught.value)


def test_wrong_codes_are_counted_until_the_code_is_dead(
    platform: Platform, records: dict[str, uuid.UUID]
) -> None:
    settings = platform.settings.with_overrides(login_code_max_attempts=3)
    login_id = request(platform, MARIA, settings=settings)
    code = sent_code(platform)
    for _ in range(3):
        assert refused(platform, login_id, other_code(code), settings=settings) == "bad_code"
    assert login_row(platform, login_id).attempts == 3  # committed although each check raised
    assert refused(platform, login_id, code, settings=settings) == "too_many_attempts"


def test_expired_code_is_refused(platform: Platform, records: dict[str, uuid.UUID]) -> None:
    login_id = request(platform, MARIA)
    later = NOW + timedelta(seconds=platform.settings.login_code_ttl_seconds)
    assert refused(platform, login_id, sent_code(platform), now=later) == "expired_code"


def test_code_works_once(platform: Platform, records: dict[str, uuid.UUID]) -> None:
    login_id = request(platform, MARIA)
    code = sent_code(platform)
    verify(platform, login_id, code)
    assert refused(platform, login_id, code) == "used_code"


def test_signing_in_voids_the_addresses_other_codes(
    platform: Platform, records: dict[str, uuid.UUID]
) -> None:
    first = request(platform, MARIA)
    first_code = sent_code(platform)
    second = request(platform, MARIA)
    verify(platform, second, sent_code(platform))
    assert refused(platform, first, first_code) == "used_code"


def test_unknown_login_id_is_a_bad_code(platform: Platform) -> None:
    assert refused(platform, uuid.uuid4(), "123456") == "bad_code"


def test_code_hash_is_keyed_not_a_plain_digest(platform: Platform, records: dict[str, uuid.UUID]) -> None:
    login_id = request(platform, MARIA)
    code = sent_code(platform)
    stored = login_row(platform, login_id).code_hash
    for text in (code, f"{login_id}:{code}"):
        digest = hashlib.sha256(text.encode()).digest()
        assert stored not in (digest, digest[: len(stored)])
    assert code.encode() not in stored
    with platform.db.read() as session:
        raw = session.execute(select(OutboxMessage.enc_message)).scalar_one()
    assert code.encode() not in raw and b"Maria" not in raw


def test_too_many_live_codes_for_one_address_are_refused(
    platform: Platform, records: dict[str, uuid.UUID]
) -> None:
    for address in (MARIA, "nobody@example.com"):  # known and unknown addresses alike
        for _ in range(5):
            request(platform, address)
        with pytest.raises(TooManyRequests) as caught:
            request(platform, address)
        assert "example.com" not in str(caught.value)
    later = NOW + timedelta(seconds=platform.settings.login_code_ttl_seconds)
    request(platform, MARIA, now=later)  # expired codes no longer count


def test_prune_deletes_expired_codes_only(platform: Platform, records: dict[str, uuid.UUID]) -> None:
    request(platform, MARIA, now=NOW - timedelta(hours=1))
    kept = request(platform, MARIA)
    with platform.db.transaction() as session:
        assert CustomerSignIn(session, platform.vault, platform.settings).prune(now=NOW) == 1
    with platform.db.read() as session:
        assert list(session.execute(select(LoginCode.id)).scalars()) == [kept]
        assert session.execute(select(func.count()).select_from(LoginCode)).scalar_one() == 1
