"""`cdp retention` in process over the erasure test world (SQLite and PostgreSQL), with a policy that lets
everything expire after a day: a dry run counts and destroys nothing; a sweep destroys what is expired,
keeps what a legal hold covers and prints its certificate; holds are placed, listed and released as the
operator; a sweep already running elsewhere makes `run` exit 3; and nothing printed is a customer's data."""

from __future__ import annotations

import getpass
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.cli import main
from cdp.cli_retention import EXIT_SWEEP_BUSY
from cdp.config import Settings
from cdp.db.models import AuditEntry, LegalHold, RetentionSweep, SourceRecord
from cdp.db.types import utcnow
from cdp.platform import Platform
from tests.dsr.world import World as DsrWorld
from tests.dsr.world import seed_world

CUSTOMER_VALUES = (
    "Maria",
    "Garcia",
    "maria.garcia@example.com",
    "John",
    "ana.silva@example.org",
    "QQ123456C",
    "Invoice for Maria",
)
OPERATOR = f"operator:{getpass.getuser()}"
SHORT_POLICY = """
version = 7

[operational]
quarantine = "1d"
outbox = "1d"

[[category]]
name = "marketing_leads"
line_of_business = "marketing"
keep = "1d"

[[category]]
name = "sales_accounts"
line_of_business = "sales"
keep = "1d"

[[category]]
name = "support_tickets"
line_of_business = "support"
keep = "1d"

[[category]]
name = "billing_accounts"
line_of_business = "billing"
keep = "1d"

[[obligation]]
name = "bookkeeping"
line_of_business = "billing"
interaction_kinds = ["invoice", "payment"]
keep = "10y"
basis = "bookkeeping law"
"""
"""Every record of the world (newest contact mid-2025) has expired under this policy."""


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

    def records(self) -> int:
        with self.platform.db.read() as session:
            return int(session.execute(select(func.count()).select_from(SourceRecord)).scalar_one())

    def actions(self, prefix: str) -> list[tuple[str, str, str]]:
        with self.platform.db.read() as session:
            rows = session.execute(
                select(AuditEntry.action, AuditEntry.outcome, AuditEntry.actor)
                .where(AuditEntry.action.like(f"{prefix}%"))
                .order_by(AuditEntry.recorded_at)
            ).all()
        return [(row[0], row[1], row[2]) for row in rows]


@pytest.fixture
def world(
    platform: Platform, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> World:  # fmt: skip
    policy = tmp_path / "short-retention.toml"
    policy.write_text(SHORT_POLICY, encoding="utf-8")
    monkeypatch.delenv("CDP_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("CDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CDP_RETENTION_POLICY_FILE", str(policy))
    monkeypatch.setenv("COLUMNS", "250")
    return World(platform, seed_world(platform, tmp_path), capsys)


def _error(run: Run, code: int = 2) -> str:
    assert run.code == code, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    return lines[0]


def _cell(out: str, label: str) -> str:
    """The value of a `label` row of a two-column table."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in\n{out}")


def test_a_dry_run_counts_what_has_expired_and_destroys_nothing(world: World) -> None:
    dry = world.ok("retention", "run", "--dry-run")
    assert "dry run: nothing destroyed" in dry.out
    assert _cell(dry.out, "records to destroy") == "5"
    assert "certificate" not in dry.out
    report = json.loads(world.ok("retention", "run", "--dry-run", "--json").out)
    assert report["dry_run"] is True and report["certificate_id"] is None
    assert report["expired_by_category"] == {
        "billing_accounts": 1,
        "marketing_leads": 0,
        "sales_accounts": 2,
        "support_tickets": 2,
    }
    assert world.records() == 5
    assert world.ok("retention", "sweeps").out.strip() == "no sweep has run yet"


def test_a_sweep_keeps_held_customers_destroys_the_rest_and_prints_its_certificate(world: World) -> None:
    maria = str(world.data.maria)
    held = world.ok("retention", "hold", "--customer", maria, "--reason", "case 2026-17")
    assert "placed 3 legal hold(s) on customer" in held.out

    swept = world.ok("retention", "run", "--batch-size", "1")
    assert world.records() == 3  # John's and Ana's records went; Maria's three are held
    assert _cell(swept.out, "records destroyed") == "2"
    assert _cell(swept.out, "records kept under legal hold") == "3"
    assert _cell(swept.out, "batches") == "2"
    certificate = _cell(swept.out, "certificate")
    assert f"destruction certificate {certificate}" in swept.out
    exported = json.loads(world.ok("receipts", "show", certificate, "--json").out)
    assert exported["kind"] == "destruction_certificate"
    assert json.loads(exported["statement"])["retention_policy"]["version"] == 7

    sweeps = world.ok("retention", "sweeps").out
    row = next(line for line in sweeps.splitlines() if certificate in line)
    assert "completed" in row and "v7" in row
    assert world.actions("retention.sweep")[-1] == ("retention.sweep", "success", OPERATOR)


def test_holds_are_listed_and_released_as_the_operator(world: World) -> None:
    record = str(world.data.maria_billing_record)
    assert (
        "placed 1 legal hold(s) on record"
        in world.ok("retention", "hold", "--record", record, "--reason", "tax audit 2026").out
    )
    with world.platform.db.read() as session:
        hold = session.execute(select(LegalHold)).scalar_one()
    assert hold.created_by == OPERATOR

    listed = world.ok("retention", "holds", "--customer", str(world.data.maria)).out
    assert str(hold.id) in listed and "tax audit 2026" in listed and "active" in listed

    released = world.ok("retention", "release", str(hold.id), "--reason", "audit closed")
    assert f"released legal hold {hold.id} on record {record}" in released.out
    assert world.ok("retention", "holds").out.strip() == "no active legal holds"
    history = json.loads(world.ok("retention", "holds", "--all", "--json").out)
    assert history[0]["released_by"] == OPERATOR and history[0]["active"] is False

    assert "already released" in _error(world.run("retention", "release", str(hold.id), "--reason", "again"))
    assert "does not exist" in _error(
        world.run("retention", "release", str(uuid.uuid4()), "--reason", "no such hold")
    )
    assert "exactly one of" in world.run("retention", "hold", "--reason", "case 1").err
    assert "reason of 3 to 300" in _error(world.run("retention", "hold", "--record", record, "--reason", "x"))
    assert [(a, o) for a, o, _ in world.actions("retention.")] == [
        ("retention.hold", "success"),
        ("retention.read", "success"),
        ("retention.release", "success"),
        ("retention.read", "success"),
        ("retention.read", "success"),
        ("retention.release", "failed"),
        ("retention.release", "not_found"),
        ("retention.hold", "failed"),
    ]


def test_a_sweep_running_elsewhere_makes_run_exit_3_and_destroys_nothing(world: World) -> None:
    now = utcnow()
    with world.platform.db.transaction() as session:
        session.add(
            RetentionSweep(
                id=uuid.uuid4(),
                status="running",
                policy_version=7,
                as_of=now,
                started_at=now,
                holder="other-host:1234:abcd",
                lease_until=now + timedelta(minutes=2),
                counts="{}",
            )
        )
    busy = world.run("retention", "run")
    assert EXIT_SWEEP_BUSY == 3
    assert "already running" in _error(busy, code=3)
    assert world.records() == 5
    assert world.actions("retention.sweep") == [("retention.sweep", "failed", OPERATOR)]


def test_policy_shows_categories_obligations_version_and_whether_it_is_in_force(world: World) -> None:
    before = world.ok("retention", "policy").out
    for name in ("marketing_leads", "sales_accounts", "support_tickets", "billing_accounts", "bookkeeping"):
        assert name in before
    digest = re.search(r"version 7, sha256 ([0-9a-f]{64})", before)
    assert digest is not None and "not applied yet" in before
    world.ok("retention", "run")
    after = json.loads(world.ok("retention", "policy", "--json").out)
    assert after["sha256"] == digest.group(1) and after["status"].startswith("in force since")


def test_an_unreadable_policy_file_is_one_error_line(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CDP_RETENTION_POLICY_FILE", str(tmp_path / "missing.toml"))
    assert "cannot read the retention policy" in _error(world.run("retention", "run"))
    assert world.records() == 5
