"""``cdp audit export``: a self-contained JSON Lines slice of the sealed log, ending at a signed checkpoint.

The slice carries everything a third party needs besides the public key (which they must obtain out of
band): each entry's hashed document and hash, and the checkpoint that signs the last one. It is checked
by :mod:`cdp.audit.offline`, a single file with no cdp imports. Format::

    {"type":"header","format":"cdp-audit-slice","version":1,"origin":...,"exported_at":...,
     "from_seq":N,"to_seq":M,"entries":M-N+1,"public_keys":{key_id: hex}}
    {"type":"entry","hash":...,"document":{"v":1,"seq":N,"prev_hash":...,...}}
    ...
    {"type":"checkpoint","origin":...,"seq":M,"head_hash":...,"signed_at":...,"key_id":...,
     "signature":...,"message":...}

Every line is canonical JSON. The exporter copies what is stored and repairs nothing: a tampered entry
is exported as it is and fails the offline check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.audit.canonical import canonical_json, timestamp
from cdp.audit.checkpoints import Checkpoint, all_checkpoints
from cdp.audit.events import AuditError, AuditEvent
from cdp.audit.log import record_now
from cdp.audit.offline import SLICE_FORMAT, SLICE_VERSION
from cdp.audit.sequencer import document_of
from cdp.db import Database
from cdp.db.models import AuditEntry, AuditSigningKey
from cdp.db.types import utcnow

BATCH = 2000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    from_seq: int
    to_seq: int
    entries: int
    checkpoint: Checkpoint


def checkpoint_line(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint as the slice states it; ``signed_at`` in the exact text the signature covers."""
    return {
        "type": "checkpoint",
        "origin": checkpoint.origin,
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "signed_at": timestamp(checkpoint.signed_at),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
        "message": checkpoint.message.decode("ascii"),
    }


def _choose_checkpoint(session: Session, to_checkpoint: int | None) -> Checkpoint:
    checkpoints = all_checkpoints(session)
    if not checkpoints:
        raise AuditError("no checkpoint has been signed yet; run `cdp audit seal` first")
    if to_checkpoint is None:
        return checkpoints[-1]
    for checkpoint in checkpoints:
        if checkpoint.seq == to_checkpoint:
            return checkpoint
    raise AuditError(f"there is no checkpoint at seq {to_checkpoint}; `cdp audit verify` lists the latest")


def _write_entries(session: Session, handle: IO[str], from_seq: int, to_seq: int) -> int:
    written = 0
    expected = from_seq
    while expected <= to_seq:
        batch = (
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq >= expected, AuditEntry.seq <= to_seq)
                .order_by(AuditEntry.seq)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
        if not batch:
            break
        for entry in batch:
            if entry.seq != expected or entry.prev_hash is None or entry.hash is None:
                raise AuditError(
                    f"the sealed log has no entry at seq {expected}; `cdp audit verify` locates the damage"
                )
            document = document_of(entry, entry.seq, entry.prev_hash)
            handle.write(canonical_json({"type": "entry", "hash": entry.hash, "document": document}) + "\n")
            written += 1
            expected += 1
    if expected != to_seq + 1:
        raise AuditError(
            f"the sealed log ends before seq {to_seq}; run `cdp audit verify` to locate the damage"
        )
    return written


def export_slice(
    db: Database, out: Path, *, from_seq: int | None = None, to_checkpoint: int | None = None
) -> ExportResult:
    """Write the sealed entries ``from_seq`` (default: the oldest kept) through a checkpoint's seq
    (default: the latest checkpoint) to ``out``, then record ``audit.export``.

    The file appears only complete: it is written beside ``out`` and renamed into place."""
    with db.read() as session:
        checkpoint = _choose_checkpoint(session, to_checkpoint)
        oldest = session.execute(select(func.min(AuditEntry.seq))).scalar_one()
        if oldest is None:
            raise AuditError("the sealed log is empty")
        start = oldest if from_seq is None else from_seq
        if start < oldest:
            raise AuditError(f"entries before seq {oldest} were pruned; export from seq {oldest} or later")
        if start > checkpoint.seq:
            raise AuditError(f"seq {start} is after the checkpoint at seq {checkpoint.seq}")
        keys = {
            key_id: public_key
            for key_id, public_key in session.execute(
                select(AuditSigningKey.key_id, AuditSigningKey.public_key).order_by(
                    AuditSigningKey.created_at
                )
            )
        }
        header = {
            "type": "header",
            "format": SLICE_FORMAT,
            "version": SLICE_VERSION,
            "origin": checkpoint.origin,
            "exported_at": timestamp(utcnow()),
            "from_seq": start,
            "to_seq": checkpoint.seq,
            "entries": checkpoint.seq - start + 1,
            "public_keys": keys,
        }
        partial = out.with_name(f".{out.name}.partial")
        try:
            with partial.open("w", encoding="ascii", newline="\n") as handle:
                handle.write(canonical_json(header) + "\n")
                written = _write_entries(session, handle, start, checkpoint.seq)
                handle.write(canonical_json(checkpoint_line(checkpoint)) + "\n")
            os.replace(partial, out)
        except OSError as exc:
            raise AuditError(f"cannot write {out}: {exc.strerror or type(exc).__name__}") from None
        finally:
            partial.unlink(missing_ok=True)
    record_now(
        db,
        AuditEvent(
            "audit.export",
            details={"from_seq": start, "to_seq": checkpoint.seq, "entries": written},
        ),
    )
    return ExportResult(out, start, checkpoint.seq, written, checkpoint)
