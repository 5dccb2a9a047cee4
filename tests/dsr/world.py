"""The profiles test world (Maria in the CRM and the helpdesk, John, Ana) plus a billing system that knows
Maria too, with invoices under the bookkeeping obligation — what an erasure must keep, pseudonymized."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.records import RecordRepository, SourceRepository
from tests.profiles.fixtures import Customers, seed_customers

BILLING = """
name = "billing"
line_of_business = "billing"
default_country = "GB"
datetime_formats = ["%Y-%m-%d"]
[records.fields]
AccountNo = "source_record_id"
FirstName = "first_name"
LastName = "last_name"
Email = "email"
[interactions.fields]
DocNo = "interaction_id"
AccountNo = "source_record_id"
DocDate = "occurred_at"
DocType = "kind"
Amount = "amount"
Currency = "currency"
Text = "summary"
[interactions.defaults]
channel = "email"
direction = "outbound"
department = "billing"
"""
BILLING_RECORDS = """AccountNo,FirstName,LastName,Email
B-1,Maria,Garcia,maria.garcia@example.com
"""
BILLING_DOCUMENTS = """DocNo,AccountNo,DocDate,DocType,Amount,Currency,Text
INV-1,B-1,2024-11-02,invoice,129.90,GBP,Invoice for Maria Garcia at 12 High Street
PAY-1,B-1,2024-11-20,payment,129.90,GBP,Payment received from Maria Garcia
"""


@dataclass(frozen=True)
class World:
    customers: Customers
    maria: uuid.UUID
    maria_billing_record: uuid.UUID

    @property
    def maria_records(self) -> tuple[uuid.UUID, ...]:
        c = self.customers
        return (c.maria_crm_record, c.maria_helpdesk_record, self.maria_billing_record)


def seed_world(platform: Platform, tmp_path: Path) -> World:
    customers = seed_customers(platform, tmp_path)
    ingest = IngestService(platform.db, platform.vault)
    ingest.register_source(BILLING)
    for name, text, kind in (
        ("billing.csv", BILLING_RECORDS, "records"),
        ("billing_docs.csv", BILLING_DOCUMENTS, "interactions"),
    ):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        summary = ingest.ingest_file("billing", path, kind=kind)
        assert summary.rejected == 0, summary.rejections
    with platform.db.read() as session:
        billing_id = SourceRepository(session).id_of("billing")
        found = RecordRepository(session, platform.vault).find_by_natural_key(billing_id, "B-1")
        assert found is not None
    identity = IdentityService(platform.db, platform.vault)
    if identity.entity_of(found) != identity.entity_of(customers.maria_crm_record):
        identity.merge(customers.maria_crm_record, found, actor="test", reason="same customer")
    maria = identity.entity_of(found)
    assert maria == identity.entity_of(customers.maria_helpdesk_record)
    return World(customers, maria, found)
