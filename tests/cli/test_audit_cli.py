"""`cdp audit ...` in-process on SQLite and PostgreSQL: seal, verify, export and check the export offline,
publish keys, rotate them and prune — and a raw-SQL tamper makes `verify` exit 1 naming the entry."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, text

from cdp.audit import AuditEvent, record, record_now
from cdp.cli import cli
from cdp.cli_audit import audit
from cdp.config import Settings
from cdp.db.models import AuditEntry
from cdp.db.types import utcnow
from cdp.platform import Platform

if "audit" not in cli.commands:
    cli.add_command(audit)


@pytest.fixture
def run(settings: Settings, platform: Platform) -> CliRunnerCall:
    return CliRunnerCall(settings)


class CliRunnerCall:
    """`cdp ...` in this process against the test's data directory and database."""

    def __init__(self, settings: Settings) -> None:
        self.env: dict[str, str | None] = {
            "CDP_CONFIG": None,
            "CDP_DATA_DIR": str(settings.data_dir),
            "CDP_DATABASE_URL": settings.database_url,
        }

    def __call__(self, *args: str, expect: int = 0, **env: str) -> Result:
        result = CliRunner().invoke(cli, list(args), env={**self.env, **env})
        assert result.exit_code == expect, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
        return result


def reads(platform: Platform, count: int) -> None:
    for i in range(count):
        record_now(platform.db, AuditEvent("profile.read", purpose="support", subjects=(f"cust-{i}",)))


def entries(platform: Platform, action: str) -> list[AuditEntry]:
    with platform.db.read() as session:
        return list(session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


def row(stdout: str, label: str) -> str:
    """The value cell of a `label` row of a two-column table."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no {label!r} row in:\n{stdout}")


def public_key(run: CliRunnerCall) -> str:
    lines = run("audit", "public-key").stdout.splitlines()
    active = [line.split() for line in lines if line.endswith(" active")]
    assert len(active) == 1, lines
    return active[0][1]


def test_seal_verify_export_and_verify_export_round_trip(
    run: CliRunnerCall, platform: Platform, tmp_path: Path
) -> None:
    reads(platform, 5)

    sealed = run("audit", "seal").stdout
    verified = run("audit", "verify").stdout
    key = public_key(run)
    exported = run("audit", "export", "--out", str(tmp_path / "slice.jsonl")).stdout
    checked = run("audit", "verify-export", str(tmp_path / "slice.jsonl"), "--public-key", key)

    assert "sealed: 5 entries" in sealed and "checkpoint: signed seq 5" in sealed
    assert "OK: the chain and its checkpoints verify" in verified and "head: seq 5 hash " in verified
    assert "exported entries 1..5 (5)" in exported
    assert checked.stdout.startswith("OK: entries 1..5 (5)") and not checked.stderr
    (verify_entry,) = entries(platform, "audit.verify")
    assert verify_entry.outcome == "success" and verify_entry.actor.startswith("operator:")
    assert json.loads(verify_entry.details)["entries"] == 5
    assert len(entries(platform, "audit.export")) == 1


def test_verify_counts_pending_entries_without_failing(run: CliRunnerCall, platform: Platform) -> None:
    reads(platform, 2)
    run("audit", "seal")
    reads(platform, 3)

    verified = run("audit", "verify").stdout

    assert row(verified, "pending (not sealed yet)") == "3"
    assert row(verified, "entries verified") == "2"


def test_verify_exits_1_naming_the_entry_after_a_raw_sql_tamper(
    run: CliRunnerCall, platform: Platform
) -> None:
    reads(platform, 6)
    run("audit", "seal")
    with platform.db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_entry SET purpose = 'marketing' WHERE seq = 3"))
    with platform.db.read() as session:
        tampered_id = session.execute(select(AuditEntry.id).where(AuditEntry.seq == 3)).scalar_one()

    failed = run("audit", "verify", expect=1).stdout

    assert f"FAILED at entry seq 3 (id {tampered_id}): content does not match its hash" in failed
    (verify_entry,) = entries(platform, "audit.verify")
    assert verify_entry.outcome == "failed" and json.loads(verify_entry.details)["failed_at_seq"] == 3


def test_verify_with_a_pinned_key_rejects_checkpoints_by_any_other_key(
    run: CliRunnerCall, platform: Platform
) -> None:
    reads(platform, 2)
    run("audit", "seal")
    key = public_key(run)
    stranger = "11" * 32

    assert "OK" in run("audit", "verify", "--public-key", key).stdout
    failed = run("audit", "verify", "--public-key", stranger, expect=1).stdout
    assert "no valid signature by a known key" in failed
    assert run("audit", "verify", "--public-key", "xyz", expect=2).exit_code == 2


def test_verify_export_names_the_altered_line_and_needs_no_database(
    run: CliRunnerCall, platform: Platform, tmp_path: Path
) -> None:
    reads(platform, 4)
    run("audit", "seal")
    key = public_key(run)
    path = tmp_path / "slice.jsonl"
    run("audit", "export", "--out", str(path))
    lines = path.read_text(encoding="ascii").splitlines(keepends=True)
    lines[3] = lines[3].replace('"purpose":"support"', '"purpose":"marketing"')
    path.write_text("".join(lines), encoding="ascii")
    nowhere = {
        "CDP_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "CDP_DATA_DIR": "/nonexistent",
    }

    failed = run("audit", "verify-export", str(path), "--public-key", key, expect=1, **nowhere).stdout

    assert failed.startswith("FAILED: line 4 (entry seq 3): the document does not match its hash")


def test_verify_export_without_a_trusted_key_warns_loudly(
    run: CliRunnerCall, platform: Platform, tmp_path: Path
) -> None:
    reads(platform, 2)
    run("audit", "seal")
    run("audit", "export", "--out", str(tmp_path / "slice.jsonl"))

    checked = run("audit", "verify-export", str(tmp_path / "slice.jsonl"))

    assert "WARNING: no trusted public key was given" in checked.stderr
    assert "(key NOT independently trusted)" in checked.stdout


def test_checkpoint_signs_only_a_head_that_moved(run: CliRunnerCall, platform: Platform) -> None:
    from cdp.audit.sequencer import seal

    reads(platform, 2)
    seal(platform.db)

    first = run("audit", "checkpoint").stdout
    again = run("audit", "checkpoint").stdout

    assert "checkpoint: signed seq 2" in first
    assert "no checkpoint signed" in again
    assert [json.loads(e.details)["seq"] for e in entries(platform, "audit.checkpoint")] == [2]


def test_rotate_key_signs_new_checkpoints_with_the_new_key_and_keeps_old_ones_verifiable(
    run: CliRunnerCall, platform: Platform
) -> None:
    reads(platform, 2)
    run("audit", "seal")
    old_key = public_key(run)

    rotated = run("audit", "rotate-key").stdout
    new_key = public_key(run)
    resealed = run("audit", "seal").stdout

    assert new_key != old_key and new_key in rotated
    listed = run("audit", "public-key").stdout
    assert old_key in listed and " retired " in listed
    (rotation,) = entries(platform, "key.signing_rotate")
    new_key_id = json.loads(rotation.details)["key_id"]
    assert f"with key {new_key_id}" in resealed
    assert "OK" in run("audit", "verify").stdout
    assert "OK" in run("audit", "verify", "--public-key", old_key, "--public-key", new_key).stdout


def test_prune_dry_run_then_prune_keeps_a_verifiable_chain(run: CliRunnerCall, platform: Platform) -> None:
    long_ago = utcnow() - timedelta(days=platform.settings.audit_retention_days + 30)
    with platform.db.transaction() as session:
        for i in range(3):
            record(session, AuditEvent("sources.read"), at=long_ago + timedelta(seconds=i))
    run("audit", "seal")

    dry = run("audit", "prune", "--dry-run").stdout
    kept_after_dry_run = len(entries(platform, "sources.read"))
    pruned = run("audit", "prune").stdout
    verified = run("audit", "verify").stdout

    assert "would prune 3 entries (seq 1..3)" in dry and kept_after_dry_run == 3
    assert "pruned 3 entries (seq 1..3)" in pruned and entries(platform, "sources.read") == []
    assert "OK" in verified
    assert "nothing to prune" in run("audit", "prune").stdout


def test_export_refuses_a_bad_checkpoint_or_path_and_audits_the_failure(
    run: CliRunnerCall, platform: Platform, tmp_path: Path
) -> None:
    reads(platform, 2)
    run("audit", "seal")

    usage = run("audit", "export", "--out", str(tmp_path / "x.jsonl"), "--to-checkpoint", "soon", expect=2)
    missing = run("audit", "export", "--out", str(tmp_path / "x.jsonl"), "--to-checkpoint", "1", expect=1)
    unwritable = run("audit", "export", "--out", str(tmp_path / "no" / "such" / "dir.jsonl"), expect=1)

    assert "--to-checkpoint" in usage.output
    assert "no checkpoint at seq 1" in str(missing.exception)
    assert "cannot write" in str(unwritable.exception)
    assert not (tmp_path / "x.jsonl").exists()
    assert [e.outcome for e in entries(platform, "audit.export")] == ["failed", "failed"]
