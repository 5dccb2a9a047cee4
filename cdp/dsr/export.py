"""The data-subject export (GDPR Art 15 access, Art 20 portability): everything held about one customer.

One zip, built in memory:

* ``export.json``, the whole export, machine-readable (the portable copy Art 20 asks for);
* ``records.csv``, ``record_versions.csv``, ``interactions.csv``, ``consent_events.csv`` and
  ``access_log.csv``, the same data as one table per kind, for a spreadsheet;
* ``README.txt``, what each file is, in plain language (Art 12: "concise, intelligible");
* ``manifest.json``, the format version, the time, the customer and request ids, every other file's size
  and SHA-256, and the counts, so the recipient (or a DPO later) can tell the archive is complete.

Where each part comes from, and why:

* the **golden profile** through :meth:`ProfileService.read`: the same access gate and the same audit
  entry as any profile read, so an export is never a way around the read path. The export is refused
  unless that read shows the reader every field in clear: an export hands out everything, so only a
  reader allowed to see everything (the DPO for ``dsr``, the customer for ``self_service``) may build one;
* every **source record** of the customer, all of its attributes with the normalized forms, and its
  **version history**, decrypted by :class:`~cdp.sources.records.RecordRepository` (the only reader of
  the ``enc_*`` columns), for exactly the records the profile read disclosed;
* the **interactions** (contact history) with their content, through
  :class:`~cdp.sources.interactions.InteractionRepository`;
* the **consent** events and the state derived from them, through :class:`~cdp.consent.ledger.ConsentLedger`,
  with the text of every consent version the customer was shown;
* the **access log**: who read the customer's data, when and why, exactly as ``/v1/me/access-log`` serves
  it (by department, role and purpose, never a member of staff's id).

Building the export records one ``dsr.export`` audit entry: the customer's and records' ids, the names of
what was exported and the counts, never a value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from cdp.access.gate import AccessDenied, Actor, UnknownPurpose
from cdp.access.policy import PROFILE_FIELDS
from cdp.audit import AuditEvent, Outcome, record_now
from cdp.audit.queries import MAX_PAGE, AccessEvent, transparency
from cdp.canonical import CANONICAL_FIELDS
from cdp.consent.ledger import ConsentLedger, RecordedEvent, derive
from cdp.db import Database
from cdp.db.models import ConsentPurposeText, Source, SourceRecordVersion
from cdp.db.types import utcnow
from cdp.profiles.service import CONTENT_KEYS, ProfileNotFound, ProfileService, ProfileView
from cdp.sources.interactions import InteractionRepository, TimelineEntry
from cdp.sources.records import RecordRepository, StoredRecord
from cdp.vault import Vault

FORMAT = "cdp-dsr-export"
FORMAT_VERSION = 1
EXPORT_PURPOSES = frozenset({"dsr", "self_service"})
"""The purposes an export may be built for: a DPO answering a request, or the customer themselves."""

EXPORTED_FIELDS: tuple[str, ...] = (*PROFILE_FIELDS, "record_versions", "consent", "access_log")
"""What an export discloses, by name: recorded as the audit entry's ``fields``."""

FILE_ORDER: tuple[str, ...] = (
    "README.txt",
    "manifest.json",
    "export.json",
    "records.csv",
    "record_versions.csv",
    "interactions.csv",
    "consent_events.csv",
    "access_log.csv",
)
"""The archive's members, in the order they are written."""

_INTERACTION_PAGE = 500
_ZIP_MODE = 0o644 << 16

RECORD_COLUMNS: tuple[str, ...] = (
    "record_id",
    "source",
    "line_of_business",
    "source_record_id",
    "version",
    "ingested_at",
    "updated_at",
    "last_activity_at",
    *CANONICAL_FIELDS,
    "attributes",
    "normalized",
)
VERSION_COLUMNS: tuple[str, ...] = (
    "record_id",
    "source",
    "version",
    "valid_from",
    "replaced_at",
    "source_record_id",
    "last_activity_at",
    *CANONICAL_FIELDS,
    "attributes",
    "normalized",
)
INTERACTION_COLUMNS: tuple[str, ...] = (
    "interaction_id",
    "record_id",
    "source",
    "occurred_at",
    "channel",
    "direction",
    "kind",
    "department",
    "source_interaction_id",
    *CONTENT_KEYS,
)
CONSENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "record_id",
    "purpose",
    "channel",
    "action",
    "purpose_version",
    "source",
    "occurred_at",
    "recorded_at",
    "expires_at",
    "recorded_by",
)
ACCESS_COLUMNS: tuple[str, ...] = ("at", "action", "department", "role", "purpose", "outcome")


@dataclass(frozen=True)
class ExportBundle:
    """A finished export: the zip's bytes, their SHA-256 (hex) and the manifest inside it."""

    content: bytes
    sha256: str
    manifest: dict[str, Any]

    def __repr__(self) -> str:
        # The bytes are the customer's data; keep them out of tracebacks and test output.
        return f"ExportBundle(size={len(self.content)}, sha256={self.sha256!r})"


class ExportBuilder:
    """Builds exports. ``consent`` defaults to a ledger over ``db`` with the default catalog."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        profiles: ProfileService,
        *,
        consent: ConsentLedger | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.profiles = profiles
        self.consent = consent or ConsentLedger(db)

    def build(
        self,
        actor: Actor,
        entity_id: uuid.UUID,
        *,
        purpose: str = "dsr",
        request_id: uuid.UUID | None = None,
    ) -> ExportBundle:
        """The export of customer ``entity_id`` for ``actor``.

        Raises :class:`ProfileNotFound` for an unknown customer (or one the actor may not know of) and
        :class:`AccessDenied` when the actor may not receive everything; both are audited as refused."""
        details: dict[str, Any] = {"request_id": str(request_id)} if request_id else {}
        if purpose not in EXPORT_PURPOSES:
            # The purpose is the caller's text: left out of the entry, like an unknown purpose of a read.
            self._refused(Outcome.DENIED, None, entity_id, {**details, "reason": "purpose"})
            raise AccessDenied("an export is built for purpose dsr or self_service only")
        try:
            view = self.profiles.read(actor, entity_id, purpose)
        except ProfileNotFound:
            self._refused(Outcome.NOT_FOUND, purpose, entity_id, details)
            raise
        except (AccessDenied, UnknownPurpose):
            self._refused(Outcome.DENIED, purpose, entity_id, {**details, "reason": "access_gate"})
            raise
        if view.redactions:
            self._refused(Outcome.DENIED, purpose, entity_id, {**details, "reason": "incomplete_disclosure"})
            raise AccessDenied(
                f"an export holds everything about the customer; role {actor.role} may not see "
                f"every field in clear for purpose {purpose}"
            )
        generated_at = utcnow()
        record_ids = [member.record_id for member in view.records]
        with self.db.read() as session:
            records = _records(session, self.vault, record_ids)
            interactions = _interactions(session, self.vault, records)
            events = self.consent.events_of_entity(session, entity_id)
            texts = _consent_texts(session, events)
        state = derive(self.consent.catalog, events, generated_at)
        subjects = (str(entity_id), *(str(record_id) for record_id in record_ids))
        access = _access_log(self.db, subjects)

        document = _document(
            generated_at, entity_id, request_id, view, records, interactions, events, state, texts, access
        )
        counts = {
            "records": len(records),
            "record_versions": sum(len(r.versions) for r in records),
            "interactions": len(interactions),
            "consent_events": len(events),
            "access_log": len(access),
        }
        files = {
            "export.json": _json_bytes(document),
            "records.csv": _csv_bytes(RECORD_COLUMNS, (_record_row(r) for r in records)),
            "record_versions.csv": _csv_bytes(
                VERSION_COLUMNS, (_version_row(r, v) for r in records for v in r.versions)
            ),
            "interactions.csv": _csv_bytes(INTERACTION_COLUMNS, (_interaction_row(i) for i in interactions)),
            "consent_events.csv": _csv_bytes(CONSENT_COLUMNS, (_consent_row(e) for e in events)),
            "access_log.csv": _csv_bytes(ACCESS_COLUMNS, (_access_row(a) for a in access)),
            "README.txt": _readme(counts).encode("utf-8"),
        }
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "generated_at": _iso(generated_at),
            "customer_id": str(entity_id),
            "request_id": str(request_id) if request_id else None,
            "purpose": purpose,
            "files": [
                {"name": name, "size": len(files[name]), "sha256": hashlib.sha256(files[name]).hexdigest()}
                for name in FILE_ORDER
                if name != "manifest.json"
            ],
            "counts": counts,
        }
        files["manifest.json"] = _json_bytes(manifest)
        content = _zip(files, generated_at)
        digest = hashlib.sha256(content).hexdigest()
        record_now(
            self.db,
            AuditEvent(
                "dsr.export",
                Outcome.SUCCESS,
                purpose,
                subjects,
                EXPORTED_FIELDS,
                {
                    **details,
                    **counts,
                    "format_version": FORMAT_VERSION,
                    "size": len(content),
                    "sha256": digest,
                },
            ),
        )
        return ExportBundle(content, digest, manifest)

    def _refused(
        self, outcome: Outcome, purpose: str | None, entity_id: uuid.UUID, details: Mapping[str, Any]
    ) -> None:
        record_now(self.db, AuditEvent("dsr.export", outcome, purpose, (str(entity_id),), (), details))


# -- gathering -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    version: int
    valid_from: datetime | None
    replaced_at: datetime | None
    snapshot: dict[str, Any]


@dataclass(frozen=True)
class _Record:
    stored: StoredRecord
    source: str
    line_of_business: str
    versions: list[_Version]


@dataclass(frozen=True)
class _Interaction:
    entry: TimelineEntry
    source: str


def _records(session: Session, vault: Vault, record_ids: Sequence[uuid.UUID]) -> list[_Record]:
    """The records, fully decrypted, with their earlier versions, ordered by source and the source's own
    record id (what the customer recognises), then by id."""
    repository = RecordRepository(session, vault)
    stored = repository.get_many(record_ids)
    sources = {
        row.id: (row.name, row.line_of_business)
        for row in session.execute(select(Source.id, Source.name, Source.line_of_business))
    }
    times: dict[tuple[uuid.UUID, int], tuple[datetime, datetime]] = {
        (row.record_id, row.version): (row.valid_from, row.replaced_at)
        for row in session.execute(
            select(
                SourceRecordVersion.record_id,
                SourceRecordVersion.version,
                SourceRecordVersion.valid_from,
                SourceRecordVersion.replaced_at,
            ).where(SourceRecordVersion.record_id.in_(list(record_ids)))
        )
    }
    out = []
    for record in stored:
        versions = []
        for snapshot in repository.history(record.id):
            number = int(snapshot.get("version", 0))
            valid_from, replaced_at = times.get((record.id, number), (None, None))
            versions.append(_Version(number, valid_from, replaced_at, snapshot))
        name, line = sources.get(record.source_id, ("unknown", "unknown"))
        out.append(_Record(record, name, line, versions))
    out.sort(key=lambda r: (r.source, r.stored.data.source_record_id, str(r.stored.id)))
    return out


def _interactions(session: Session, vault: Vault, records: Sequence[_Record]) -> list[_Interaction]:
    """Every interaction of the records' subjects with its content, oldest first."""
    subject_ids = sorted({r.stored.subject_id for r in records}, key=str)
    repository = InteractionRepository(session, vault)
    entries: list[TimelineEntry] = []
    cursor: str | None = None
    while subject_ids:
        page = repository.timeline(subject_ids, limit=_INTERACTION_PAGE, cursor=cursor, with_details=True)
        entries.extend(page.entries)
        cursor = page.next_cursor
        if cursor is None:
            break
    names = {row.id: row.name for row in session.execute(select(Source.id, Source.name))}
    found = [_Interaction(entry, names.get(entry.source_id, "unknown")) for entry in entries]
    found.sort(key=lambda i: (i.entry.occurred_at, str(i.entry.id)))
    return found


def _consent_texts(session: Session, events: Sequence[RecordedEvent]) -> list[ConsentPurposeText]:
    """The text of every consent version the customer's events refer to: what they actually agreed to."""
    keys = sorted({(event.purpose, event.purpose_version) for event in events})
    if not keys:
        return []
    rows = session.execute(
        select(ConsentPurposeText).where(
            tuple_(ConsentPurposeText.purpose, ConsentPurposeText.version).in_(keys)
        )
    ).scalars()
    return sorted(rows, key=lambda row: (row.purpose, row.version))


def _access_log(db: Database, subjects: Sequence[str]) -> list[AccessEvent]:
    """The customer's access log, every page, oldest first."""
    items: list[AccessEvent] = []
    cursor: str | None = None
    while True:
        page = transparency(db, subjects, limit=MAX_PAGE, cursor=cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    items.reverse()
    return items


# -- the document --------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO-8601 UTC, dates as ISO dates, decimals as text, keys of free-form
    mappings sorted (so the same data always gives the same bytes)."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(key): _plain(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _actor_kind(actor: str) -> str:
    """Who recorded a consent event, by kind only (``customer``, ``user``, ``client``, ``system`` …):
    like the access log, the export names no member of staff or client."""
    return actor.split(":", 1)[0] if actor else "unknown"


def _record_entry(record: _Record) -> dict[str, Any]:
    data = record.stored.data
    return {
        "record_id": str(record.stored.id),
        "source": record.source,
        "line_of_business": record.line_of_business,
        "source_record_id": data.source_record_id,
        "version": record.stored.version,
        "ingested_at": _iso(record.stored.ingested_at),
        "updated_at": _iso(record.stored.updated_at),
        "last_activity_at": _iso(record.stored.last_activity_at),
        "fields": {name: _plain(getattr(data, name)) for name in CANONICAL_FIELDS},
        "attributes": _plain(data.attributes),
        "normalized": _plain(record.stored.normalized),
        "versions": [_version_entry(version) for version in record.versions],
    }


def _version_entry(version: _Version) -> dict[str, Any]:
    values = version.snapshot.get("record") or {}
    return {
        "version": version.version,
        "valid_from": _iso(version.valid_from),
        "replaced_at": _iso(version.replaced_at),
        "source_record_id": values.get("source_record_id"),
        "last_activity_at": version.snapshot.get("last_activity_at"),
        "fields": {name: _plain(values.get(name)) for name in CANONICAL_FIELDS},
        "attributes": _plain(values.get("attributes") or {}),
        "normalized": _plain(version.snapshot.get("normalized")),
    }


def _interaction_entry(item: _Interaction) -> dict[str, Any]:
    entry = item.entry
    details = entry.details
    return {
        "interaction_id": str(entry.id),
        "record_id": str(entry.record_id),
        "source": item.source,
        "occurred_at": _iso(entry.occurred_at),
        "channel": entry.channel,
        "direction": entry.direction,
        "kind": entry.kind,
        "department": entry.department,
        "source_interaction_id": details.get("interaction_id"),
        "content": {key: _plain(details.get(key)) for key in CONTENT_KEYS},
        "other": _plain({k: v for k, v in details.items() if k not in (*CONTENT_KEYS, "interaction_id")}),
    }


def _consent_entry(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": str(event.id),
        "record_id": str(event.record_id),
        "purpose": event.purpose,
        "channel": event.channel,
        "action": event.action,
        "purpose_version": event.purpose_version,
        "source": event.source,
        "occurred_at": _iso(event.occurred_at),
        "recorded_at": _iso(event.recorded_at),
        "expires_at": _iso(event.expires_at),
        "recorded_by": _actor_kind(event.actor),
    }


def _access_entry(event: AccessEvent) -> dict[str, Any]:
    return {
        "at": _iso(event.at),
        "action": event.action,
        "department": event.department,
        "role": event.role,
        "purpose": event.purpose,
        "outcome": event.outcome,
    }


def _document(
    generated_at: datetime,
    entity_id: uuid.UUID,
    request_id: uuid.UUID | None,
    view: ProfileView,
    records: Sequence[_Record],
    interactions: Sequence[_Interaction],
    events: Sequence[RecordedEvent],
    state: Mapping[str, Any],
    texts: Sequence[ConsentPurposeText],
    access: Sequence[AccessEvent],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generated_at": _iso(generated_at),
        "customer_id": str(entity_id),
        "request_id": str(request_id) if request_id else None,
        "profile": view.to_dict(),
        "records": [_record_entry(record) for record in records],
        "interactions": [_interaction_entry(item) for item in interactions],
        "consent": {
            "events": [_consent_entry(event) for event in events],
            "state": [_plain(purpose_state.to_dict()) for _, purpose_state in sorted(state.items())],
            "texts": [
                {
                    "purpose": text.purpose,
                    "version": text.version,
                    "lawful_basis": text.lawful_basis,
                    "text": text.text,
                }
                for text in texts
            ],
        },
        "access_log": [_access_entry(event) for event in access],
    }


# -- files ---------------------------------------------------------------------------------------------


def _json_bytes(document: Any) -> bytes:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    # Lone surrogates (undecodable source bytes kept as escapes) cannot be UTF-8; keep them visible.
    return text.encode("utf-8", errors="backslashreplace")


def _cell(value: Any) -> str:
    """A CSV cell: empty for nothing, JSON text for nested values, the plain value otherwise."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


def _record_row(record: _Record) -> dict[str, Any]:
    entry = _record_entry(record)
    return {**entry, **entry["fields"]}


def _version_row(record: _Record, version: _Version) -> dict[str, Any]:
    entry = _version_entry(version)
    return {**entry, **entry["fields"], "record_id": str(record.stored.id), "source": record.source}


def _interaction_row(item: _Interaction) -> dict[str, Any]:
    entry = _interaction_entry(item)
    return {**entry, **entry["content"]}


def _consent_row(event: RecordedEvent) -> dict[str, Any]:
    return _consent_entry(event)


def _access_row(event: AccessEvent) -> dict[str, Any]:
    return _access_entry(event)


def _zip(files: Mapping[str, bytes], generated_at: datetime) -> bytes:
    """The archive: members in :data:`FILE_ORDER`, each stamped with the export's time, so the same
    content at the same time gives the same bytes."""
    stamp = generated_at.astimezone(UTC)
    date_time = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in FILE_ORDER:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = _ZIP_MODE
            archive.writestr(info, files[name])
    return buffer.getvalue()


def _readme(counts: Mapping[str, int]) -> str:
    return f"""YOUR DATA
=========

This archive holds a copy of the personal data we hold about you, as you asked for under the
General Data Protection Regulation (article 15, right of access, and article 20, right to data
portability). Every file is UTF-8 text. Times are in UTC (ISO 8601, for example
2025-01-15T11:00:00+00:00).

What is in it
-------------

export.json
    Everything below in one machine-readable file (JSON). Use it to move your data to another
    service. It starts with your profile: the details we consider current, and for each one which
    of our systems it came from ("source"), which record ("record_id") and how we chose it
    ("strategy").

records.csv  ({counts["records"]} rows)
    One row per record a system of ours holds about you ("source" is the system,
    "line_of_business" the part of the business that uses it, "source_record_id" that system's own
    number for you). Every detail as we received it, plus "attributes" (any other details that
    system keeps) and "normalized" (the same details in the standard form we use to recognise
    you, for example your phone number in international format), and when the record was
    first received, last changed and last active.

record_versions.csv  ({counts["record_versions"]} rows)
    Earlier versions of those records: what a record said before it was changed, between
    "valid_from" and "replaced_at".

interactions.csv  ({counts["interactions"]} rows)
    Your contact history with us: e-mails, calls, chats, tickets, purchases, with what was
    recorded about each ("summary", "content", "outcome", "amount", "currency").

consent_events.csv  ({counts["consent_events"]} rows)
    Every time you gave, withdrew or let lapse your permission for a use of your data, on which
    channel, through which system, and which version of the text you were shown
    ("purpose_version"). "recorded_by" says whether you, a member of staff ("user"), one of our
    systems ("client", "system") or an operator recorded it. export.json also holds the text of
    each version and whether each permission holds today.

access_log.csv  ({counts["access_log"]} rows)
    Who looked at your data, when and why: the department, the role and the stated purpose of
    each access, including refused attempts. We do not name individual members of staff.
    Preparing this export is listed here too.

manifest.json
    A list of the files above with their size and SHA-256 checksum, the number of items in each,
    when the archive was made and its reference numbers. If a checksum does not match, the file
    was changed after we made it.

Spreadsheets
------------

The CSV files open in any spreadsheet program (choose UTF-8 and comma-separated when asked).
Values are exactly as we hold them; where a value has parts of its own (for example
"attributes") it is written as JSON text. Some programs treat a cell that starts with = + - or
@ as a formula: import the files as text to see every value as it is.

Questions
---------

If something is missing or wrong, you may ask us to correct it, and you may complain to your
data protection authority.
"""
