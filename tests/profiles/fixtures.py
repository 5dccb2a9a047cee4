"""Two lines of business that know the same customers: a sales CRM and a support helpdesk, with their
contact histories. Maria is in both (merged into one customer by a data-steward decision, so the tests
do not depend on the match model); John is in the CRM only; Ana is in the helpdesk only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.records import RecordRepository, SourceRepository

CRM = """
name = "crm"
line_of_business = "sales"
default_country = "GB"
date_formats = ["%d/%m/%Y"]
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
LeadId = "source_record_id"
FirstName = "first_name"
LastName = "last_name"
EMail = "email"
Mobile = "phone"
DOB = "date_of_birth"
No = "street_number"
Street = "address_line1"
PostCode = "postcode"
Town = "city"
[records.attributes]
Segment = "segment"
[interactions.fields]
ActivityId = "interaction_id"
LeadId = "source_record_id"
At = "occurred_at"
Channel = "channel"
Subject = "summary"
Kind = "kind"
[interactions.defaults]
direction = "outbound"
"""

HELPDESK = """
name = "helpdesk"
line_of_business = "support"
default_country = "GB"
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
CustomerNo = "source_record_id"
FirstName = "first_name"
LastName = "last_name"
Email = "email"
Phone = "phone"
NationalId = "national_id"
[interactions.fields]
TicketId = "interaction_id"
CustomerNo = "source_record_id"
Opened = "occurred_at"
Channel = "channel"
Subject = "summary"
Body = "content"
[interactions.defaults]
direction = "inbound"
kind = "complaint"
"""

CRM_RECORDS = """LeadId,FirstName,LastName,EMail,Mobile,DOB,No,Street,PostCode,Town,Segment
L-1,Maria,García,maria.garcia@example.com,07911 123456,14/07/1961,12,High Street,SW1A 1AA,London,gold
L-2,John,Smith,john.smith@example.com,+44 7400 123456,01/02/1980,3,Mill Road,M1 1AE,Manchester,silver
"""
CRM_ACTIVITIES = """ActivityId,LeadId,At,Channel,Subject,Kind
A-1,L-1,2024-03-01 09:00,email,Welcome pack,contact
A-2,L-1,2025-06-10 14:30,phone,Renewal call,purchase
A-3,L-2,2024-05-05 08:00,email,Hello,contact
"""
HELPDESK_RECORDS = """CustomerNo,FirstName,LastName,Email,Phone,NationalId
H-7,Maria,Garcia,maria.garcia@example.com,+44 7911 123456,QQ123456C
H-8,Ana,Silva,ana.silva@example.org,,
"""
HELPDESK_TICKETS = """TicketId,CustomerNo,Opened,Channel,Subject,Body
T-1,H-7,2025-01-15 11:00,chat,Late delivery,My parcel is two weeks late
T-2,H-7,2025-07-01 16:45,email,Refund,Please refund order 42
T-3,H-8,2025-02-02 10:00,phone,Password,Cannot sign in
"""


@dataclass(frozen=True)
class Customers:
    maria: uuid.UUID
    john: uuid.UUID
    ana: uuid.UUID
    maria_crm_record: uuid.UUID
    maria_helpdesk_record: uuid.UUID
    ana_record: uuid.UUID


def seed_customers(platform: Platform, tmp_path: Path) -> Customers:
    ingest = IngestService(platform.db, platform.vault)
    ingest.register_source(CRM)
    ingest.register_source(HELPDESK)
    for name, text, source, kind in (
        ("crm.csv", CRM_RECORDS, "crm", "records"),
        ("crm_activities.csv", CRM_ACTIVITIES, "crm", "interactions"),
        ("helpdesk.csv", HELPDESK_RECORDS, "helpdesk", "records"),
        ("tickets.csv", HELPDESK_TICKETS, "helpdesk", "interactions"),
    ):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        summary = ingest.ingest_file(source, path, kind=kind)
        assert summary.rejected == 0, summary.rejections
    with platform.db.read() as session:
        records = RecordRepository(session, platform.vault)
        source_ids = {}
        for source in ("crm", "helpdesk"):
            source_ids[source] = SourceRepository(session).id_of(source)

        def record(source: str, source_record_id: str) -> uuid.UUID:
            found = records.find_by_natural_key(source_ids[source], source_record_id)
            assert found is not None
            return found

        maria_crm, maria_help = record("crm", "L-1"), record("helpdesk", "H-7")
        john, ana = record("crm", "L-2"), record("helpdesk", "H-8")
    identity = IdentityService(platform.db, platform.vault)
    maria = identity.merge(maria_crm, maria_help, actor="test", reason="same customer")
    john_entity, ana_entity = identity.entity_of(john), identity.entity_of(ana)
    assert len({maria, john_entity, ana_entity}) == 3
    return Customers(maria, john_entity, ana_entity, maria_crm, maria_help, ana)
