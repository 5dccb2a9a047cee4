"""`cdp analytics` in process over the analytics test world (SQLite and PostgreSQL): segments defined from
JSON files, evaluated, tracked and removed as the operator; a bad definition lists every mistake and saves
nothing; every analysis prints tables or JSON; charts are written as SVG or PNG; nothing printed is a
customer's data."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.cli import main
from cdp.config import Settings
from cdp.db.models import AnalyticsSegment, AuditEntry
from cdp.platform import Platform
from tests.analytics.world import World as AnalyticsWorld
from tests.analytics.world import seed_world

OPERATOR = f"operator:{getpass.getuser()}"
SEGMENT = {
    "name": "phone-complainers",
    "description": "Complained by phone in the last 200 days",
    "match": {"interactions": {"kind": ["complaint"], "channel": ["phone"], "within_days": 200}},
}


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class World:
    platform: Platform
    data: AnalyticsWorld
    capsys: pytest.CaptureFixture[str]
    tmp_path: Path

    def run(self, *args: str) -> Run:
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = self.capsys.readouterr()
        for record in self.data.population.shop_records[:40]:
            for value in (record["Email"], f"{record['First']} {record['Last']}"):
                assert value not in captured.out + captured.err, f"{value!r} printed by {args}"
        return Run(int(exited.value.code or 0), captured.out, captured.err)

    def ok(self, *args: str) -> Run:
        result = self.run(*args)
        assert result.code == 0, result
        return result

    def file(self, name: str, content: object) -> str:
        path = self.tmp_path / name
        path.write_text(json.dumps(content), encoding="utf-8")
        return str(path)

    def segments(self) -> int:
        with self.platform.db.read() as session:
            return int(session.execute(select(func.count()).select_from(AnalyticsSegment)).scalar_one())


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
    return World(platform, seed_world(platform, regulars=120, planted=40), capsys, tmp_path)


def test_a_segment_is_defined_evaluated_tracked_and_deleted_as_the_operator(world: World) -> None:
    created = world.ok("analytics", "segments", "create", world.file("segment.json", SEGMENT))
    assert "segment phone-complainers saved" in created.out
    assert "phone-complainers" in world.ok("analytics", "segments", "list").out
    assert json.loads(world.ok("analytics", "segments", "show", "phone-complainers").out)["version"] == 1

    evaluated = world.ok("analytics", "segments", "evaluate", "phone-complainers")
    assert "by department" in evaluated.out
    report = json.loads(world.ok("analytics", "segments", "evaluate", "phone-complainers", "--json").out)
    assert report["size"] == len(world.data.population.planted)
    history = json.loads(world.ok("analytics", "segments", "history", "phone-complainers", "--json").out)
    assert [p["size"] for p in history["history"]] == [len(world.data.population.planted)] * 2

    changed = {**SEGMENT, "description": "Phone complainers, changed"}
    world.ok(
        "analytics",
        "segments",
        "update",
        "phone-complainers",
        world.file("v2.json", changed),
        "--version",
        "1",
    )
    stale = world.run(
        "analytics",
        "segments",
        "update",
        "phone-complainers",
        world.file("v3.json", changed),
        "--version",
        "1",
    )
    assert stale.code == 2 and "version 2" in stale.err
    world.ok("analytics", "segments", "delete", "phone-complainers")
    missing = world.run("analytics", "segments", "history", "phone-complainers")
    assert missing.code == 2 and "does not exist" in missing.err
    with world.platform.db.read() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.outcome, AuditEntry.actor, AuditEntry.purpose)
            .where(AuditEntry.action.like("analytics.%"))
            .order_by(AuditEntry.recorded_at)
        ).all()
    assert {row.actor for row in rows} == {OPERATOR}
    assert ("analytics.run", "success", OPERATOR, "analytics") in [tuple(r) for r in rows]
    assert ("analytics.read", "not_found", OPERATOR, None) in [tuple(r) for r in rows]


def test_a_bad_definition_lists_every_mistake_and_saves_nothing(world: World) -> None:
    bad = {
        "name": "Bad!",
        "match": {"all": [{"consent": "telepathy"}, {"metric": "clv", "op": "~", "value": 1}]},
    }
    result = world.run("analytics", "segments", "create", world.file("bad.json", bad))
    assert result.code == 2
    assert "name:" in result.err and "match.all[0].consent" in result.err and "match.all[1].op" in result.err
    typo = {"name": "typo", "match": {"interactions": {"kind": ["complant"]}}}
    previewed = world.ok("analytics", "segments", "preview", world.file("typo.json", typo))
    assert "note: kind 'complant' occurs nowhere in this population" in previewed.err
    not_json = world.tmp_path / "broken.json"
    not_json.write_text("{ nope", encoding="utf-8")
    broken = world.run("analytics", "segments", "preview", str(not_json))
    assert broken.code == 2 and "is not JSON" in broken.err
    assert world.segments() == 0


@pytest.mark.parametrize("analysis", ["rfm", "clv", "churn", "channels", "profitability", "purchases"])
def test_each_analysis_prints_tables_and_json(world: World, analysis: str) -> None:
    table = world.ok("analytics", "run", analysis, "--group-by", "department")
    assert "customers" in table.out and "left out without consent" in table.out
    report = json.loads(world.ok("analytics", "run", analysis, "--json").out)
    assert report["analysis"] == analysis and report["customers"] == len(world.data.customer_of)


def test_charts_are_written_as_svg_or_png(world: World) -> None:
    svg = world.tmp_path / "mix.svg"
    world.ok("analytics", "chart", "channel-mix", "--out", str(svg))
    assert svg.read_bytes().lstrip().startswith((b"<?xml", b"<svg"))
    png = world.tmp_path / "clv.png"
    world.ok("analytics", "chart", "clv-distribution", "--out", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")
    wrong = world.run("analytics", "chart", "channel-mix", "--out", str(world.tmp_path / "mix.gif"))
    assert wrong.code == 2 and ".svg or .png" in wrong.err
