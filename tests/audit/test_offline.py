"""Exported slices are checked offline by a single self-contained file: a genuine slice passes; an altered
line, an untrusted key or a slice that does not end at its checkpoint fails, naming the line."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from cdp.audit import AuditError, canonical, offline
from cdp.audit.export import export_slice
from cdp.audit.sequencer import document_of
from cdp.db.models import AuditEntry
from cdp.platform import Platform
from cdp.vault.audit_keys import key_id_of
from tests.audit.test_chain import CHAIN_LENGTH, ORIGIN, record_reads, sealed_chain, service

OFFLINE_SOURCE = Path(offline.__file__)


@pytest.fixture
def exported(platform: Platform, tmp_path: Path) -> tuple[Path, str]:
    """A 20-entry chain exported to its checkpoint, and the trusted (only) public key."""
    chain = sealed_chain(platform)
    (public_key,) = chain.keys.values()
    path = tmp_path / "slice.jsonl"
    export_slice(platform.db, path)
    return path, public_key


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def fails_at(path: Path, *keys: str) -> offline.SliceError:
    with pytest.raises(offline.SliceError) as caught:
        offline.verify_file(path, keys)
    return caught.value


def test_an_exported_slice_verifies_offline_with_the_trusted_key(exported: tuple[Path, str]) -> None:
    path, key = exported

    report = offline.verify_file(path, [key])

    assert (report.first_seq, report.checkpoint_seq, report.entries) == (1, CHAIN_LENGTH, CHAIN_LENGTH)
    assert report.key_trusted and not report.warnings and report.origin == ORIGIN


def test_the_slice_holds_exactly_the_documents_the_sequencer_hashed(
    platform: Platform, exported: tuple[Path, str]
) -> None:
    path, _ = exported
    header, *entries, checkpoint = [json.loads(line) for line in lines_of(path)]
    with platform.db.read() as session:
        rows = (
            session.execute(select(AuditEntry).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq))
            .scalars()
            .all()
        )

    assert [e["document"] for e in entries] == [document_of(r, r.seq or 0, r.prev_hash or "") for r in rows]
    assert [e["hash"] for e in entries] == [r.hash for r in rows]
    assert header["public_keys"] == service(platform).public_keys()
    assert checkpoint["head_hash"] == rows[-1].hash
    assert all(line == canonical.canonical_json(json.loads(line)).encode() + b"\n" for line in lines_of(path))


def test_the_export_itself_is_audited(platform: Platform, exported: tuple[Path, str]) -> None:
    with platform.db.read() as session:
        details = session.execute(
            select(AuditEntry.details).where(AuditEntry.action == "audit.export")
        ).scalar_one()
    assert json.loads(details) == {"from_seq": 1, "to_seq": CHAIN_LENGTH, "entries": CHAIN_LENGTH}


def test_the_standalone_file_verifies_a_slice_without_cdp(exported: tuple[Path, str], tmp_path: Path) -> None:
    path, key = exported
    copy = tmp_path / "elsewhere" / "offline.py"
    copy.parent.mkdir()
    shutil.copy(OFFLINE_SOURCE, copy)

    passed = subprocess.run(
        [sys.executable, "-I", str(copy), str(path), "--public-key", key, "--origin", ORIGIN],
        capture_output=True,
        text=True,
        check=False,
        cwd=copy.parent,
    )
    unkeyed = subprocess.run(
        [sys.executable, "-I", str(copy), str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=copy.parent,
    )

    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.startswith(f"OK: entries 1..{CHAIN_LENGTH}")
    assert (
        unkeyed.returncode == 0
        and "WARNING" in unkeyed.stderr
        and "NOT independently trusted" in unkeyed.stdout
    )


def test_the_offline_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(OFFLINE_SOURCE.read_text(encoding="utf-8"))
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert imported - {"cryptography", "__future__"} <= sys.stdlib_module_names


def test_offline_and_core_canonical_rules_agree() -> None:
    """The standalone copy of the rules cannot drift from the ones the sequencer and signer use."""
    samples: list[dict[str, Any]] = [
        {"b": [1, 2, {"z": None, "a": True}], "a": "caf\u00e9 \u2603 \U0001f600", "c": ""},
        {"nested": {"k": ["x", -5, 10**20]}, "quote": '"\\\n\t'},
    ]
    for sample in samples:
        assert offline.canonical_json(sample) == canonical.canonical_json(sample)
        assert offline.document_hash(sample) == canonical.document_hash(sample)
    document = canonical.entry_document(
        seq=3,
        prev_hash="ab" * 32,
        entry_id="7d0d7c3c-0c55-4f43-8b7a-3c8f1b1f2a10",
        recorded_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        action="profile.read",
        outcome="success",
        actor="client-1",
        actor_kind="client",
        role=None,
        department=None,
        purpose="support",
        request_id=None,
        subjects='["a","b"]',
        fields='["email"]',
        details='{"n":1}',
    )
    assert offline.document_hash(document) == canonical.document_hash(document)
    assert document["v"] == offline.ENTRY_FORMAT_VERSION == canonical.FORMAT_VERSION
    assert offline.GENESIS_HASH == canonical.GENESIS_HASH
    signed_at = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert offline.timestamp(signed_at) == canonical.timestamp(signed_at)
    assert offline.checkpoint_message(
        ORIGIN, 42, "cd" * 32, canonical.timestamp(signed_at)
    ) == canonical.checkpoint_message(ORIGIN, 42, "cd" * 32, signed_at)
    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert offline.key_id_of(public.hex()) == key_id_of(public.hex())


def _flip(path: Path, line_no: int, needle: bytes) -> None:
    lines = lines_of(path)
    at = lines[line_no - 1].index(needle)
    line = bytearray(lines[line_no - 1])
    line[at] ^= 0x01
    lines[line_no - 1] = bytes(line)
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize(
    "needle",
    [b"rofile.read", b"upport", b"mail", b"records", b"cust-", b"client-", b"{", b":", b"entry"],
)
def test_flipping_one_byte_of_an_entry_line_fails_naming_that_line(
    exported: tuple[Path, str], needle: bytes
) -> None:
    path, key = exported
    _flip(path, 5, needle)

    error = fails_at(path, key)

    assert error.line == 5
    assert "line 5" in str(error)


def test_flipping_one_byte_in_a_hash_fails_naming_that_line(exported: tuple[Path, str]) -> None:
    path, key = exported
    lines = lines_of(path)
    at = lines[6].index(b'"hash":"') + len(b'"hash":"')
    line = bytearray(lines[6])
    line[at] = ord("0") if line[at] != ord("0") else ord("1")
    lines[6] = bytes(line)
    path.write_bytes(b"".join(lines))

    error = fails_at(path, key)

    assert (error.line, error.seq) == (7, 6)
    assert "altered" in error.reason


def test_a_wrong_public_key_fails_at_the_checkpoint(exported: tuple[Path, str]) -> None:
    path, _ = exported
    stranger = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )

    error = fails_at(path, stranger.hex())

    assert error.line == CHAIN_LENGTH + 2 and "not a trusted key" in error.reason


def test_a_slice_re_signed_by_another_key_passes_only_untrusted_and_fails_with_the_real_key(
    exported: tuple[Path, str],
) -> None:
    path, key = exported
    forger = Ed25519PrivateKey.generate()
    forged_key = (
        forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    )
    lines = [json.loads(line) for line in lines_of(path)]
    header, checkpoint = lines[0], lines[-1]
    header["public_keys"] = {offline.key_id_of(forged_key): forged_key}
    checkpoint["key_id"] = offline.key_id_of(forged_key)
    message = offline.checkpoint_message(
        ORIGIN, checkpoint["seq"], checkpoint["head_hash"], checkpoint["signed_at"]
    )
    checkpoint["signature"] = forger.sign(message).hex()
    path.write_text("".join(canonical.canonical_json(line) + "\n" for line in lines), encoding="ascii")

    untrusted = offline.verify_file(path)
    error = fails_at(path, key)

    assert not untrusted.key_trusted and untrusted.warnings
    assert error.line == CHAIN_LENGTH + 2 and "not a trusted key" in error.reason


def test_a_slice_that_does_not_end_at_its_checkpoint_fails(exported: tuple[Path, str]) -> None:
    path, key = exported
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:-2] + lines[-1:]))

    error = fails_at(path, key)

    assert error.line == CHAIN_LENGTH + 1
    assert f"covers seq {CHAIN_LENGTH}" in error.reason


def test_a_slice_without_its_checkpoint_fails(exported: tuple[Path, str]) -> None:
    path, key = exported
    path.write_bytes(b"".join(lines_of(path)[:-1]))

    assert "without a checkpoint" in fails_at(path, key).reason


def test_a_slice_missing_a_middle_entry_fails_naming_the_line_after_the_gap(
    exported: tuple[Path, str],
) -> None:
    path, key = exported
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:4] + lines[5:]))

    error = fails_at(path, key)

    assert (error.line, error.seq) == (5, 5) and "gap" in error.reason


def test_a_slice_from_a_later_seq_and_an_older_checkpoint_verifies(
    platform: Platform, tmp_path: Path
) -> None:
    chain = sealed_chain(platform)
    record_reads(platform, 5, start=100)
    service(platform).seal_and_checkpoint()
    path = tmp_path / "part.jsonl"

    result = export_slice(platform.db, path, from_seq=8, to_checkpoint=CHAIN_LENGTH)
    report = offline.verify_file(path, list(chain.keys.values()))

    assert (result.from_seq, result.to_seq, result.entries) == (8, CHAIN_LENGTH, CHAIN_LENGTH - 7)
    assert (report.first_seq, report.checkpoint_seq, report.entries) == (8, CHAIN_LENGTH, CHAIN_LENGTH - 7)


def test_export_names_what_cannot_be_exported(platform: Platform, tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no checkpoint"):
        export_slice(platform.db, tmp_path / "none.jsonl")
    sealed_chain(platform)
    with pytest.raises(AuditError, match="no checkpoint at seq 3"):
        export_slice(platform.db, tmp_path / "x.jsonl", to_checkpoint=3)
    with pytest.raises(AuditError, match="after the checkpoint"):
        export_slice(platform.db, tmp_path / "x.jsonl", from_seq=CHAIN_LENGTH + 1)
    assert not (tmp_path / "x.jsonl").exists()


def test_timestamps_are_rfc3339_for_any_year_and_agree_offline() -> None:
    """strftime's %Y drops the leading zero of years before 1000 on glibc; a since/until echoed back in a
    report must still be an RFC 3339 date-time, and the offline verifier must spell it the same way."""
    for moment in (datetime(634, 12, 15, 15, 52, 16, tzinfo=UTC), datetime(9, 1, 2, tzinfo=UTC)):
        spelled = canonical.timestamp(moment)
        assert spelled == offline.timestamp(moment)
        assert datetime.strptime(spelled, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) == moment
        assert len(spelled.split("-", 1)[0]) == 4
    assert canonical.timestamp(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
