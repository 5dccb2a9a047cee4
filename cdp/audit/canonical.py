"""The hashed form of an entry: canonical JSON, SHA-256, and the chain rule.

An entry's document is a JSON object with sorted keys, no insignificant white space, ASCII-only
escapes and no floats, so every implementation serializes it to the same bytes. Its hash is the
SHA-256 of those bytes, and the document holds the previous entry's hash (``prev_hash``): changing,
removing, inserting or reordering any entry changes every hash after it. ``docs/audit-verification.md``
describes the same rules for a verifier that has only an export file.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry ever sealed."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def timestamp(moment: datetime) -> str:
    """UTC, microseconds, ``Z``: one spelling per instant."""
    utc = moment.astimezone(UTC)
    # The year is padded by hand: strftime's %Y gives "634", not "0634", for years before 1000 on glibc,
    # which is not an RFC 3339 date-time (a since/until echoed back must still be one).
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.%fZ")


def entry_document(
    *,
    seq: int,
    prev_hash: str,
    entry_id: str,
    recorded_at: datetime,
    action: str,
    outcome: str,
    actor: str,
    actor_kind: str,
    role: str | None,
    department: str | None,
    purpose: str | None,
    request_id: str | None,
    subjects: str,
    fields: str,
    details: str,
) -> dict[str, Any]:
    """The document that is hashed. ``subjects``, ``fields`` and ``details`` arrive as the canonical JSON
    text stored in the row and are embedded parsed, so the document is one JSON value."""
    return {
        "v": FORMAT_VERSION,
        "seq": seq,
        "prev_hash": prev_hash,
        "id": entry_id,
        "recorded_at": timestamp(recorded_at),
        "action": action,
        "outcome": outcome,
        "actor": actor,
        "actor_kind": actor_kind,
        "role": role,
        "department": department,
        "purpose": purpose,
        "request_id": request_id,
        "subjects": json.loads(subjects),
        "fields": json.loads(fields),
        "details": json.loads(details),
    }


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()


def checkpoint_message(origin: str, seq: int, head_hash: str, signed_at: datetime) -> bytes:
    """What a checkpoint signature covers: plain text a person can read and a verifier can rebuild."""
    return (
        f"cdp audit checkpoint v{FORMAT_VERSION}\n"
        f"origin {origin}\n"
        f"size {seq}\n"
        f"head {head_hash}\n"
        f"time {timestamp(signed_at)}\n"
    ).encode("ascii")
