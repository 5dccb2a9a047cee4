"""Consent taken from ingestion sources: a mapping declares which column carries a customer's opt-in;
re-ingesting the same file adds no event, a changed opt-in adds one, and an unreadable value quarantines
the row."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.audit import AuditActor, acting_as
from cdp.consent.ledger import ConsentLedger
from cdp.db.models import AuditEntry, ConsentEvent
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.mapping import MappingError, SourceMapping
from cdp.sources.records import RecordRepository, SourceRepository

MAPPING = """
name = "signups"
line_of_business = "marketing"
default_country = "GB"
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
Id = "source_record_id"
Email = "email"
FirstName = "first_name"
[records.consent.marketing_email]
column = "OptIn"
channel = "email"
at = "OptInAt"
[records.consent.marketing_phone]
column = "SmsOk"
channel = "sms"
"""

HEADER = "Id,Email,FirstName,OptIn,OptInAt,SmsOk\n"


def _service(platform: Platform) -> IngestService:
    ingest = IngestService(platform.db, platform.vault)
    ingest.register_source(MAPPING)
    return ingest


def _ingest(ingest: IngestService, tmp_path: Path, rows: str, name: str = "signups.csv") -> dict[str, object]:
    path = tmp_path / name
    path.write_text(HEADER + rows, encoding="utf-8")
    summary = ingest.ingest_file("signups", path)
    return {"rejected": summary.rejected, "reasons": dict(summary.reasons), "rejections": summary.rejections}


def _events(platform: Platform) -> list[ConsentEvent]:
    with platform.db.read() as session:
        return list(session.execute(select(ConsentEvent).order_by(ConsentEvent.recorded_at)).scalars())


def _record_id(platform: Platform, source_record_id: str) -> uuid.UUID:
    with platform.db.read() as session:
        source_id = SourceRepository(session).id_of("signups")
        found = RecordRepository(session, platform.vault).find_by_natural_key(source_id, source_record_id)
    assert found is not None
    return found


def test_opt_in_columns_become_import_events_once_and_again_only_when_they_change(
    platform: Platform, tmp_path: Path
) -> None:
    ingest = _service(platform)
    rows = (
        "S-1,ann@example.com,Ann,yes,2025-03-01 10:00,\n"
        "S-2,bob@example.com,Bob,N,,1\n"
        "S-3,cat@example.com,Cat,,,\n"
    )
    assert _ingest(ingest, tmp_path, rows)["rejected"] == 0
    events = _events(platform)
    said = {(e.record_id, e.purpose, e.channel): e for e in events}
    ann, bob = _record_id(platform, "S-1"), _record_id(platform, "S-2")
    assert set(said) == {(ann, "marketing_email", "email"), (bob, "marketing_email", "email"),
                         (bob, "marketing_phone", "sms")}  # fmt: skip
    assert said[(ann, "marketing_email", "email")].action == "grant"
    assert said[(ann, "marketing_email", "email")].occurred_at == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert said[(bob, "marketing_email", "email")].action == "withdraw"
    assert {e.source for e in events} == {"import"}
    assert {e.actor for e in events} == {"system:ingest"}

    ledger = ConsentLedger(platform.db)
    identity = IdentityService(platform.db, platform.vault)
    assert ledger.state(identity.entity_of(ann))["marketing_email"].holds is True
    assert ledger.state(identity.entity_of(bob))["marketing_email"].holds is False
    assert ledger.state(identity.entity_of(bob))["marketing_phone"].holds is True

    _ingest(ingest, tmp_path, rows, "again.csv")
    assert len(_events(platform)) == 3

    changed = rows.replace("S-1,ann@example.com,Ann,yes,2025-03-01 10:00,", "S-1,ann@example.com,Ann,no,,")
    _ingest(ingest, tmp_path, changed, "changed.csv")
    events = _events(platform)
    assert len(events) == 4
    assert (events[-1].record_id, events[-1].action) == (ann, "withdraw")
    assert ledger.state(identity.entity_of(ann))["marketing_email"].holds is False
    _ingest(ingest, tmp_path, changed, "changed_again.csv")
    assert len(_events(platform)) == 4


def test_each_import_event_is_audited_in_the_chunk_and_names_the_scope_actor(
    platform: Platform, tmp_path: Path
) -> None:
    ingest = _service(platform)
    with acting_as(AuditActor.operator("op-7")):
        _ingest(ingest, tmp_path, "S-1,ann@example.com,Ann,1,,\n")
    (event,) = _events(platform)
    assert event.actor == AuditActor.operator("op-7").principal
    with platform.db.read() as session:
        entries = (
            session.execute(select(AuditEntry).where(AuditEntry.action == "consent.record")).scalars().all()
        )
    assert len(entries) == 1
    assert json.loads(entries[0].details)["source"] == "import"
    assert str(event.record_id) in json.loads(entries[0].subjects)


def test_an_unreadable_opt_in_quarantines_the_row_with_invalid_consent(
    platform: Platform, tmp_path: Path
) -> None:
    ingest = _service(platform)
    result = _ingest(
        ingest,
        tmp_path,
        "S-1,ann@example.com,Ann,maybe,,\nS-2,bob@example.com,Bob,yes,not a date,\n"
        "S-3,cat@example.com,Cat,yes,2999-01-01 00:00,\nS-4,dan@example.com,Dan,y,,\n",
    )
    assert result["rejected"] == 3
    assert result["reasons"] == {"invalid_consent": 3}
    details = " ".join(detail for _, _, detail in result["rejections"])  # type: ignore[attr-defined]
    assert "OptIn" in details and "maybe" not in details
    (event,) = _events(platform)
    assert event.record_id == _record_id(platform, "S-4")
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[records.consent.newsletters]\ncolumn = "OptIn"\nchannel = "email"\n',
            "records.consent.newsletters",
        ),
        (
            '[records.consent.marketing_email]\ncolumn = "OptIn"\nchannel = "phone"\n',
            "channel must be one of email",
        ),
        ('[records.consent.marketing_email]\nchannel = "email"\n', "column must be a non-empty string"),
        (
            '[records.consent.marketing_email]\ncolumn = "OptIn"\nchannel = "email"\nwhen = "x"\n',
            "unknown key",
        ),
    ],
)
def test_a_mapping_naming_an_unknown_purpose_or_channel_is_refused_at_load(table: str, message: str) -> None:
    text = 'name = "s"\nline_of_business = "marketing"\n[records.fields]\nId = "source_record_id"\n' + table
    with pytest.raises(MappingError, match=message):
        SourceMapping.from_toml(text)


def test_consent_columns_are_not_unknown_columns() -> None:
    mapping = SourceMapping.from_toml(MAPPING)
    assert {"OptIn", "OptInAt", "SmsOk"} <= mapping.records.ignore
    assert [(c.purpose, c.channel, c.column, c.at) for c in mapping.consent] == [
        ("marketing_email", "email", "OptIn", "OptInAt"),
        ("marketing_phone", "sms", "SmsOk", None),
    ]


VOCABULARY_MAPPING = """
name = "newsletter-like"
line_of_business = "marketing"
[records.fields]
Id = "source_record_id"
Email = "email"
[records.attributes]
Status = "subscription_status"
[records.consent.marketing_email]
column = "Status"
channel = "email"
values = { Subscribed = "grant", unsubscribed = "withdraw", bounced = "none" }
"""


def test_a_source_vocabulary_maps_its_own_values_and_quarantines_others(
    platform: Platform, tmp_path: Path
) -> None:
    ingest = IngestService(platform.db, platform.vault)
    ingest.register_source(VOCABULARY_MAPPING)
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "Id,Email,Status\n"
        "N-1,ann@example.com,subscribed\n"
        "N-2,bob@example.com,UNSUBSCRIBED\n"
        "N-3,cat@example.com,bounced\n"
        "N-4,dan@example.com,maybe\n",
        encoding="utf-8",
    )
    summary = ingest.ingest_file("newsletter-like", path)
    assert summary.rejected == 1 and dict(summary.reasons) == {"invalid_consent": 1}
    assert "maybe" not in json.dumps(summary.rejections)
    assert sorted((e.action, e.source) for e in _events(platform)) == [
        ("grant", "import"),
        ("withdraw", "import"),
    ]


def test_a_vocabulary_with_an_unknown_action_is_refused_at_load() -> None:
    with pytest.raises(MappingError, match="values"):
        SourceMapping.from_toml(VOCABULARY_MAPPING.replace('bounced = "none"', 'bounced = "maybe"'))


def test_the_demo_newsletter_mapping_carries_subscription_status_as_consent() -> None:
    from importlib import resources

    text = resources.files("cdp.demo").joinpath("mappings/newsletter.toml").read_text(encoding="utf-8")
    mapping = SourceMapping.from_toml(text)
    assert [(c.purpose, c.channel, c.column) for c in mapping.consent] == [
        ("marketing_email", "email", "status")
    ]
