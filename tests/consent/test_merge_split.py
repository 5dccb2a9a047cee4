"""Consent across manual merges and splits.

Documented rule: a merge unites two records' histories; a split gives each side back only its own events.
Consent state is derived from the member records' events, so it follows membership by itself; what the
merge or split adds is one ``consent.recompute`` audit entry, in its own transaction, naming the customers
whose purposes changed and how.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from cdp.consent.ledger import ConsentLedger, entity_records
from cdp.db.models import AuditEntry
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from tests.profiles.fixtures import Customers, seed_customers

FIELDS = ("email", "first_name", "phone")


@pytest.fixture
def customers(platform: Platform, tmp_path: Path) -> Customers:
    return seed_customers(platform, tmp_path)


def _recomputes(platform: Platform) -> list[AuditEntry]:
    with platform.db.read() as session:
        return list(
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.action == "consent.recompute")
                .order_by(AuditEntry.recorded_at)
            ).scalars()
        )


def _john_record(platform: Platform, customers: Customers) -> uuid.UUID:
    with platform.db.read() as session:
        (record_id,) = entity_records(session, customers.john)
    return record_id


def test_a_merge_unites_histories_and_a_split_gives_each_side_back_only_its_own_events(
    platform: Platform, customers: Customers
) -> None:
    """A merge unites two records' histories; a split gives each side back only its own events."""
    ledger = ConsentLedger(platform.db)
    identity = IdentityService(platform.db, platform.vault)
    john_record = _john_record(platform, customers)
    with platform.db.transaction() as session:
        ledger.record(session, john_record, "marketing_email", "email", "grant", "web_form")
    assert set(ledger.withheld(customers.ana, "marketing", FIELDS)) == set(FIELDS)

    merged = identity.merge(john_record, customers.ana_record, actor="steward", reason="same person")
    assert ledger.state(merged)["marketing_email"].holds is True
    assert set(ledger.withheld(merged, "marketing", FIELDS)) == {"phone"}
    (entry,) = _recomputes(platform)
    changed = json.loads(entry.details)["changed"]
    assert changed == {str(merged): {"marketing_email": [False, True]}}
    subjects = json.loads(entry.subjects)
    assert {str(merged), str(john_record), str(customers.ana_record)} <= set(subjects)

    identity.split(merged, [customers.ana_record], actor="steward", reason="different people")
    ana_entity, john_entity = identity.entity_of(customers.ana_record), identity.entity_of(john_record)
    assert ana_entity != john_entity
    assert ledger.state(ana_entity)["marketing_email"].holds is False
    assert set(ledger.withheld(ana_entity, "marketing", FIELDS)) == set(FIELDS)
    assert ledger.state(john_entity)["marketing_email"].holds is True
    first, second = _recomputes(platform)
    assert first.id == entry.id
    changed = json.loads(second.details)["changed"]
    assert changed == {str(ana_entity): {"marketing_email": [True, False]}}
    assert str(customers.ana_record) in json.loads(second.subjects)


def test_a_merge_that_changes_no_consent_records_no_recompute(
    platform: Platform, customers: Customers
) -> None:
    ledger = ConsentLedger(platform.db)
    identity = IdentityService(platform.db, platform.vault)
    john_record = _john_record(platform, customers)
    identity.merge(john_record, customers.ana_record, actor="steward", reason="same person")
    assert _recomputes(platform) == []

    with platform.db.transaction() as session:
        ledger.record(session, john_record, "marketing_email", "email", "grant", "api")
        ledger.record(session, customers.ana_record, "marketing_email", "email", "grant", "api")
    merged = identity.entity_of(john_record)
    identity.split(merged, [customers.ana_record], actor="steward", reason="different people")
    assert _recomputes(platform) == []
