"""`cdp consent ...` in process over a seeded platform (SQLite and PostgreSQL): a grant and a withdrawal
round trip through show, history and counts, every failure is one `error:` line with exit status 2 and
writes nothing, and no value from a customer's record is printed."""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.cli import cli, main
from cdp.cli_consent import consent
from cdp.config import Settings
from cdp.consent.ledger import ConsentLedger, entity_records
from cdp.db.models import AuditEntry, ConsentEvent
from cdp.platform import Platform
from tests.profiles.fixtures import Customers, seed_customers

if "consent" not in cli.commands:
    cli.add_command(consent)

SEEDED_VALUES = ("John", "Smith", "john.smith@example.com", "Manchester", "M1 1AE", "Maria")


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class World:
    platform: Platform
    customers: Customers
    capsys: pytest.CaptureFixture[str]

    def run(self, *args: str) -> Run:
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = self.capsys.readouterr()
        for value in SEEDED_VALUES:
            assert value not in captured.out + captured.err
        return Run(int(exited.value.code or 0), captured.out, captured.err)

    def events(self) -> int:
        with self.platform.db.read() as session:
            return int(session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one())


@pytest.fixture
def world(
    platform: Platform, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> World:  # fmt: skip
    monkeypatch.delenv("CDP_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("CDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COLUMNS", "250")
    return World(platform, seed_customers(platform, tmp_path), capsys)


def _error(run: Run) -> str:
    assert run.code == 2, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    return lines[0]


def test_grant_show_history_withdraw_and_counts_round_trip(world: World) -> None:
    john = str(world.customers.john)
    granted = world.run("consent", "grant", john, "marketing_email", "--channel", "email")
    assert granted.code == 0, granted
    assert "marketing_email now holds" in granted.out
    ledger = ConsentLedger(world.platform.db)
    assert ledger.state(world.customers.john)["marketing_email"].holds

    shown = world.run("consent", "show", john)
    assert shown.code == 0, shown
    row = next(line for line in shown.out.splitlines() if "marketing_email" in line)
    assert "yes" in row and "granted" in row and "call_centre" in row

    withdrawn = world.run(
        "consent", "withdraw", john, "marketing_email", "--channel", "email", "--source", "api"
    )
    assert withdrawn.code == 0, withdrawn
    assert "does not hold" in withdrawn.out
    assert not ledger.state(world.customers.john)["marketing_email"].holds

    history = world.run("consent", "history", john)
    assert history.code == 0
    lines = [line for line in history.out.splitlines() if "marketing_email" in line]
    assert ["grant" in lines[0], "withdraw" in lines[1]] == [True, True]
    assert f"operator:{getpass.getuser()}" in history.out
    assert "2 event(s)" in history.out

    counts = world.run("consent", "counts")
    assert counts.code == 0
    row = next(line for line in counts.out.splitlines() if "marketing_email" in line).split()
    assert [cell for cell in row if cell.isdigit()][:4] == [
        "0",
        "0",
        "1",
        "0",
    ]  # holds granted withdrawn expired

    with world.platform.db.read() as session:
        actions = list(
            session.execute(select(AuditEntry.action).where(AuditEntry.action.like("consent.%"))).scalars()
        )
    assert sorted(actions) == [
        "consent.counts",
        "consent.read",
        "consent.read",
        "consent.record",
        "consent.record",
    ]


def test_a_grant_goes_to_the_named_record_and_can_carry_an_expiry(world: World) -> None:
    maria = str(world.customers.maria)
    helpdesk = str(world.customers.maria_helpdesk_record)
    run = world.run(
        "consent", "grant", maria, "marketing_phone", "--channel", "sms", "--record", helpdesk,
        "--expires", "2099-01-01T00:00:00+00:00",
    )  # fmt: skip
    assert run.code == 0, run
    (event,) = ConsentLedger(world.platform.db).history(world.customers.maria)
    assert str(event.record_id) == helpdesk and event.expires_at is not None


def test_purposes_lists_the_catalog(world: World) -> None:
    run = world.run("consent", "purposes")
    assert run.code == 0
    for name in ("marketing_email", "analytics", "third_party_sharing", "legitimate_interest"):
        assert name in run.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("grant", "{john}", "spam", "--channel", "email"), "unknown purpose"),
        (("grant", "{john}", "marketing_email", "--channel", "phone"), "takes channel"),
        (("grant", "{john}", "marketing_email", "--channel", "email", "--source", "rumour"), "sources:"),
        (("grant", "{john}", "marketing_email", "--channel", "email", "--expires", "2020-01-01T00:00Z"),
         "expires_at"),
        (("grant", "{john}", "marketing_email", "--channel", "email", "--at", "2030-01-01"), "time zone"),
        (("grant", "{john}", "marketing_email", "--channel", "email", "--record", "{ana}"), "not one of"),
        (("grant", "{nobody}", "marketing_email", "--channel", "email"), "no such customer"),
        (("withdraw", "not-an-id", "marketing_email", "--channel", "email"), "CUSTOMER"),
        (("show", "{nobody}"), "no such customer"),
    ],
    ids=["purpose", "channel", "source", "expiry", "naive", "foreign-record", "customer", "id", "show"],
)  # fmt: skip
def test_a_refused_command_is_one_error_line_and_writes_nothing(
    world: World, args: tuple[str, ...], message: str
) -> None:
    c = world.customers
    filled = [a.format(john=c.john, ana=c.ana_record, nobody=uuid.uuid4()) for a in args]
    line = _error(world.run("consent", *filled))
    assert message in line
    assert world.events() == 0


def test_records_of_the_customer_are_found_from_the_entity(world: World) -> None:
    with world.platform.db.read() as session:
        records = entity_records(session, world.customers.maria)
    assert (
        world.run("consent", "grant", str(world.customers.maria), "profiling", "--channel", "any").code == 0
    )
    (event,) = ConsentLedger(world.platform.db).history(world.customers.maria)
    assert event.record_id in records
