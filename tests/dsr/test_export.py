"""The data-subject export (Art 15/20), on SQLite and PostgreSQL: everything held about one customer is in
it (records with every attribute and their versions, interactions with content, consent, the access
log, the golden profile), nothing about anyone else is, the manifest vouches for every file, and the
export is audited without a single personal value in the log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tomllib
import uuid
import zipfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cdp.access.gate import AccessDenied, AccessGate, Actor
from cdp.access.policy import FieldPolicy
from cdp.audit import ActorKind, AuditActor, acting_as
from cdp.consent.ledger import ConsentLedger
from cdp.db.models import AuditEntry
from cdp.dsr.export import FILE_ORDER, ExportBuilder, ExportBundle
from cdp.platform import Platform
from cdp.profiles.service import ProfileNotFound, ProfileService
from cdp.sources.ingest import IngestService
from tests.dsr.world import World, seed_world

DPO = Actor("user:dpo-1", "dpo")
SUPPORT = Actor("client:support", "support_agent")
CRM_UPDATE = """LeadId,FirstName,LastName,EMail,Mobile,DOB,No,Street,PostCode,Town,Segment
L-1,Maria,García,maria.garcia@example.com,07912 345678,14/07/1961,12,High Street,SW1A 1AA,London,platinum
L-2,John,Smith,john.smith@example.com,+44 7400 123456,01/02/1980,3,Mill Road,M1 1AE,Manchester,silver
"""
OTHER_PEOPLE = (
    "john.smith",
    "Smith",
    "Manchester",
    "7400123456",  # John's phone as digits (four digits alone turn up in SHA-256s and ids by chance)
    "Hello",  # John's CRM activity
    "ana.silva",
    "Silva",
    "Cannot sign in",  # Ana's ticket
)


class Export:
    """An opened export: its files as text, JSON and CSV rows."""

    def __init__(self, bundle: ExportBundle) -> None:
        self.bundle = bundle
        self.zip = zipfile.ZipFile(io.BytesIO(bundle.content))
        self.raw = {name: self.zip.read(name) for name in self.zip.namelist()}
        self.text = {name: data.decode("utf-8") for name, data in self.raw.items()}
        self.doc: dict[str, Any] = json.loads(self.text["export.json"])
        self.manifest: dict[str, Any] = json.loads(self.text["manifest.json"])

    def rows(self, name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.text[name], newline="")))


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    world = seed_world(platform, tmp_path)
    # A second version of Maria's CRM record: new mobile, new segment.
    path = tmp_path / "crm_update.csv"
    path.write_text(CRM_UPDATE, encoding="utf-8")
    summary = IngestService(platform.db, platform.vault).ingest_file("crm", path, kind="records")
    assert summary.rejected == 0
    ledger = ConsentLedger(platform.db)
    with platform.db.transaction() as session:
        ledger.record(
            session,
            world.customers.maria_crm_record,
            "marketing_email",
            "email",
            "grant",
            "web_form",
            occurred_at=datetime(2025, 1, 1, 9, tzinfo=UTC),
            actor="customer:x",
        )
        ledger.record(
            session,
            world.customers.maria_helpdesk_record,
            "marketing_email",
            "email",
            "withdraw",
            "api",
            occurred_at=datetime(2025, 2, 1, 9, tzinfo=UTC),
            actor="user:agent-7",
        )
        john_record = _records_of(platform, world.customers.john)[0]
        ledger.record(session, john_record, "marketing_phone", "sms", "grant", "web_form", actor="customer:y")
    return world


@pytest.fixture
def profiles(platform: Platform) -> ProfileService:
    return ProfileService(
        platform.db, platform.vault, AccessGate(FieldPolicy.default(), ConsentLedger(platform.db))
    )


@pytest.fixture
def builder(platform: Platform, profiles: ProfileService) -> ExportBuilder:
    return ExportBuilder(platform.db, platform.vault, profiles)


def _records_of(platform: Platform, entity_id: uuid.UUID) -> list[uuid.UUID]:
    from cdp.consent.ledger import entity_records

    with platform.db.read() as session:
        return entity_records(session, entity_id)


def _export(builder: ExportBuilder, world: World, **kwargs: Any) -> Export:
    with acting_as(AuditActor("user:dpo-1", ActorKind.USER, role="dpo")):
        return Export(builder.build(DPO, world.maria, **kwargs))


def _audit(platform: Platform, action: str) -> list[AuditEntry]:
    with platform.db.read() as session:
        return list(
            session.execute(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.recorded_at)
            ).scalars()
        )


def test_the_export_holds_every_attribute_of_every_record_with_original_and_normalized_values(
    builder: ExportBuilder, world: World
) -> None:
    export = _export(builder, world)
    records = {r["record_id"]: r for r in export.doc["records"]}
    assert set(records) == {str(r) for r in world.maria_records}

    crm = records[str(world.customers.maria_crm_record)]
    assert crm["source"] == "crm" and crm["line_of_business"] == "sales"
    assert crm["source_record_id"] == "L-1" and crm["version"] == 2
    assert crm["fields"]["last_name"] == "García"
    assert crm["fields"]["phone"] == "07912 345678"
    assert crm["fields"]["date_of_birth"] == "1961-07-14"
    assert crm["fields"]["address_line1"] == "High Street" and crm["fields"]["postcode"] == "SW1A 1AA"
    assert set(crm["fields"]) >= {"national_id", "full_name", "state"}  # absent ones are listed too
    assert crm["attributes"] == {"segment": "platinum"}
    assert "+447912345678" in json.dumps(crm["normalized"])
    for key in ("ingested_at", "updated_at"):
        assert crm[key].endswith("+00:00")

    helpdesk = records[str(world.customers.maria_helpdesk_record)]
    assert helpdesk["fields"]["national_id"] == "QQ123456C" and helpdesk["version"] == 1

    csv_rows = {row["record_id"]: row for row in export.rows("records.csv")}
    assert set(csv_rows) == set(records)
    crm_row = csv_rows[str(world.customers.maria_crm_record)]
    assert crm_row["last_name"] == "García" and crm_row["phone"] == "07912 345678"
    assert crm_row["source_record_id"] == "L-1" and crm_row["line_of_business"] == "sales"
    assert json.loads(crm_row["attributes"]) == {"segment": "platinum"}
    assert "+447912345678" in crm_row["normalized"]
    assert csv_rows[str(world.customers.maria_helpdesk_record)]["national_id"] == "QQ123456C"


def test_the_export_holds_each_records_earlier_versions(builder: ExportBuilder, world: World) -> None:
    export = _export(builder, world)
    crm = next(r for r in export.doc["records"] if r["record_id"] == str(world.customers.maria_crm_record))
    assert len(crm["versions"]) == 1
    old = crm["versions"][0]
    assert old["version"] == 1 and old["fields"]["phone"] == "07911 123456"
    assert old["attributes"] == {"segment": "gold"} and old["source_record_id"] == "L-1"
    assert old["valid_from"] and old["replaced_at"] and old["valid_from"] <= old["replaced_at"]

    (row,) = export.rows("record_versions.csv")
    assert row["record_id"] == str(world.customers.maria_crm_record) and row["version"] == "1"
    assert row["phone"] == "07911 123456" and json.loads(row["attributes"]) == {"segment": "gold"}


def test_the_export_holds_every_interaction_with_its_content(builder: ExportBuilder, world: World) -> None:
    export = _export(builder, world)
    items = export.doc["interactions"]
    summaries = {item["content"]["summary"] for item in items}
    assert summaries == {
        "Welcome pack",
        "Renewal call",
        "Late delivery",
        "Refund",
        "Invoice for Maria Garcia at 12 High Street",
        "Payment received from Maria Garcia",
    }
    assert [item["occurred_at"] for item in items] == sorted(item["occurred_at"] for item in items)
    ticket = next(item for item in items if item["content"]["summary"] == "Late delivery")
    assert ticket["content"]["content"] == "My parcel is two weeks late"
    assert ticket["source"] == "helpdesk" and ticket["record_id"] == str(
        world.customers.maria_helpdesk_record
    )
    assert ticket["source_interaction_id"] == "T-1" and ticket["channel"] == "chat"
    invoice = next(item for item in items if item["source_interaction_id"] == "INV-1")
    assert invoice["content"]["amount"] == "129.90" and invoice["content"]["currency"] == "GBP"

    rows = export.rows("interactions.csv")
    assert len(rows) == 6
    row = next(r for r in rows if r["source_interaction_id"] == "T-2")
    assert row["content"] == "Please refund order 42" and row["summary"] == "Refund"
    assert next(r for r in rows if r["source_interaction_id"] == "INV-1")["amount"] == "129.90"


def test_the_export_holds_the_consent_history_the_current_state_and_the_texts_agreed_to(
    builder: ExportBuilder, world: World
) -> None:
    export = _export(builder, world)
    consent = export.doc["consent"]
    events = consent["events"]
    assert [(e["action"], e["source"], e["recorded_by"]) for e in events] == [
        ("grant", "web_form", "customer"),
        ("withdraw", "api", "user"),  # the member of staff's id is not handed out
    ]
    assert "agent-7" not in export.text["export.json"] + export.text["consent_events.csv"]
    marketing = next(s for s in consent["state"] if s["purpose"] == "marketing_email")
    assert marketing["holds"] is False and marketing["channels"][0]["status"] == "withdrawn"
    assert {(t["purpose"], t["version"]) for t in consent["texts"]} == {("marketing_email", 1)}
    assert "unsubscribe" in consent["texts"][0]["text"]

    rows = export.rows("consent_events.csv")
    assert [(r["purpose"], r["channel"], r["action"]) for r in rows] == [
        ("marketing_email", "email", "grant"),
        ("marketing_email", "email", "withdraw"),
    ]
    assert rows[0]["occurred_at"] == "2025-01-01T09:00:00+00:00"


def test_the_export_holds_the_access_log_without_staff_ids(
    builder: ExportBuilder, profiles: ProfileService, world: World
) -> None:
    with acting_as(AuditActor("client:support", ActorKind.CLIENT, role="support_agent")):
        profiles.read(SUPPORT, world.maria, "support")
        profiles.read(SUPPORT, world.customers.john, "support")  # not Maria's business
    export = _export(builder, world)
    log = export.doc["access_log"]
    assert [(e["action"], e["role"], e["purpose"], e["outcome"]) for e in log] == [
        ("profile.read", "support_agent", "support", "success"),
        ("profile.read", "dpo", "dsr", "success"),  # the export's own read
    ]
    rows = export.rows("access_log.csv")
    assert [(r["role"], r["purpose"]) for r in rows] == [("support_agent", "support"), ("dpo", "dsr")]
    assert list(rows[0]) == ["at", "action", "department", "role", "purpose", "outcome"]
    for name, text in export.text.items():
        assert "client:support" not in text and "dpo-1" not in text, name


def test_the_export_holds_the_golden_profile_with_provenance(builder: ExportBuilder, world: World) -> None:
    export = _export(builder, world)
    profile = export.doc["profile"]
    assert profile["id"] == str(world.maria) and profile["purpose"] == "dsr"
    assert profile["redactions"] == []
    email = profile["attributes"]["email"]
    assert email["value"] == "maria.garcia@example.com" and email["mode"] == "clear"
    assert email["source"] in {"crm", "helpdesk", "billing"} and email["record_id"] and email["strategy"]
    assert profile["attributes"]["national_id"]["value"] == "QQ123456C"


def test_nothing_about_another_customer_is_in_the_export(
    builder: ExportBuilder, platform: Platform, world: World
) -> None:
    export = _export(builder, world)
    others = [str(r) for r in (*_records_of(platform, world.customers.john), world.customers.ana_record)]
    others += [str(world.customers.john), str(world.customers.ana)]
    for name, text in export.text.items():
        for needle in (*OTHER_PEOPLE, *others):
            assert needle not in text, (name, needle)


def test_the_manifest_names_every_file_with_its_size_and_sha256(builder: ExportBuilder, world: World) -> None:
    request_id = uuid.uuid4()
    export = _export(builder, world, request_id=request_id)
    assert export.zip.namelist() == list(FILE_ORDER)
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in export.zip.infolist())
    manifest = export.manifest
    assert manifest == export.bundle.manifest
    assert manifest["customer_id"] == str(world.maria) and manifest["request_id"] == str(request_id)
    assert manifest["format_version"] == 1 and manifest["generated_at"].endswith("+00:00")
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert set(listed) == set(FILE_ORDER) - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["size"] == len(export.raw[name])
        assert entry["sha256"] == hashlib.sha256(export.raw[name]).hexdigest()
    assert manifest["counts"] == {
        "records": 3,
        "record_versions": 1,
        "interactions": 6,
        "consent_events": 2,
        "access_log": 1,
    }
    assert export.bundle.sha256 == hashlib.sha256(export.bundle.content).hexdigest()
    assert export.doc["request_id"] == str(request_id)
    readme = export.text["README.txt"]
    assert all(name in readme for name in FILE_ORDER if name != "README.txt")


def test_the_export_is_audited_with_ids_names_and_counts_only(
    builder: ExportBuilder, platform: Platform, world: World
) -> None:
    request_id = uuid.uuid4()
    export = _export(builder, world, request_id=request_id)
    (entry,) = _audit(platform, "dsr.export")
    assert entry.outcome == "success" and entry.purpose == "dsr" and entry.actor == "user:dpo-1"
    assert set(json.loads(entry.subjects)) == {str(world.maria), *(str(r) for r in world.maria_records)}
    assert {"email", "national_id", "interaction_content", "consent", "access_log"} <= set(
        json.loads(entry.fields)
    )
    details = json.loads(entry.details)
    assert details["records"] == 3 and details["interactions"] == 6 and details["consent_events"] == 2
    assert details["request_id"] == str(request_id) and details["sha256"] == export.bundle.sha256
    logged = entry.subjects + entry.fields + entry.details
    for value in ("Maria", "García", "Garcia", "maria.garcia", "QQ123456C", "07911", "London", "parcel"):
        assert value not in logged


def test_a_customer_exports_their_own_data_and_nobody_elses(
    builder: ExportBuilder, platform: Platform, world: World
) -> None:
    maria = Actor("customer:x", "customer", customer_record_id=world.customers.maria_helpdesk_record)
    export = Export(builder.build(maria, world.maria, purpose="self_service"))
    assert len(export.doc["records"]) == 3 and export.doc["profile"]["purpose"] == "self_service"
    with pytest.raises(ProfileNotFound):
        builder.build(maria, world.customers.john, purpose="self_service")
    assert [e.outcome for e in _audit(platform, "dsr.export")] == ["success", "not_found"]


def test_readers_who_may_not_see_everything_get_no_export(
    builder: ExportBuilder, platform: Platform, world: World
) -> None:
    with pytest.raises(AccessDenied):
        builder.build(SUPPORT, world.maria, purpose="support")
    with pytest.raises(AccessDenied):
        builder.build(SUPPORT, world.maria, purpose="dsr")
    with pytest.raises(AccessDenied):
        builder.build(Actor("user:c", "compliance_officer"), world.maria, purpose="compliance")
    assert {e.outcome for e in _audit(platform, "dsr.export")} == {"denied"}


def test_an_unknown_customer_is_not_found_and_the_refusal_is_audited(
    builder: ExportBuilder, platform: Platform, world: World
) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(ProfileNotFound):
        builder.build(DPO, unknown)
    (entry,) = _audit(platform, "dsr.export")
    assert entry.outcome == "not_found" and json.loads(entry.subjects) == [str(unknown)]


def test_a_policy_that_masks_anything_from_the_reader_refuses_the_export(
    platform: Platform, world: World
) -> None:
    document = tomllib.loads(resources.files("cdp.access").joinpath("field_policy.toml").read_text("utf-8"))
    document["roles"]["dpo"]["fields"]["national_id"] = "masked"
    gate = AccessGate(FieldPolicy.from_mapping(document))
    builder = ExportBuilder(platform.db, platform.vault, ProfileService(platform.db, platform.vault, gate))
    with pytest.raises(AccessDenied, match="every field in clear"):
        builder.build(DPO, world.maria)
    (entry,) = _audit(platform, "dsr.export")
    assert entry.outcome == "denied" and json.loads(entry.details) == {"reason": "incomplete_disclosure"}
