"""The suppression list: keyed hashes of the identifiers of erased people.

An erasure removes a person, but their old records still sit in the source systems; the next nightly
export from the CRM would quietly bring them back. So erasure leaves behind keyed hashes of the person's
strong identifiers (email, phone, national id, name with birth date, and each source's own record id),
and ingestion quarantines any row that matches one, with reason ``suppressed``, for a person to decide.

The hashes use their own blind-index kinds (``suppress_*``), so they never join against the live index
and reveal nothing without the blind-index key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from cdp.db.models import Suppression
from cdp.db.types import utcnow
from cdp.vault import Vault

KINDS = ("record", "email", "phone", "national_id", "name_dob")


def identifiers(
    source_id: uuid.UUID, source_record_id: str, normalized: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """The (kind, normalized value) pairs that identify a person in one record: the same function runs
    on the erased records and on every ingested row, so both sides normalize alike."""
    found = [("record", f"{source_id}:{source_record_id}")]
    if not normalized:
        return found
    email = normalized.get("email_match")
    if email:
        found.append(("email", str(email)))
    phone = normalized.get("phone")
    if phone:
        found.append(("phone", str(phone)))
    national_id = normalized.get("national_id")
    if national_id:
        found.append(("national_id", str(national_id)))
    given = normalized.get("first_name_keys") or []
    family = normalized.get("last_name_keys") or []
    dob = normalized.get("date_of_birth")
    if given and family and dob:
        found.append(("name_dob", f"{family[0]}|{given[0]}|{dob}"))
    return found


class SuppressionList:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault

    def _token(self, kind: str, value: str) -> bytes:
        return self.vault.blind.token(f"suppress_{kind}", value)

    def add(self, job_id: uuid.UUID, found: Iterable[tuple[str, str]]) -> int:
        """Suppress these identifiers (idempotent: already-suppressed ones are left as they are)."""
        wanted = {(kind, self._token(kind, value)) for kind, value in found}
        if not wanted:
            return 0
        existing = self._existing(wanted)
        rows = [
            {"kind": kind, "token": token, "job_id": job_id, "created_at": utcnow()}
            for kind, token in sorted(wanted - existing)
        ]
        if rows:
            self.session.execute(insert(Suppression), rows)
        return len(rows)

    def _existing(self, pairs: set[tuple[str, bytes]]) -> set[tuple[str, bytes]]:
        found: set[tuple[str, bytes]] = set()
        ordered = sorted(pairs)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            found.update(
                (kind, token)
                for kind, token in self.session.execute(
                    select(Suppression.kind, Suppression.token).where(
                        tuple_(Suppression.kind, Suppression.token).in_(chunk)
                    )
                )
            )
        return found

    def matches(self, rows: Sequence[list[tuple[str, str]]]) -> dict[int, list[str]]:
        """For each row's identifiers, which kinds are suppressed: {row index: [kinds]}, matches only."""
        tokens: dict[tuple[str, bytes], list[int]] = {}
        for index, found in enumerate(rows):
            for kind, value in found:
                tokens.setdefault((kind, self._token(kind, value)), []).append(index)
        if not tokens:
            return {}
        hits: dict[int, list[str]] = {}
        for kind, token in sorted(self._existing(set(tokens))):
            for index in tokens[(kind, token)]:
                hits.setdefault(index, []).append(kind)
        return hits

    def any(self) -> bool:
        return self.session.execute(select(Suppression.kind).limit(1)).first() is not None
