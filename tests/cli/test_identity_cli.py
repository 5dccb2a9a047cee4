"""`cdp resolve` and `cdp identity ...` end to end: the real console module in a subprocess over a seeded
vault (SQLite, and PostgreSQL when CDP_TEST_POSTGRES_URL is set), checking what an operator sees — and
that nothing but `identity show --reveal` prints a value from a record.

One seeded vault per backend and module; the merge/split test changes entities, so the other tests
read whatever is current.
"""

from __future__ import annotations

import getpass
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import func, select

from cdp.config import Settings
from cdp.db.models import MatchEdge, SourceRecord
from cdp.demo.seed import seed
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from tests.cli.test_cli import cdp, ok, one_line_error
from tests.conftest import _libpq_dsn, postgres_base_url

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Vault:
    cwd: Path
    env: dict[str, str]
    platform: Platform

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cdp(self.cwd, *args, **self.env)

    @property
    def service(self) -> IdentityService:
        return IdentityService(self.platform.db, self.platform.vault)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def vault(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    """`cdp init` layout (./var) in a scratch directory, seeded with 60 fictitious people and resolved."""
    cwd = tmp_path_factory.mktemp("identity-cli")
    env: dict[str, str] = {}
    schema = None
    if request.param == "postgres":
        base = postgres_base_url()
        schema = f"cdp_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(_libpq_dsn(base), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in base else "?"
        env["CDP_DATABASE_URL"] = f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    settings = Settings(data_dir=cwd / "var", database_url=env.get("CDP_DATABASE_URL", ""))
    platform, _ = Platform.initialize(settings)
    try:
        seed(platform.db, platform.vault, work_dir=cwd / "generated", people=60, seed_value=3)
        yield Vault(cwd, env, platform)
    finally:
        platform.close()
        if schema is not None:
            with psycopg.connect(_libpq_dsn(base), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _row(stdout: str, label: str) -> str:
    """The value cell of a `label` row of the resolve report table."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no {label!r} row in:\n{stdout}")


def _largest(vault: Vault) -> tuple[uuid.UUID, list[uuid.UUID]]:
    largest = max(vault.service.partition(), key=len)
    members = sorted(largest, key=str)
    return vault.service.entity_of(members[0]), members


def test_resolve_prints_the_report_as_a_table(vault: Vault) -> None:
    with vault.platform.db.read() as session:
        records = session.execute(select(func.count()).select_from(SourceRecord)).scalar_one()
    stdout = ok(vault.run("resolve"))
    assert "identity resolution" in stdout
    assert int(_row(stdout, "records").replace(",", "")) == records
    assert int(_row(stdout, "entities").replace(",", "")) == len(vault.service.partition())
    assert int(_row(stdout, "largest entity")) == max(len(g) for g in vault.service.partition())
    assert int(_row(stdout, "candidate pairs").replace(",", "")) > 0
    assert "refused links" in stdout
    assert _row(stdout, "time: total").endswith(" s")
    assert "@" not in stdout

    retrained = ok(vault.run("resolve", "--retrain"))
    assert "(retrained)" in retrained and "time: training" in retrained


def test_review_lists_pairs_with_whole_ids_and_no_values(vault: Vault) -> None:
    stdout = ok(vault.run("identity", "review", "--limit", "5"))
    items = vault.service.review_queue(5)
    assert items, "the seeded data has pairs to review"
    for item in items:
        assert str(item.record_a) in stdout and str(item.record_b) in stdout  # never folded or cut
    rows = [line for line in stdout.splitlines() if UUID.search(line)]
    assert len(rows) == len(items)
    assert "@" not in stdout


def test_explain_prints_the_waterfall_of_a_pair(vault: Vault) -> None:
    with vault.platform.db.read() as session:
        edge = session.execute(select(MatchEdge).order_by(MatchEdge.weight.desc()).limit(1)).scalar_one()
    stdout = ok(vault.run("identity", "explain", str(edge.record_a), str(edge.record_b)))
    expected = vault.service.explain(edge.record_a, edge.record_b)
    assert expected.waterfall() in stdout
    assert stdout.splitlines()[-1].startswith("total") and "match" in stdout
    for term in expected.terms:
        assert term.name in stdout
    assert "@" not in stdout


def test_explain_entity_lists_its_records_and_links(vault: Vault) -> None:
    entity, members = _largest(vault)
    stdout = ok(vault.run("identity", "explain-entity", str(entity)))
    assert f"entity {entity}: {len(members)} record(s)" in stdout
    for record in members:
        assert re.search(rf"{record}  \(\w+\)", stdout), stdout
    assert "scored pairs between its records" in stdout
    assert "@" not in stdout


def test_merge_and_split_by_hand(vault: Vault) -> None:
    partition = vault.service.partition()
    first, second = (sorted(group, key=str)[0] for group in sorted(partition, key=len)[:2])
    assert vault.service.entity_of(first) != vault.service.entity_of(second)

    stdout = ok(vault.run("identity", "merge", str(first), str(second), "--reason", "same person"))
    merged = vault.service.entity_of(first)
    assert vault.service.entity_of(second) == merged
    assert f"merged: both records are entity {merged}" in stdout
    assert [(d.kind, d.actor, d.reason) for d in vault.service.decisions()] == [
        ("merge", f"cli:{getpass.getuser()}", "same person")
    ]

    stdout = ok(
        vault.run(
            "identity", "split", str(merged), str(second), "--reason", "twins", "--actor", "steward:ana"
        )
    )
    assert vault.service.entity_of(first) != vault.service.entity_of(second)
    assert {str(vault.service.entity_of(first)), str(vault.service.entity_of(second))} <= set(
        UUID.findall(stdout)
    )
    assert [(d.kind, d.actor) for d in vault.service.decisions()] == [("split", "steward:ana")]


def test_show_prints_provenance_and_values_only_when_asked(vault: Vault) -> None:
    entity, members = _largest(vault)
    profile = vault.service.golden(entity)
    values = {str(v.value) for v in profile.attributes.values()}
    assert any("@" in v for v in values), "the largest seeded entity has an email"

    plain = ok(vault.run("identity", "show", str(entity)))
    assert "@" not in plain
    for value in values:
        if len(value) >= 4:
            assert value not in plain
    for name, chosen in profile.attributes.items():
        row = next(line for line in plain.splitlines() if f" {name} " in line)
        assert chosen.source in row and chosen.record_id in row and chosen.strategy in row
        assert chosen.source_record_id in row
    assert f"{len(members)} record(s)" in plain

    revealed = ok(vault.run("identity", "show", str(entity), "--reveal"))
    for value in values:
        assert value in revealed


def test_bad_input_is_a_one_line_error(vault: Vault) -> None:
    known = _largest(vault)[1][0]
    nobody = uuid.uuid4()
    line = one_line_error(vault.run("identity", "explain", "not-a-uuid", str(known)))
    assert line == "error: RECORD_A is not a valid id (expected a UUID)"
    assert str(nobody) in one_line_error(vault.run("identity", "explain-entity", str(nobody)))
    line = one_line_error(vault.run("identity", "merge", str(known), str(known), "--reason", "x"))
    assert "itself" in line
