"""The consent ledger's rules, on SQLite and PostgreSQL: what holds after which events, what the access
gate withholds, what is refused, and that every event is audited in its own transaction."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cdp.consent.catalog import ConsentCatalog, ConsentPurpose
from cdp.consent.ledger import (
    ConsentLedger,
    InvalidConsent,
    RecordedEvent,
    Status,
    UnknownSubject,
    derive,
    entity_records,
)
from cdp.db.models import AuditEntry, ConsentEvent, ConsentPurposeText
from cdp.platform import Platform
from tests.profiles.fixtures import Customers, seed_customers

MARKETING_FIELDS = ("first_name", "email", "phone", "city")


@pytest.fixture
def customers(platform: Platform, tmp_path: Path) -> Customers:
    return seed_customers(platform, tmp_path)


@pytest.fixture
def ledger(platform: Platform) -> ConsentLedger:
    return ConsentLedger(platform.db)


def _record(
    platform: Platform, ledger: ConsentLedger, record_id: uuid.UUID, purpose: str, channel: str, action: str,
    *, source: str = "api", occurred_at: datetime | None = None, expires_at: datetime | None = None,
) -> RecordedEvent:  # fmt: skip
    with platform.db.transaction() as session:
        return ledger.record(
            session,
            record_id,
            purpose,
            channel,
            action,
            source,
            occurred_at=occurred_at,
            expires_at=expires_at,
        )


def _audit_count(platform: Platform, action: str = "consent.record") -> int:
    with platform.db.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
            ).scalar_one()
        )


def test_a_grant_frees_the_purposes_attributes_and_a_withdrawal_withholds_them_on_the_next_read(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    withheld = ledger.withheld(customers.john, "marketing", MARKETING_FIELDS)
    assert set(withheld) == set(MARKETING_FIELDS)
    assert "no current consent" in withheld["email"]

    john_record = _only_record(platform, customers.john)
    _record(platform, ledger, john_record, "marketing_email", "email", "grant")
    withheld = ledger.withheld(customers.john, "marketing", MARKETING_FIELDS)
    assert set(withheld) == {"phone"}

    _record(platform, ledger, john_record, "marketing_email", "email", "withdraw")
    assert set(ledger.withheld(customers.john, "marketing", MARKETING_FIELDS)) == set(MARKETING_FIELDS)


def test_a_grant_past_its_expiry_is_expired_and_withholds(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    now = datetime.now(UTC)
    _record(
        platform, ledger, customers.ana_record, "marketing_email", "email", "grant",
        occurred_at=now - timedelta(days=30), expires_at=now - timedelta(days=1),
    )  # fmt: skip
    state = ledger.state(customers.ana)["marketing_email"]
    assert state.holds is False
    assert state.channels[0].status is Status.EXPIRED
    assert "email" in ledger.withheld(customers.ana, "marketing", MARKETING_FIELDS)


def test_the_most_recent_event_wins_across_the_records_and_sources_of_one_customer(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    now = datetime.now(UTC)
    _record(
        platform, ledger, customers.maria_crm_record, "marketing_email", "email", "grant",
        source="web_form", occurred_at=now - timedelta(days=2),
    )  # fmt: skip
    _record(
        platform, ledger, customers.maria_helpdesk_record, "marketing_email", "email", "withdraw",
        source="call_centre", occurred_at=now - timedelta(days=1),
    )  # fmt: skip
    state = ledger.state(customers.maria)["marketing_email"]
    assert state.holds is False
    assert (state.channels[0].status, state.channels[0].source) == (Status.WITHDRAWN, "call_centre")

    _record(
        platform, ledger, customers.maria_crm_record, "marketing_email", "email", "grant",
        source="privacy_center", occurred_at=now - timedelta(hours=1),
    )  # fmt: skip
    assert ledger.state(customers.maria)["marketing_email"].holds is True
    assert len(ledger.history(customers.maria)) == 3


def test_a_withdrawal_beats_a_grant_at_the_same_instant(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    instant = datetime.now(UTC) - timedelta(minutes=5)
    _record(
        platform, ledger, customers.maria_helpdesk_record, "marketing_email", "email", "withdraw",
        occurred_at=instant,
    )  # fmt: skip
    _record(
        platform, ledger, customers.maria_crm_record, "marketing_email", "email", "grant", occurred_at=instant
    )
    assert ledger.state(customers.maria)["marketing_email"].holds is False


def test_legitimate_interest_holds_without_events_and_stops_after_an_objection(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    analytics_fields = ("city", "email")
    assert ledger.state(customers.ana)["analytics"].holds is True
    assert set(ledger.withheld(customers.ana, "analytics", analytics_fields)) == {"email"}

    _record(platform, ledger, customers.ana_record, "analytics", "any", "withdraw")
    assert ledger.state(customers.ana)["analytics"].holds is False
    assert set(ledger.withheld(customers.ana, "analytics", analytics_fields)) == {"city", "email"}


def test_contract_purposes_hold_whatever_the_customer_said(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    _record(platform, ledger, customers.ana_record, "service", "any", "withdraw")
    _record(platform, ledger, customers.ana_record, "billing", "any", "withdraw")
    states = ledger.state(customers.ana)
    assert states["service"].holds and states["billing"].holds
    assert ledger.withheld(customers.ana, "support", ("email", "phone")) == {}


@pytest.mark.parametrize(
    ("purpose", "channel", "action", "source", "message"),
    [
        ("newsletters", "email", "grant", "api", "unknown purpose"),
        ("marketing_email", "phone", "grant", "api", "takes channel"),
        ("marketing_email", "email", "maybe", "api", "unknown action"),
        ("marketing_email", "email", "grant", "fax", "unknown source"),
    ],
)
def test_unknown_names_are_refused_with_the_allowed_values(
    platform: Platform, ledger: ConsentLedger, customers: Customers,
    purpose: str, channel: str, action: str, source: str, message: str,
) -> None:  # fmt: skip
    with pytest.raises(InvalidConsent, match=message):
        _record(platform, ledger, customers.ana_record, purpose, channel, action, source=source)
    assert _audit_count(platform) == 0


def test_impossible_times_are_refused(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    now = datetime.now(UTC)
    with pytest.raises(InvalidConsent, match="future"):
        _record(
            platform, ledger, customers.ana_record, "marketing_email", "email", "grant",
            occurred_at=now + timedelta(hours=1),
        )  # fmt: skip
    with pytest.raises(InvalidConsent, match="expires_at"):
        _record(
            platform, ledger, customers.ana_record, "marketing_email", "email", "withdraw",
            expires_at=now + timedelta(days=1),
        )  # fmt: skip
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 0


def test_an_event_for_an_unknown_record_is_refused(platform: Platform, ledger: ConsentLedger) -> None:
    with pytest.raises(UnknownSubject):
        _record(platform, ledger, uuid.uuid4(), "marketing_email", "email", "grant")


def test_every_event_is_audited_once_and_rolls_back_with_its_transaction(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    event = _record(platform, ledger, customers.maria_crm_record, "marketing_email", "email", "grant")
    with platform.db.read() as session:
        entries = (
            session.execute(select(AuditEntry).where(AuditEntry.action == "consent.record")).scalars().all()
        )
        assert len(entries) == 1
        assert str(event.id) in entries[0].details
        assert str(customers.maria_crm_record) in entries[0].subjects
        assert str(customers.maria) in entries[0].subjects

    with pytest.raises(RuntimeError), platform.db.transaction() as session:
        ledger.record(session, customers.ana_record, "marketing_email", "email", "grant", "api")
        raise RuntimeError("the surrounding write failed")
    assert _audit_count(platform) == 1
    assert ledger.history(customers.ana) == []


def test_a_changed_text_needs_a_new_version_and_old_versions_are_kept(
    platform: Platform, ledger: ConsentLedger
) -> None:
    with platform.db.transaction() as session:
        ledger.sync_texts(session)
    current = ledger.catalog.purposes["marketing_email"]
    reworded = replace(current, text="Send me everything.")
    changed = ConsentLedger(platform.db, _with_purpose(ledger.catalog, reworded))
    with pytest.raises(InvalidConsent, match="text_version"), platform.db.transaction() as session:
        changed.sync_texts(session)

    versioned = ConsentLedger(platform.db, _with_purpose(ledger.catalog, replace(reworded, text_version=2)))
    with platform.db.transaction() as session:
        versioned.sync_texts(session)
    with platform.db.read() as session:
        texts = dict(
            session.execute(
                select(ConsentPurposeText.version, ConsentPurposeText.text).where(
                    ConsentPurposeText.purpose == "marketing_email"
                )
            ).all()
        )
    assert texts == {1: current.text, 2: "Send me everything."}


def test_counts_tell_per_purpose_how_many_customers_it_holds_for(
    platform: Platform, ledger: ConsentLedger, customers: Customers
) -> None:
    _record(platform, ledger, customers.maria_crm_record, "marketing_email", "email", "grant")
    _record(platform, ledger, _only_record(platform, customers.john), "analytics", "any", "withdraw")
    counts = ledger.counts()
    assert counts["marketing_email"] == {"holds": 1, "granted": 1, "withdrawn": 0, "expired": 0}
    assert counts["analytics"] == {"holds": 2, "granted": 0, "withdrawn": 1, "expired": 0}
    assert counts["service"]["holds"] == 3
    assert counts["marketing_phone"]["holds"] == 0


# -- derive, the pure rule ---------------------------------------------------------------------------

CATALOG = ConsentCatalog.default()
BASE = datetime(2025, 1, 1, tzinfo=UTC)
RANK = {"grant": 0, "expire": 1, "withdraw": 2}
_KEYS = [(p.name, c) for p in CATALOG.purposes.values() for c in p.channels]


@st.composite
def _events(draw: st.DrawFn) -> list[RecordedEvent]:
    out = []
    for _ in range(draw(st.integers(0, 25))):
        purpose, channel = draw(st.sampled_from(_KEYS))
        occurred = BASE + timedelta(hours=draw(st.integers(0, 48)))
        action = draw(st.sampled_from(["grant", "withdraw", "expire"]))
        out.append(
            RecordedEvent(
                uuid.uuid4(), uuid.uuid4(), purpose, channel, action, 1, "api", occurred, occurred, None, "t"
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(_events())
def test_derive_takes_the_last_event_by_time_then_rank_per_purpose_and_channel(
    events: list[RecordedEvent],
) -> None:
    states = derive(CATALOG, events, BASE + timedelta(days=10))
    for purpose in CATALOG.purposes.values():
        statuses = {}
        for channel_state in states[purpose.name].channels:
            mine = [e for e in events if (e.purpose, e.channel) == (purpose.name, channel_state.channel)]
            if not mine:
                assert channel_state.status is Status.NONE
                statuses[channel_state.channel] = Status.NONE
                continue
            last = max(mine, key=lambda e: (e.occurred_at, RANK[e.action]))
            expected = {"grant": Status.GRANTED, "withdraw": Status.WITHDRAWN, "expire": Status.EXPIRED}
            assert channel_state.status is expected[last.action]
            assert channel_state.since == last.occurred_at
            statuses[channel_state.channel] = channel_state.status
        values = set(statuses.values())
        if purpose.lawful_basis.value == "consent":
            assert states[purpose.name].holds is (Status.GRANTED in values)
        elif purpose.lawful_basis.value == "legitimate_interest":
            assert states[purpose.name].holds is (Status.WITHDRAWN not in values)
        else:
            assert states[purpose.name].holds is True


def test_derive_expires_a_grant_at_its_expiry() -> None:
    grant = RecordedEvent(
        uuid.uuid4(), uuid.uuid4(), "marketing_email", "email", "grant", 1, "api", BASE, BASE,
        BASE + timedelta(days=1), "t",
    )  # fmt: skip
    assert derive(CATALOG, [grant], BASE + timedelta(hours=23))["marketing_email"].holds is True
    assert derive(CATALOG, [grant], BASE + timedelta(days=1))["marketing_email"].holds is False


def _with_purpose(catalog: ConsentCatalog, purpose: ConsentPurpose) -> ConsentCatalog:
    return replace(catalog, purposes={**catalog.purposes, purpose.name: purpose})


def _only_record(platform: Platform, entity_id: uuid.UUID) -> uuid.UUID:
    with platform.db.read() as session:
        (record_id,) = entity_records(session, entity_id)
    return record_id
