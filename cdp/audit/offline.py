"""Verify an exported slice of the cdp audit log with nothing but this file, Python 3.11+ and the
``cryptography`` package — no database, no cdp installation.

Usage::

    python offline.py slice.jsonl --public-key <64 hex digits> [--public-key ...] [--origin URL]

A third party copies this single file on purpose: it imports only the standard library and
``cryptography``, so what it checks does not depend on trusting the code of the installation whose log
is being checked. The hashing and message rules below are those of ``cdp/audit/canonical.py`` (a test
keeps the two in step); docs/audit-verification.md describes the procedure and what a pass proves.

The slice is JSON Lines: a header line, one line per entry (its hashed document and hash), in chain
order, and the signed checkpoint whose head is the last entry. Exit status: 0 pass, 1 the slice does
not verify (the first bad line is named), 2 the file or a key could not be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SLICE_FORMAT = "cdp-audit-slice"
SLICE_VERSION = 1
ENTRY_FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
_HEX = frozenset("0123456789abcdef")
_ENTRY_KEYS = {"type", "hash", "document"}


def canonical_json(value: Any) -> str:
    """Sorted keys, no white space between tokens, ASCII-only escapes, no NaN or infinities."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()


def timestamp(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    # The year is padded by hand: strftime's %Y gives "634", not "0634", for years before 1000 on glibc,
    # which is not an RFC 3339 date-time (a since/until echoed back must still be one).
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.%fZ")


def checkpoint_message(origin: str, seq: int, head_hash: str, signed_at: str) -> bytes:
    """The exact bytes a checkpoint signature covers; ``signed_at`` is the slice's timestamp text
    (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), used as written."""
    return (
        f"cdp audit checkpoint v{ENTRY_FORMAT_VERSION}\n"
        f"origin {origin}\n"
        f"size {seq}\n"
        f"head {head_hash}\n"
        f"time {signed_at}\n"
    ).encode("ascii")


def key_id_of(public_key_hex: str) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key: how a checkpoint names its key."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _signature_valid(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(signature_hex), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True


class SliceError(Exception):
    """The slice does not verify; ``line`` is the 1-based line of the file where it first went wrong."""

    def __init__(self, line: int, reason: str, seq: int | None = None) -> None:
        self.line = line
        self.reason = reason
        self.seq = seq
        where = f"line {line}" + (f" (entry seq {seq})" if seq is not None else "")
        super().__init__(f"{where}: {reason}")


@dataclass
class SliceReport:
    """What a passing slice established."""

    origin: str = ""
    entries: int = 0
    first_seq: int = 0
    checkpoint_seq: int = 0
    head_hash: str = ""
    signed_at: str = ""
    key_id: str = ""
    key_trusted: bool = False
    """False when the key came from the slice's own header: the signature then proves nothing."""
    warnings: list[str] = field(default_factory=list)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice would let a reader see one value while the hash covers the other."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def _parse(line_no: int, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except ValueError:
        raise SliceError(line_no, "not valid JSON, or a key given twice (the line was altered)") from None
    if not isinstance(value, dict):
        raise SliceError(line_no, "not a JSON object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    if header.get("type") != "header" or header.get("format") != SLICE_FORMAT:
        raise SliceError(1, f"the first line is not a {SLICE_FORMAT} header")
    if header.get("version") != SLICE_VERSION:
        raise SliceError(1, f"unsupported slice version {header.get('version')!r} (this verifier reads 1)")
    if not isinstance(header.get("origin"), str) or not isinstance(header.get("public_keys"), dict):
        raise SliceError(1, "the header lacks its origin or public keys")


def _check_entry(line_no: int, line: dict[str, Any], expected_seq: int | None, prev_hash: str | None) -> int:
    """Check one entry line against its own hash and its predecessor; return its seq."""
    document = line.get("document")
    if set(line) != _ENTRY_KEYS or line["type"] != "entry" or not isinstance(document, dict):
        raise SliceError(line_no, "expected an entry line: exactly type 'entry', hash and document")
    seq = document.get("seq")
    if not _is_seq(seq):
        raise SliceError(line_no, "the entry has no valid seq")
    assert isinstance(seq, int)
    if document.get("v") != ENTRY_FORMAT_VERSION:
        raise SliceError(line_no, f"unsupported entry format {document.get('v')!r}", seq)
    if expected_seq is not None and seq != expected_seq:
        raise SliceError(
            line_no, f"sequence gap: expected seq {expected_seq} (entries removed or reordered)", seq
        )
    if not _is_hash(document.get("prev_hash")) or not _is_hash(line.get("hash")):
        raise SliceError(line_no, "the entry's hash or prev_hash is not 64 lower-case hex digits", seq)
    if prev_hash is not None and document["prev_hash"] != prev_hash:
        raise SliceError(
            line_no, "prev_hash does not match the previous entry's hash (entries inserted or removed)", seq
        )
    if seq == 1 and document["prev_hash"] != GENESIS_HASH:
        raise SliceError(line_no, "the first entry of the log does not start from the genesis hash", seq)
    try:
        recomputed = document_hash(document)
    except ValueError:
        raise SliceError(line_no, "the document holds values that have no canonical form", seq) from None
    if recomputed != line["hash"]:
        raise SliceError(line_no, "the document does not match its hash (entry altered)", seq)
    return seq


def _trusted_key(
    line_no: int, key_id: str, trusted: Sequence[str], header_keys: dict[str, Any], report: SliceReport
) -> str:
    if trusted:
        for key in trusted:
            if key_id_of(key) == key_id:
                report.key_trusted = True
                return key
        raise SliceError(line_no, f"the checkpoint is signed by key {key_id}, which is not a trusted key")
    listed = header_keys.get(key_id)
    if not isinstance(listed, str):
        raise SliceError(line_no, f"the checkpoint is signed by key {key_id}, which the header does not list")
    report.warnings.append(
        f"WARNING: no trusted public key was given; the signature was checked with key {key_id} taken from "
        "the slice itself, which anyone who altered the slice could have replaced. Obtain the public key "
        "out of band and pass it with --public-key."
    )
    return listed


def _check_checkpoint(
    line_no: int,
    line: dict[str, Any],
    header: dict[str, Any],
    last_seq: int,
    head: str,
    trusted: Sequence[str],
    origin: str | None,
    report: SliceReport,
) -> None:
    if line.get("type") != "checkpoint":
        raise SliceError(line_no, "expected the checkpoint line")
    seq, head_hash, signed_at = line.get("seq"), line.get("head_hash"), line.get("signed_at")
    key_id, signature, signed_origin = line.get("key_id"), line.get("signature"), line.get("origin")
    if not (
        _is_seq(seq)
        and _is_hash(head_hash)
        and isinstance(signed_at, str)
        and isinstance(key_id, str)
        and isinstance(signature, str)
        and isinstance(signed_origin, str)
    ):
        raise SliceError(
            line_no, "the checkpoint lacks seq, head_hash, signed_at, key_id, signature or origin"
        )
    assert isinstance(seq, int) and isinstance(head_hash, str)
    if header.get("to_seq", seq) != seq:
        raise SliceError(line_no, f"the header says the slice ends at seq {header['to_seq']}", seq)
    if seq != last_seq:
        raise SliceError(
            line_no, f"the slice ends at seq {last_seq} but the checkpoint covers seq {seq} (not its head)"
        )
    if head_hash != head:
        raise SliceError(line_no, "the checkpoint's head hash is not the last entry's hash", seq)
    if signed_origin != header["origin"]:
        raise SliceError(line_no, "the checkpoint's origin differs from the header's")
    if origin is not None and signed_origin != origin:
        raise SliceError(line_no, f"the checkpoint was signed for origin {signed_origin!r}, not {origin!r}")
    try:
        message = checkpoint_message(signed_origin, seq, head_hash, signed_at)
    except UnicodeEncodeError:
        raise SliceError(line_no, "the checkpoint's origin or time is not ASCII") from None
    if "message" in line and line["message"] != message.decode("ascii"):
        raise SliceError(line_no, "the checkpoint's message text does not match its fields")
    key = _trusted_key(line_no, key_id, trusted, header["public_keys"], report)
    if not _signature_valid(key, message, signature):
        raise SliceError(line_no, f"the checkpoint signature is not valid under key {key_id}", seq)
    report.checkpoint_seq, report.head_hash = seq, head_hash
    report.signed_at, report.key_id, report.origin = signed_at, key_id, signed_origin


def verify_lines(
    lines: Iterable[str], public_keys: Sequence[str] = (), *, origin: str | None = None
) -> SliceReport:
    """Verify a slice given as its lines. ``public_keys``: trusted hex Ed25519 keys obtained out of band
    (if empty, the header's keys are used and the report says so). Raises :class:`SliceError`."""
    for key in public_keys:
        try:
            if len(bytes.fromhex(key)) != 32:
                raise ValueError
        except ValueError:
            raise ValueError("a public key is 64 hex digits (a raw Ed25519 key)") from None
    report = SliceReport()
    header: dict[str, Any] | None = None
    expected_seq: int | None = None
    prev_hash: str | None = None
    done = False
    line_no = 0
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if done:
            raise SliceError(line_no, "lines after the checkpoint")
        line = _parse(line_no, raw)
        if header is None:
            if line_no != 1:
                raise SliceError(line_no, "the header must be the first line")
            _check_header(line)
            header = line
        elif line.get("type") == "checkpoint":
            if expected_seq is None:
                raise SliceError(line_no, "the slice holds no entries")
            assert prev_hash is not None
            _check_checkpoint(line_no, line, header, expected_seq - 1, prev_hash, public_keys, origin, report)
            done = True
        else:
            seq = _check_entry(line_no, line, expected_seq, prev_hash)
            if expected_seq is None:
                if header.get("from_seq", seq) != seq:
                    raise SliceError(
                        line_no, f"the header says the slice starts at seq {header['from_seq']}", seq
                    )
                report.first_seq = seq
            expected_seq, prev_hash = seq + 1, line["hash"]
            report.entries += 1
    if header is None:
        raise SliceError(1, "the file is empty")
    if not done:
        raise SliceError(line_no + 1, "the slice ends without a checkpoint (truncated)")
    return report


def _text_lines(raw_lines: Iterable[bytes]) -> Iterator[str]:
    for line_no, raw in enumerate(raw_lines, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SliceError(line_no, "not UTF-8 text (the line was altered)") from None


def verify_file(path: Path, public_keys: Sequence[str] = (), *, origin: str | None = None) -> SliceReport:
    """Verify the slice in ``path`` (see :func:`verify_lines`)."""
    with path.open("rb") as handle:
        return verify_lines(_text_lines(handle), public_keys, origin=origin)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an exported cdp audit log slice offline.")
    parser.add_argument("slice", type=Path, help="the .jsonl slice written by `cdp audit export`")
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="HEX",
        help="a trusted checkpoint public key, obtained out of band (repeat for several)",
    )
    parser.add_argument("--origin", default=None, help="the installation the checkpoint must be signed for")
    args = parser.parse_args(argv)
    try:
        report = verify_file(args.slice, args.public_key, origin=args.origin)
    except SliceError as exc:
        print(f"FAILED: {exc}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(warning, file=sys.stderr)
    print(
        f"OK: entries {report.first_seq}..{report.checkpoint_seq} ({report.entries}) of {report.origin} "
        f"hash to head {report.head_hash}, signed at {report.signed_at} by key {report.key_id}"
        + ("" if report.key_trusted else " (key NOT independently trusted)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
