"""Routing of data-subject requests and complaints to department queues: rules as data, idempotent
routing, assignment, SLA and escalation, and an audit trail that names ids and queues only."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import select

from cdp.audit import AuditActor, acting_as
from cdp.db.models import AuditEntry, DsrRequest, Interaction, Source, WorkItem
from cdp.dsr.routing import (
    DSR_MAX_SLA_HOURS,
    InvalidWorkRequest,
    RoutingConfigError,
    RoutingRules,
    WorkItemConflict,
    WorkItemNotFound,
    WorkQueue,
)
from cdp.platform import Platform
from cdp.sources.ingest import IngestService

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# -- rules files ------------------------------------------------------------------------------------------

SMALL = """
version = 3

[[queues]]
name = "support"
escalates_to = "lead"

[[queues]]
name = "lead"
escalates_to = "director"

[[queues]]
name = "director"

[[queues]]
name = "triage"

[[rules]]
name = "live"
match = { kind = "complaint", department = "support", channel = ["chat", "phone"] }
queue = "support"
sla_hours = 4
escalate_after_hours = [0, 10]

[[rules]]
name = "support"
match = { kind = "complaint", department = "support" }
queue = "support"
sla_hours = 48

[[rules]]
name = "rest"
match = {}
queue = "triage"
sla_hours = 72
escalate_after_hours = [1]
"""


def _without_catch_all() -> str:
    return SMALL.split('[[rules]]\nname = "rest"')[0]


BAD_RULES = {
    "no_catch_all": (_without_catch_all(), "must be a catch-all with an empty match"),
    "catch_all_not_last": (
        SMALL.replace('match = { kind = "complaint", department = "support" }', "match = {}"),
        "rule support: an empty match is the catch-all and must be the last rule",
    ),
    "unknown_queue": (
        SMALL.replace('queue = "triage"', 'queue = "tirage"'),
        "rule rest.queue: unknown queue",
    ),
    "duplicate_rule": (SMALL.replace('name = "live"', 'name = "support"'), "rule support: defined twice"),
    "unknown_match_key": (
        SMALL.replace('department = "support" }', 'departement = "support" }'),
        "rule support.match: unknown key 'departement'",
    ),
    "unknown_kind_value": (
        SMALL.replace('kind = "complaint", department = "support" }', 'kind = "complain" }'),
        "rule support.match.kind: unknown value 'complain'",
    ),
    "unknown_channel_value": (
        SMALL.replace('"phone"]', '"phnoe"]'),
        "rule live.match.channel: unknown value",
    ),
    "empty_list": (SMALL.replace('["chat", "phone"]', "[]"), "rule live.match.channel: must be a value"),
    "unknown_escalation_queue": (
        SMALL.replace('escalates_to = "director"', 'escalates_to = "ceo"'),
        "queue lead.escalates_to: unknown queue 'ceo'",
    ),
    "escalation_loop": (
        SMALL.replace('name = "director"', 'name = "director"\nescalates_to = "support"'),
        "escalation loops",
    ),
    "steps_not_increasing": (SMALL.replace("[0, 10]", "[10, 10]"), "rule live.escalate_after_hours: steps"),
    "negative_step": (SMALL.replace("[0, 10]", "[-1, 10]"), "rule live.escalate_after_hours"),
    "sla_not_positive": (SMALL.replace("sla_hours = 48", "sla_hours = 0"), "rule support.sla_hours"),
    "dsr_past_the_statutory_month": (
        SMALL.replace("sla_hours = 72", f"sla_hours = {DSR_MAX_SLA_HOURS + 1}"),
        "rule rest.sla_hours: a rule that can match a data-subject request",
    ),
    "unknown_rule_key": (
        SMALL.replace("sla_hours = 48", "sla_hours = 48\nsla_days = 2"),
        "unknown key 'sla_days'",
    ),
    "unknown_top_level_key": ("owner = 'x'\n" + SMALL, "routing rules: unknown key 'owner'"),
    "no_version": (SMALL.replace("version = 3", ""), "version: must be a positive integer"),
    "no_match_table": (SMALL.replace("match = {}\n", ""), "rule rest.match: required"),
    "not_toml": ("[[rules]\n", "not valid TOML"),
}


def test_default_rules_send_requests_to_privacy_well_inside_the_statutory_month() -> None:
    rules = RoutingRules.load()
    for kind in ("dsr_access", "dsr_erasure"):
        decision = rules.route({"kind": kind, "channel": "self_service"})
        assert decision.queue == "privacy"
        assert decision.sla_hours <= DSR_MAX_SLA_HOURS // 2
        assert rules.escalation_target("privacy") == "privacy_lead"
    for department in ("billing", "support", "sales", "marketing"):
        decision = rules.route({"kind": "complaint", "department": department, "channel": "email"})
        assert decision.queue == department
        assert rules.escalation_target(department) == "customer_care_lead"
    assert rules.catch_all.name == "catch_all"


def test_first_matching_rule_wins_and_lists_mean_membership() -> None:
    rules = RoutingRules.parse(SMALL)
    chat = rules.route({"kind": "complaint", "department": "support", "channel": "chat"})
    phone = rules.route({"kind": "complaint", "department": "support", "channel": "phone"})
    email = rules.route({"kind": "complaint", "department": "support", "channel": "email"})
    assert (chat.rule, chat.sla_hours) == ("live", 4)
    assert phone.rule == "live"
    assert (email.rule, email.queue, email.sla_hours) == ("support", "support", 48)


def test_items_no_rule_claims_fall_to_the_catch_all() -> None:
    rules = RoutingRules.parse(SMALL)
    assert rules.route({"kind": "complaint", "department": "billing"}).rule == "rest"
    # an attribute the item does not have never matches a condition on it
    assert rules.route({"kind": "complaint"}).queue == "triage"
    assert rules.route({"kind": "dsr_erasure"}).rule == "rest"


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_invalid_rules_files_are_refused_with_the_key_named(case: str) -> None:
    text, message = BAD_RULES[case]
    with pytest.raises(RoutingConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RoutingRules.parse(text)


def test_rules_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError, match="cannot read routing rules"):
        RoutingRules.load(tmp_path / "missing.toml")
    path = tmp_path / "rules.toml"
    path.write_text(SMALL, encoding="utf-8")
    assert RoutingRules.load(path).version == 3


def test_unknown_routing_attribute_is_refused_without_echoing_its_value() -> None:
    rules = RoutingRules.parse(SMALL)
    with pytest.raises(InvalidWorkRequest, match="unknown routing attribute 'email'") as caught:
        rules.route({"kind": "complaint", "email": "grete@example.de"})
    assert "grete" not in str(caught.value)


# -- a small world: complaints from the demo helpdesk and a billing system, and two requests ---------------

BILLING = """
name = "billing"
line_of_business = "billing"
default_country = "DE"
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
CUSTNO = "source_record_id"
FORENAMES = "first_name"
SURNAME = "last_name"
EMAIL = "email"
[interactions.fields]
DOCNO = "interaction_id"
CUSTNO = "source_record_id"
DOCDATE = "occurred_at"
DOCTYPE = "kind"
DOCTEXT = "summary"
[interactions.defaults]
channel = "letter"
direction = "inbound"
department = "billing"
[interactions.values.kind]
CMP = "complaint"
INV = "invoice"
"""
BILLING_RECORDS = "CUSTNO,FORENAMES,SURNAME,EMAIL\nK-1,Grete,Köhler,grete.koehler@example.de\n"
BILLING_DOCUMENTS = (
    "DOCNO,CUSTNO,DOCDATE,DOCTYPE,DOCTEXT\n"
    "D-1,K-1,2026-03-01 09:00,CMP,Grete Köhler: Rechnung doppelt abgebucht\n"
    "D-2,K-1,2026-02-01 09:00,INV,Rechnung Februar\n"
)
HELPDESK_CONTACTS = [
    {"KontaktId": 501, "Name": "Köhler, Grete", "EMail": "grete.koehler@example.de", "Ort": "Leipzig"},
    {"KontaktId": 502, "Name": "Jansen, Piet", "EMail": "piet.jansen@example.nl", "Ort": "Utrecht"},
]
HELPDESK_TICKETS = [
    {
        "TicketNr": 9001,
        "KontaktId": 501,
        "Erstellt": "2026-03-01T10:00:00+01:00",
        "Kanal": "Chat",
        "Richtung": "eingehend",
        "Kategorie": "Reklamation",
        "Betreff": "Paket von Grete Köhler kam beschädigt an",
    },
    {
        "TicketNr": 9002,
        "KontaktId": 502,
        "Erstellt": "2026-02-27T08:00:00+01:00",
        "Kanal": "E-Mail",
        "Richtung": "eingehend",
        "Kategorie": "Reklamation",
        "Betreff": "Piet Jansen wartet seit Wochen",
    },
    {
        "TicketNr": 9003,
        "KontaktId": 502,
        "Erstellt": "2026-02-28T08:00:00+01:00",
        "Kanal": "Telefon",
        "Richtung": "eingehend",
        "Kategorie": "Anfrage",
        "Betreff": "Frage zu Lieferzeiten",
    },
    {
        "TicketNr": 9004,
        "KontaktId": 502,
        "Erstellt": "2025-01-10T08:00:00+01:00",
        "Kanal": "Brief",
        "Richtung": "eingehend",
        "Kategorie": "Reklamation",
        "Betreff": "Alte Beschwerde",
    },
]
PERSONAL_VALUES = (
    "Grete",
    "Köhler",
    "Koehler",
    "grete.koehler",
    "Leipzig",
    "Piet",
    "Jansen",
    "piet.jansen",
    "Utrecht",
    "doppelt",
    "beschädigt",
    "wartet",
)


@dataclass(frozen=True)
class World:
    complaints: dict[str, uuid.UUID]
    """Ticket or document number -> interaction id, complaints only."""
    records: dict[str, uuid.UUID]
    """Ticket or document number -> the customer record it belongs to."""


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    ingest = IngestService(platform.db, platform.vault)
    helpdesk = resources.files("cdp.demo").joinpath("mappings/helpdesk.toml").read_text(encoding="utf-8")
    ingest.register_source(helpdesk)
    ingest.register_source(BILLING)
    uploads = (
        ("helpdesk", _write_jsonl(tmp_path / "contacts.jsonl", list(HELPDESK_CONTACTS)), "records"),
        ("helpdesk", _write_jsonl(tmp_path / "tickets.jsonl", list(HELPDESK_TICKETS)), "interactions"),
        ("billing", tmp_path / "billing.csv", "records"),
        ("billing", tmp_path / "billing_docs.csv", "interactions"),
    )
    (tmp_path / "billing.csv").write_text(BILLING_RECORDS, encoding="utf-8")
    (tmp_path / "billing_docs.csv").write_text(BILLING_DOCUMENTS, encoding="utf-8")
    for source, path, kind in uploads:
        summary = ingest.ingest_file(source, path, kind=kind)
        assert summary.rejected == 0, summary.rejections
    with platform.db.read() as session:
        rows = session.execute(
            select(Interaction, Source.name)
            .join(Source, Source.id == Interaction.source_id)
            .where(Interaction.kind == "complaint")
        ).all()
    tickets = {
        datetime(2026, 3, 1, 9, 0, tzinfo=UTC): "T-9001",
        datetime(2026, 2, 27, 7, 0, tzinfo=UTC): "T-9002",
        datetime(2025, 1, 10, 7, 0, tzinfo=UTC): "T-9004",
    }
    complaints: dict[str, uuid.UUID] = {}
    records: dict[str, uuid.UUID] = {}
    for row, source in rows:
        name = "D-1" if source == "billing" else tickets[row.occurred_at]
        complaints[name], records[name] = row.id, row.record_id
    assert sorted(complaints) == ["D-1", "T-9001", "T-9002", "T-9004"]
    return World(complaints, records)


def _request(
    platform: Platform, kind: str, *, received_at: datetime, due_at: datetime | None = None
) -> DsrRequest:
    row = DsrRequest(
        id=uuid.uuid4(),
        kind=kind,
        status="received",
        entity_id=uuid.uuid4(),
        record_id=uuid.uuid4(),
        channel="self_service",
        opened_by="customer:test",
        received_at=received_at,
        due_at=due_at or received_at + timedelta(days=30),
        updated_at=received_at,
    )
    with platform.db.transaction() as session:
        session.add(row)
    return row


def _work_entries(platform: Platform) -> list[AuditEntry]:
    with platform.db.read() as session:
        return list(
            session.execute(
                select(AuditEntry).where(AuditEntry.action.like("work.%")).order_by(AuditEntry.recorded_at)
            ).scalars()
        )


# -- routing ----------------------------------------------------------------------------------------------


def test_routing_a_request_is_idempotent_and_audited_once(platform: Platform) -> None:
    rules = RoutingRules.load()
    request = _request(platform, "erasure", received_at=NOW - timedelta(hours=2))
    with platform.db.transaction() as session:
        first = WorkQueue(session, rules).route("dsr_erasure", request.id, now=NOW)
    with platform.db.transaction() as session:
        again = WorkQueue(session, rules).route("dsr_erasure", request.id, {"channel": "on_behalf"}, now=NOW)
    assert again == first
    assert (first.kind, first.ref_id, first.queue, first.rule, first.status) == (
        "dsr_erasure",
        request.id,
        "privacy",
        "dsr_erasure",
        "open",
    )
    assert first.due_at == request.received_at + timedelta(hours=168)
    assert first.created_at == NOW and first.escalation_level == 0 and first.assignee is None
    entries = _work_entries(platform)
    assert [e.action for e in entries] == ["work.route"]
    subjects = set(json.loads(entries[0].subjects))
    assert subjects == {
        f"work_item:{first.id}",
        f"dsr_request:{request.id}",
        str(request.entity_id),
        str(request.record_id),
    }
    assert json.loads(entries[0].details) == {
        "work_item": str(first.id),
        "kind": "dsr_erasure",
        "queue": "privacy",
        "rule": "dsr_erasure",
        "rules_version": rules.version,
        "sla_hours": 168,
    }


def test_a_requests_due_time_never_passes_its_statutory_due_date(platform: Platform) -> None:
    received = NOW - timedelta(days=25)
    request = _request(platform, "access", received_at=received, due_at=received + timedelta(days=3))
    with platform.db.transaction() as session:
        item = WorkQueue(session, RoutingRules.load()).route("dsr_access", request.id, now=NOW)
    assert item.due_at == request.due_at
    assert item.overdue


def test_routing_refuses_what_does_not_exist_or_does_not_agree(platform: Platform) -> None:
    access = _request(platform, "access", received_at=NOW)
    with platform.db.transaction() as session:
        queue = WorkQueue(session, RoutingRules.load())
        with pytest.raises(WorkItemNotFound):
            queue.route("dsr_erasure", uuid.uuid4(), now=NOW)
        with pytest.raises(WorkItemNotFound):  # an access request is not an erasure request
            queue.route("dsr_erasure", access.id, now=NOW)
        with pytest.raises(InvalidWorkRequest, match="unknown work item kind"):
            queue.route("refund", access.id, now=NOW)
        with pytest.raises(InvalidWorkRequest, match="'kind' must agree"):
            queue.route("dsr_access", access.id, {"kind": "complaint"}, now=NOW)
        assert queue.items(status=None) == []


def test_complaints_are_picked_up_once_and_routed_by_department(platform: Platform, world: World) -> None:
    rules = RoutingRules.load()
    since = NOW - timedelta(days=30)
    with platform.db.transaction() as session:
        assert WorkQueue(session, rules).route_new_complaints(now=NOW, since=since) == 3
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        assert queue.route_new_complaints(now=NOW, since=since) == 0
        chat = queue.find("complaint", world.complaints["T-9001"])
        email = queue.find("complaint", world.complaints["T-9002"])
        billing = queue.find("complaint", world.complaints["D-1"])
        assert queue.find("complaint", world.complaints["T-9004"]) is None  # older than `since`
    assert chat is not None and email is not None and billing is not None
    assert (chat.queue, chat.rule) == ("support", "complaint_support_live")
    assert chat.due_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC) + timedelta(hours=24)
    assert (email.queue, email.rule) == ("support", "complaint_support")
    assert (billing.queue, billing.rule) == ("billing", "complaint_billing")
    routes = [e for e in _work_entries(platform) if e.action == "work.route"]
    assert len(routes) == 3
    chat_subjects = next(set(json.loads(e.subjects)) for e in routes if str(chat.id) in e.subjects)
    assert chat_subjects == {
        f"work_item:{chat.id}",
        f"interaction:{world.complaints['T-9001']}",
        str(world.records["T-9001"]),
    }
    # without `since`, the old complaint is picked up too, and only it
    with platform.db.transaction() as session:
        assert WorkQueue(session, rules).route_new_complaints(now=NOW) == 1
    with platform.db.read() as session:
        kinds = {item.kind for item in WorkQueue(session, rules).items(status=None)}
    assert kinds == {"complaint"}


def test_a_complaint_routed_concurrently_keeps_the_first_item(platform: Platform, world: World) -> None:
    rules = RoutingRules.load()
    complaint = world.complaints["D-1"]
    with platform.db.transaction() as session:
        first = WorkQueue(session, rules).route("complaint", complaint, now=NOW)
    with platform.db.transaction() as session:
        late = WorkQueue(session, rules)
        real_find = late._find_row
        stale = [True]

        def find(kind: str, ref_id: uuid.UUID) -> WorkItem | None:
            # the late router looked before the first one committed, so it tries to insert as well
            if stale:
                stale.pop()
                return None
            return real_find(kind, ref_id)

        late._find_row = find  # type: ignore[method-assign]
        second = late.route("complaint", complaint, now=NOW + timedelta(hours=1))
        other = late.route("complaint", world.complaints["T-9002"], now=NOW)  # the transaction goes on
    assert second.id == first.id and second.created_at == first.created_at
    with platform.db.read() as session:
        assert WorkQueue(session, rules).get(other.id).queue == "support"
    assert [e.action for e in _work_entries(platform)] == ["work.route", "work.route"]


# -- assignment and closing -------------------------------------------------------------------------------


def test_assignment_and_closing_are_audited_transitions(platform: Platform) -> None:
    rules = RoutingRules.load()
    request = _request(platform, "access", received_at=NOW)
    staff = "user:" + str(uuid.uuid4())
    with platform.db.transaction() as session:
        item = WorkQueue(session, rules).route("dsr_access", request.id, now=NOW)
    with acting_as(AuditActor.operator("dpo")), platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        assigned = queue.assign(item.id, staff)
        assert queue.assign(item.id, staff) == assigned  # no change, nothing recorded
        with pytest.raises(InvalidWorkRequest, match="staff principal id") as caught:
            queue.assign(item.id, "grete.koehler@example.de")
        assert "grete" not in str(caught.value)
        closed = queue.close(item.id, now=NOW + timedelta(hours=1))
    assert assigned.assignee == staff and assigned.status == "open"
    assert closed.status == "closed" and closed.closed_at == NOW + timedelta(hours=1) and not closed.overdue
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        with pytest.raises(WorkItemConflict, match="closed"):
            queue.assign(item.id, "user:someone-else")
        with pytest.raises(WorkItemConflict, match="already closed"):
            queue.close(item.id)
        with pytest.raises(WorkItemNotFound):
            queue.assign(uuid.uuid4(), staff)
        with pytest.raises(WorkItemNotFound):
            queue.get(uuid.uuid4())
    entries = _work_entries(platform)
    assert [e.action for e in entries] == ["work.route", "work.assign", "work.close"]
    assign, close = entries[1], entries[2]
    assert assign.actor == "operator:dpo"
    assert json.loads(assign.details)["assignee"] == staff
    assert set(json.loads(close.subjects)) >= {f"work_item:{item.id}", f"dsr_request:{request.id}"}
    assert json.loads(close.details)["overdue"] is False


# -- escalation -------------------------------------------------------------------------------------------


def test_overdue_items_escalate_once_per_level_up_the_queue_chain(platform: Platform) -> None:
    rules = RoutingRules.load()  # dsr_erasure: 168 h, steps [0, 72]; privacy -> privacy_lead
    request = _request(platform, "erasure", received_at=NOW)
    due = NOW + timedelta(hours=168)
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        item = queue.route("dsr_erasure", request.id, now=NOW)
        queue.assign(item.id, "user:privacy-officer")

    def escalate(at: datetime) -> list[int]:
        with platform.db.transaction() as session:
            return [view.escalation_level for view in WorkQueue(session, rules).escalate_overdue(now=at)]

    assert escalate(due) == []  # due, not yet past it
    assert escalate(due + timedelta(minutes=1)) == [1]
    with platform.db.read() as session:
        first = WorkQueue(session, rules).get(item.id, now=due + timedelta(minutes=1))
    assert (first.queue, first.escalation_level, first.assignee) == ("privacy_lead", 1, None)
    assert first.escalated_at == due + timedelta(minutes=1) and first.overdue
    assert escalate(due + timedelta(hours=5)) == []  # level 1 does not fire twice
    assert escalate(due + timedelta(hours=73)) == [2]
    assert escalate(due + timedelta(days=60)) == []  # no step beyond the last
    with platform.db.read() as session:
        last = WorkQueue(session, rules).get(item.id)
    assert (last.queue, last.escalation_level) == ("privacy_lead", 2)  # the top of the chain
    escalations = [e for e in _work_entries(platform) if e.action == "work.escalate"]
    assert [json.loads(e.details)["level"] for e in escalations] == [1, 2]
    assert [json.loads(e.details)["from_queue"] for e in escalations] == ["privacy", "privacy_lead"]


def test_an_item_at_the_top_of_its_chain_rises_in_level_and_stays(platform: Platform) -> None:
    rules = RoutingRules.parse(SMALL)  # catch-all "rest": 72 h, steps [1]; triage escalates nowhere
    request = _request(platform, "erasure", received_at=NOW)
    with platform.db.transaction() as session:
        item = WorkQueue(session, rules).route("dsr_erasure", request.id, now=NOW)
    assert (item.rule, item.queue) == ("rest", "triage")
    with platform.db.transaction() as session:
        (escalated,) = WorkQueue(session, rules).escalate_overdue(now=NOW + timedelta(days=10))
    assert (escalated.queue, escalated.escalation_level) == ("triage", 1)


def test_escalation_moves_complaints_through_every_level_in_order(platform: Platform, world: World) -> None:
    rules = RoutingRules.parse(SMALL)
    with platform.db.transaction() as session:
        item = WorkQueue(session, rules).route("complaint", world.complaints["T-9001"], now=NOW)
    assert item.rule == "live" and item.due_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    with platform.db.transaction() as session:
        (escalated,) = WorkQueue(session, rules).escalate_overdue(now=item.due_at + timedelta(hours=11))
    assert (escalated.queue, escalated.escalation_level) == ("director", 2)
    escalations = [json.loads(e.details) for e in _work_entries(platform) if e.action == "work.escalate"]
    assert [(d["level"], d["from_queue"], d["queue"]) for d in escalations] == [
        (1, "support", "lead"),
        (2, "lead", "director"),
    ]


def test_closed_items_never_escalate(platform: Platform) -> None:
    rules = RoutingRules.load()
    request = _request(platform, "access", received_at=NOW)
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        item = queue.route("dsr_access", request.id, now=NOW)
        queue.close(item.id, now=NOW + timedelta(hours=1))
    with platform.db.transaction() as session:
        assert WorkQueue(session, rules).escalate_overdue(now=NOW + timedelta(days=29)) == []
    with platform.db.read() as session:
        after = WorkQueue(session, rules).get(item.id, now=NOW + timedelta(days=29))
    assert (after.queue, after.escalation_level, after.overdue) == ("privacy", 0, False)


def test_items_of_a_rule_no_longer_in_the_file_follow_the_catch_all_schedule(platform: Platform) -> None:
    request = _request(platform, "access", received_at=NOW)
    with platform.db.transaction() as session:
        item = WorkQueue(session, RoutingRules.load()).route("dsr_access", request.id, now=NOW)
    later = RoutingRules.parse(SMALL)  # no dsr_access rule, no privacy queue; catch-all steps [1]
    due = item.due_at
    with platform.db.transaction() as session:
        assert WorkQueue(session, later).escalate_overdue(now=due + timedelta(minutes=30)) == []
    with platform.db.transaction() as session:
        (escalated,) = WorkQueue(session, later).escalate_overdue(now=due + timedelta(hours=2))
    assert (escalated.queue, escalated.escalation_level, escalated.rule) == ("privacy", 1, "dsr_access")


# -- reading the queues -----------------------------------------------------------------------------------


def test_items_lists_a_queue_most_urgent_first(platform: Platform, world: World) -> None:
    rules = RoutingRules.load()
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        queue.route_new_complaints(now=NOW, since=NOW - timedelta(days=30))
        billing = queue.find("complaint", world.complaints["D-1"])
        assert billing is not None
        queue.close(billing.id, now=NOW)
    with platform.db.read() as session:
        queue = WorkQueue(session, rules)
        support = queue.items(queue="support", now=NOW)
        assert [item.rule for item in support] == ["complaint_support", "complaint_support_live"]
        assert [item.due_at for item in support] == sorted(item.due_at for item in support)
        assert queue.items(queue="billing", now=NOW) == []
        assert [i.id for i in queue.items(queue="billing", status="closed", now=NOW)] == [billing.id]
        # e-mail of Feb 27 + 72 h = Mar 2 07:00; chat of Mar 1 + 24 h = Mar 2 09:00
        overdue = queue.items(overdue_only=True, now=datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
        assert [item.rule for item in overdue] == ["complaint_support"]
        assert overdue[0].to_dict()["overdue"] is True
        assert len(queue.items(status=None, limit=1)) == 1
        with pytest.raises(InvalidWorkRequest, match="status must be one of"):
            queue.items(status="pending")
        with pytest.raises(InvalidWorkRequest, match="limit"):
            queue.items(limit=0)
    as_dict = support[0].to_dict()
    assert as_dict["due_at"] == support[0].due_at.isoformat() and as_dict["escalated_at"] is None
    assert set(as_dict) == {
        *("id", "kind", "ref_id", "queue", "rule", "status", "assignee", "created_at", "due_at"),
        *("escalation_level", "escalated_at", "closed_at", "overdue"),
    }


def test_audit_entries_hold_ids_and_queue_names_never_personal_data(platform: Platform, world: World) -> None:
    rules = RoutingRules.load()
    with platform.db.transaction() as session:
        queue = WorkQueue(session, rules)
        queue.route_new_complaints(now=NOW)
        for item in queue.items(now=NOW):
            queue.assign(item.id, "user:agent-7")
        queue.escalate_overdue(now=NOW + timedelta(days=30))
        for item in queue.items(now=NOW):
            queue.close(item.id, now=NOW + timedelta(days=31))
    entries = _work_entries(platform)
    assert {e.action for e in entries} == {"work.route", "work.assign", "work.escalate", "work.close"}
    for entry in entries:
        stored = entry.subjects + entry.details + entry.fields
        for value in PERSONAL_VALUES:
            assert value.lower() not in stored.lower(), (entry.action, value)
        for subject in json.loads(entry.subjects):
            prefix, _, rest = subject.rpartition(":")
            assert prefix in ("", "work_item", "interaction", "dsr_request")
            uuid.UUID(rest)
