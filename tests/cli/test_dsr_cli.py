"""`cdp dsr`, `cdp receipts` and `cdp work` in process over the erasure test world (SQLite and PostgreSQL):
an erasure opened on a customer's behalf goes open -> verify -> (approve) -> process and leaves a receipt
file that `receipts verify` accepts offline and refuses once tampered with or pinned to another key; the
four-eyes rule holds for the operator; routed requests and complaints show up in the queues; failures
are one `error:` line, audited; and nothing printed is a customer's data or their one-time code."""

from __future__ import annotations

import getpass
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update

from cdp.access.gate import Actor
from cdp.access.outbox import Outbox
from cdp.audit import AuditEvent
from cdp.cli import main
from cdp.cli_dsr import RECEIPT_KINDS, REJECTION_REASONS, STATUSES
from cdp.config import Settings
from cdp.db.models import AuditEntry, DsrRequest, EntityMember, SourceRecord, WorkItem
from cdp.db.types import utcnow
from cdp.dsr import receipts as receipts_module
from cdp.dsr import service as service_module
from cdp.dsr.receipts import Receipts
from cdp.dsr.service import DsrService
from cdp.platform import Platform
from cdp.vault.audit_keys import AuditSigningKeys
from tests.dsr.world import World as DsrWorld
from tests.dsr.world import seed_world

CUSTOMER_VALUES = (
    "Maria",
    "Garcia",
    "García",
    "maria.garcia@example.com",
    "John",
    "john.smith@example.com",
    "ana.silva@example.org",
    "QQ123456C",
    "High Street",
    "two weeks late",
    "Invoice for Maria",
)
OPERATOR = f"operator:{getpass.getuser()}"


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class World:
    platform: Platform
    data: DsrWorld
    capsys: pytest.CaptureFixture[str]
    tmp_path: Path

    def run(self, *args: str) -> Run:
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = self.capsys.readouterr()
        for value in CUSTOMER_VALUES:
            assert value not in captured.out + captured.err, f"{value!r} printed by {args}"
        return Run(int(exited.value.code or 0), captured.out, captured.err)

    def ok(self, *args: str) -> Run:
        result = self.run(*args)
        assert result.code == 0, result
        return result

    def open(self, kind: str = "erasure", customer: uuid.UUID | None = None) -> uuid.UUID:
        opened = self.ok(
            "dsr", "open", "--customer", str(customer or self.data.maria), "--kind", kind, "--json"
        )
        return uuid.UUID(json.loads(opened.out)["id"])

    def code(self) -> str:
        """The one-time code the customer received (the newest outbox message)."""
        with self.platform.db.read() as session:
            latest = Outbox(session, self.platform.vault).latest(1)[0]
        found = re.search(r"code: (\d{8})", latest.body)
        assert found is not None
        return found.group(1)

    def actions(self, prefix: str) -> list[tuple[str, str, str]]:
        with self.platform.db.read() as session:
            rows = session.execute(
                select(AuditEntry.action, AuditEntry.outcome, AuditEntry.actor)
                .where(AuditEntry.action.like(f"{prefix}%"))
                .order_by(AuditEntry.recorded_at)
            ).all()
        return [(row[0], row[1], row[2]) for row in rows]

    def status(self, request_id: uuid.UUID) -> str:
        with self.platform.db.read() as session:
            row = session.get(DsrRequest, request_id)
            assert row is not None
            return row.status


@pytest.fixture
def world(
    platform: Platform, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> World:  # fmt: skip
    monkeypatch.delenv("CDP_CONFIG", raising=False)
    monkeypatch.delenv("CDP_RETENTION_POLICY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("CDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CDP_DSR_ERASURE_REQUIRES_APPROVAL", "false")
    monkeypatch.setenv("COLUMNS", "250")
    return World(platform, seed_world(platform, tmp_path), capsys, tmp_path)


def _error(run: Run) -> str:
    assert run.code == 2, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    return lines[0]


def _public_key(platform: Platform) -> str:
    with platform.db.read() as session:
        keys = AuditSigningKeys(session, platform.vault).public_keys()
    (key,) = keys.values()
    return key


def _records(platform: Platform) -> int:
    with platform.db.read() as session:
        return int(session.execute(select(func.count()).select_from(SourceRecord)).scalar_one())


def test_an_erasure_opened_on_behalf_is_verified_processed_and_its_receipt_file_verifies(
    world: World,
) -> None:
    opened = world.run("dsr", "open", "--customer", str(world.data.maria), "--kind", "erasure")
    assert opened.code == 0, opened
    found = re.search(r"erasure request (\S+)", opened.out)
    assert found is not None
    request_id = uuid.UUID(found.group(1))
    assert "verifying" in opened.out and f"cdp dsr verify {request_id}" in opened.out
    code = world.code()
    assert code not in opened.out + opened.err

    verified = world.ok("dsr", "verify", str(request_id), code)
    assert "now in_progress" in verified.out

    receipt_file = world.tmp_path / "receipt.json"
    processed = world.ok("dsr", "process", str(request_id), "--receipt-out", str(receipt_file))
    exported = json.loads(receipt_file.read_text(encoding="utf-8"))
    assert exported["kind"] == "erasure_receipt"
    assert f"receipt {exported['id']}" in processed.out
    assert re.search(r"records destroyed\s*│\s*3\b", processed.out), processed.out
    assert world.status(request_id) == "completed"
    assert _records(world.platform) == 2  # John and Ana are untouched

    shown = world.ok("receipts", "show", exported["id"], "--json")
    assert json.loads(shown.out) == exported
    assert exported["id"] in world.ok("receipts", "list", "--kind", "erasure_receipt").out

    again = world.ok("dsr", "process", str(request_id), "--receipt-out", str(world.tmp_path / "again.json"))
    assert "already completed" in again.out
    assert json.loads((world.tmp_path / "again.json").read_text(encoding="utf-8")) == exported

    unpinned = world.ok("receipts", "verify", str(receipt_file))
    assert unpinned.out.startswith("OK: erasure_receipt") and "NOT independently trusted" in unpinned.out
    assert "pin the key with --public-key" in unpinned.err
    pinned = world.ok("receipts", "verify", str(receipt_file), "--public-key", _public_key(world.platform))
    assert "signed by the pinned key" in pinned.out and pinned.err == ""

    assert [(a, o) for a, o, _ in world.actions("dsr.")] == [
        ("dsr.request", "success"),
        ("dsr.verify", "success"),
        ("dsr.erase", "success"),
        ("dsr.receipt", "success"),
        ("dsr.receipt", "success"),
    ]
    assert {actor for _, _, actor in world.actions("dsr.")} == {OPERATOR}
    with world.platform.db.read() as session:
        row = session.get(DsrRequest, request_id)
        assert row is not None and row.opened_by == OPERATOR


def _issue_receipt(platform: Platform, path: Path) -> dict[str, object]:
    with platform.db.transaction() as session:
        receipt = Receipts(session, platform.vault).issue(
            "erasure_receipt", {"request_id": str(uuid.uuid4()), "destroyed": {"records": 2}}
        )
    data = receipt.to_dict()
    path.write_text(json.dumps(data), encoding="utf-8")
    return data


def test_a_tampered_receipt_or_a_wrong_pinned_key_fails_verification_with_exit_status_1(
    world: World,
) -> None:
    original = _issue_receipt(world.platform, world.tmp_path / "receipt.json")
    statement = str(original["statement"])
    other = (  # another installation's key
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    cases = {
        "count": ({**original, "statement": statement.replace('"records":2', '"records":1')}, "signature"),
        "id": ({**original, "id": str(uuid.uuid4())}, "do(es) not match its signed statement"),
        "key": ({**original, "public_key": other}, "key id in the file does not belong"),
        "shape": ({"id": original["id"]}, "not a cdp receipt"),
    }
    assert '"records":2' in statement
    for name, (tampered, message) in cases.items():
        path = world.tmp_path / f"{name}.json"
        path.write_text(json.dumps(tampered), encoding="utf-8")
        failed = world.run("receipts", "verify", str(path))
        assert failed.code == 1, (name, failed)
        assert failed.out.startswith("FAILED:") and message in failed.out, (name, failed.out)

    wrong = world.run("receipts", "verify", str(world.tmp_path / "receipt.json"), "--public-key", other)
    assert wrong.code == 1 and "not the pinned key" in wrong.out
    (world.tmp_path / "junk.json").write_text("{not json", encoding="utf-8")
    assert world.run("receipts", "verify", str(world.tmp_path / "junk.json")).code == 1
    bad_key = world.run("receipts", "verify", str(world.tmp_path / "receipt.json"), "--public-key", "xyz")
    assert bad_key.code == 2 and "64 hex digits" in bad_key.err


def test_receipts_verify_needs_neither_the_database_nor_the_keys(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _issue_receipt(world.platform, world.tmp_path / "receipt.json")
    key = _public_key(world.platform)
    elsewhere = world.tmp_path / "auditor"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("CDP_DATA_DIR", str(elsewhere / "nothing-here"))
    monkeypatch.setenv("CDP_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert world.run("dsr", "list").code == 2  # the platform cannot be opened here
    assert world.ok("receipts", "verify", str(world.tmp_path / "receipt.json"), "--public-key", key)
    assert not (elsewhere / "nothing-here").exists()


def test_the_operator_who_opened_an_erasure_cannot_approve_it_and_another_operator_can(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_DSR_ERASURE_REQUIRES_APPROVAL", "true")
    request_id = world.open()
    assert "now awaiting_approval" in world.ok("dsr", "verify", str(request_id), world.code()).out
    assert "cannot be carried out yet" in _error(world.run("dsr", "process", str(request_id)))

    refused = _error(world.run("dsr", "approve", str(request_id)))
    assert "cannot also approve" in refused
    assert world.status(request_id) == "awaiting_approval"
    assert ("dsr.approve", "failed", OPERATOR) in world.actions("dsr.approve")

    monkeypatch.setattr("cdp.cli._os_user", lambda: "second-dpo")
    approved = world.ok("dsr", "approve", str(request_id))
    assert "as operator:second-dpo: now in_progress" in approved.out
    assert world.actions("dsr.approve")[-1] == ("dsr.approve", "success", "operator:second-dpo")

    resumed = world.ok("dsr", "resume")
    assert "carried out 1 of 1 in-progress request(s)" in resumed.out
    assert world.status(request_id) == "completed"


def test_list_and_show_give_days_left_and_flag_overdue_requests(world: World) -> None:
    maria = world.open()
    john = world.open("access", world.data.customers.john)
    with world.platform.db.transaction() as session:
        session.execute(
            update(DsrRequest).where(DsrRequest.id == john).values(due_at=utcnow() - timedelta(days=2))
        )

    listed = json.loads(world.ok("dsr", "list", "--json").out)
    assert [r["id"] for r in listed] == [str(john), str(maria)]  # nearest deadline first
    assert listed[0]["overdue"] and not listed[1]["overdue"]
    assert 29 <= listed[1]["days_left"] <= 30

    table = world.ok("dsr", "list").out
    john_row = next(line for line in table.splitlines() if str(john) in line)
    assert "OVERDUE" in john_row and "1 request(s) overdue" in table
    overdue = world.ok("dsr", "list", "--overdue").out
    assert str(john) in overdue and str(maria) not in overdue
    only_maria = world.ok("dsr", "list", "--customer", str(world.data.maria), "--status", "verifying").out
    assert str(maria) in only_maria and str(john) not in only_maria

    shown = world.ok("dsr", "show", str(maria)).out
    assert "privacy" in shown and OPERATOR in shown and "work item" in shown
    assert json.loads(world.ok("dsr", "show", str(john), "--json").out)["overdue"] is True
    reads = [o for a, o, _ in world.actions("dsr.read")]
    assert reads == ["success"] * 6  # each list and show above


def test_a_rejected_request_closes_its_work_item(world: World) -> None:
    request_id = world.open()
    rejected = world.ok("dsr", "reject", str(request_id), "--reason", "duplicate", "--detail", "case 12")
    assert "rejected request" in rejected.out and "duplicate" in rejected.out
    assert world.status(request_id) == "rejected"
    with world.platform.db.read() as session:
        item = session.execute(select(WorkItem).where(WorkItem.ref_id == request_id)).scalar_one()
        assert item.status == "closed"
    assert "already rejected" in _error(world.run("dsr", "reject", str(request_id), "--reason", "withdrawn"))


def test_an_access_request_on_behalf_is_exported_and_the_download_code_goes_to_the_customer(
    world: World,
) -> None:
    request_id = world.open("access", world.data.customers.john)
    world.ok("dsr", "verify", str(request_id), world.code())
    assert (
        "--receipt-out applies to erasure"
        in world.run("dsr", "process", str(request_id), "--receipt-out", "x.json").err
    )
    processed = world.ok("dsr", "process", str(request_id))
    assert "is ready" in processed.out and "download code went to the email" in processed.out
    with world.platform.db.read() as session:
        latest = Outbox(session, world.platform.vault).latest(1)[0]
    assert latest.purpose == "dsr_export"
    token = latest.body.rsplit(" ", 1)[-1]
    assert token not in processed.out
    assert world.status(request_id) == "completed"


def test_refusals_are_one_error_line_and_are_audited(world: World) -> None:
    nobody = uuid.uuid4()
    assert "does not exist" in _error(world.run("dsr", "show", str(nobody)))
    assert ("dsr.read", "not_found", OPERATOR) in world.actions("dsr.read")
    assert "must be an id" in _error(world.run("dsr", "open", "--customer", "maria", "--kind", "erasure"))
    assert "does not exist" in _error(
        world.run("dsr", "open", "--customer", str(nobody), "--kind", "erasure")
    )

    request_id = world.open()
    assert "already has an open erasure request" in _error(
        world.run("dsr", "open", "--customer", str(world.data.maria), "--kind", "erasure")
    )
    wrong = _error(world.run("dsr", "verify", str(request_id), "00000000"))
    assert "verification failed: bad_code" in wrong
    assert [o for a, o, _ in world.actions("dsr.verify")] == ["denied"]  # the service's entry only
    assert "does not exist" in _error(world.run("receipts", "show", str(nobody)))
    assert ("dsr.receipt", "not_found", OPERATOR) in world.actions("dsr.receipt")


def test_work_list_shows_the_routed_request_and_items_can_be_assigned_closed_and_escalated(
    world: World,
) -> None:
    request_id = world.open()
    items = json.loads(world.ok("work", "list", "--json").out)
    (item,) = [i for i in items if i["ref_id"] == str(request_id)]
    assert item["queue"] == "privacy" and item["kind"] == "dsr_erasure" and item["status"] == "open"
    listed = world.ok("work", "list", "--queue", "privacy").out
    assert str(request_id) in listed and item["id"] in listed

    assigned = world.ok("work", "assign", item["id"], "--to", "user:dpo-1")
    assert "to user:dpo-1" in assigned.out
    assert "already assigned" in world.ok("work", "assign", item["id"], "--to", "user:dpo-1").out
    assert "staff principal id" in _error(world.run("work", "assign", item["id"], "--to", "Maria Garcia x"))

    # Old complaints (2025) are routed only when asked to look that far back, and are long overdue.
    assert "routed 0 complaint(s)" in world.ok("work", "route-complaints").out
    assert "routed 3 complaint(s)" in world.ok("work", "route-complaints", "--since-days", "36500").out
    assert str(request_id) not in world.ok("work", "list", "--queue", "support").out
    overdue = json.loads(world.ok("work", "list", "--overdue", "--json").out)
    assert {i["kind"] for i in overdue} == {"complaint"}
    escalated = world.ok("work", "escalate").out
    assert "escalated work items (3)" in escalated and "customer_care_lead" in escalated
    assert "nothing to escalate" in world.ok("work", "escalate").out

    closed = world.ok("work", "close", item["id"])
    assert "closed work item" in closed.out and "request itself is unchanged" in closed.err
    assert item["id"] not in world.ok("work", "list").out
    assert item["id"] in world.ok("work", "list", "--all").out
    assert "already closed" in _error(world.run("work", "close", item["id"]))
    assert ("work.close", "failed", OPERATOR) in world.actions("work.close")
    assert {actor for _, _, actor in world.actions("work.")} == {OPERATOR}


def test_choices_offered_by_the_cli_are_the_services() -> None:
    assert set(REJECTION_REASONS) == set(service_module.REJECTION_REASONS)
    assert set(RECEIPT_KINDS) == set(receipts_module.KINDS)
    assert set(service_module.OPEN_STATUSES) < set(STATUSES)
    for action in ("dsr.read", "dsr.receipt", "work.read", "retention.read"):
        AuditEvent(action)  # the audit catalog knows every read action recorded here


def test_a_customers_own_export_carried_out_from_the_command_line_mails_them_the_link(world: World) -> None:
    with world.platform.db.read() as session:  # John's one record, the one he signs in with
        record_id = session.execute(
            select(EntityMember.record_id).where(EntityMember.entity_id == world.data.customers.john)
        ).scalar_one()
    own = DsrService.for_platform(world.platform).open_self_service(
        Actor(f"customer:{record_id}", "customer", None, record_id), "access"
    )
    assert own.status == "in_progress"
    result = world.run("dsr", "process", str(own.id))
    assert result.code == 0, result.err
    assert world.status(own.id) == "completed"
    with world.platform.db.read() as session:
        message = Outbox(session, world.platform.vault).latest(1)[0]
    assert message.purpose == "dsr_export" and message.recipient == "john.smith@example.com"
    token = message.body.rsplit(" ", 1)[-1]
    assert token not in result.out and token not in result.err
