"""The ingest service: source file or API batch → mapped, validated, normalized, encrypted records and
interactions, upserted by natural key, with bad rows quarantined.

Guarantees:
* **Idempotent.** (source, source record id) is the natural key; a keyed fingerprint of the mapped row
  tells unchanged from changed without decrypting, so re-ingesting a file changes nothing, and a changed
  row becomes a new version with the old one kept encrypted in its history.
* **Bad rows never stop a batch.** They are quarantined with a reason code and can be retried after the
  mapping or the data is fixed.
* **No half rows.** Each chunk (records, blind indexes, quarantine entries and the run's progress) is one
  transaction. A run killed half-way leaves whole chunks; ingesting the same content again resumes after
  the last committed chunk, and the fingerprints make any overlap harmless.
* **Nothing unaudited.** Each chunk transaction records one ``records.ingest`` / ``interactions.ingest``
  entry (the ids of the records it wrote, the canonical fields the mapping supplies, the chunk's counts),
  so the write and its entry commit or roll back together. A chunk whose rows were all unchanged still
  records its entry, with no subjects: the log shows every chunk a source pushed, and who was touched only
  where something was written. Re-processing or discarding quarantined rows and registering a source are
  recorded the same way, in the transaction that does it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, Outcome, record
from cdp.audit.context import current_scope
from cdp.consent.ledger import ConsentLedger
from cdp.db import Database
from cdp.db.models import ConsentEvent, IngestRun, Interaction, Source, SourceRecord
from cdp.db.statistics import refresh_if_stale
from cdp.db.types import utcnow
from cdp.dsr.suppression import SuppressionList
from cdp.dsr.suppression import identifiers as suppression_identifiers
from cdp.errors import CdpError
from cdp.identity.service import IdentityService
from cdp.sources.interactions import InteractionRepository, NewInteraction
from cdp.sources.mapping import SourceMapping
from cdp.sources.prepare import (
    PreparedRecord,
    Rejected,
    parse_datetime,
    prepare_interaction,
    prepare_record,
    safe_column,
)
from cdp.sources.quarantine import QuarantineRepository, Rejection
from cdp.sources.readers import RawRow, read_rows
from cdp.sources.records import NewRecord, RecordRepository, SourceNotFound
from cdp.vault import Vault

Progress = Callable[[int], None]
KINDS = ("records", "interactions")
MAX_API_BATCH = 1000
"""Largest batch the HTTP API accepts in one request (documented in the OpenAPI spec)."""

_READER_DETAILS = {
    "encoding_error": "bytes that are not valid in the source's declared encoding",
    "malformed_json": "the line is not valid JSON",
    "malformed_row": "the row does not fit the header (or is not a JSON object)",
}
T = TypeVar("T")


class IngestError(CdpError):
    pass


@dataclass
class IngestSummary:
    run_id: uuid.UUID
    source: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    resumed_after_row: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    rejections: list[tuple[int, str, str]] = field(default_factory=list)
    """(row number, reason, detail) of rejected rows, the first ``MAX_REPORTED_REJECTIONS``."""


MAX_REPORTED_REJECTIONS = 1000


@dataclass(frozen=True)
class SourceInfo:
    id: uuid.UUID
    name: str
    line_of_business: str
    records: int
    interactions: int
    quarantined: int


@dataclass(frozen=True)
class RetrySummary:
    retried: int
    reprocessed: int
    still_rejected: int


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _rounds(items: Sequence[T], key: Callable[[T], object]) -> Iterator[list[T]]:
    """Split items so no round holds the same key twice, preserving order within a key: a file that
    lists one record twice is applied as insert-then-update, as if the rows came in two files."""
    pending = list(items)
    while pending:
        seen: set[object] = set()
        this_round: list[T] = []
        later: list[T] = []
        for item in pending:
            k = key(item)
            (later if k in seen else this_round).append(item)
            seen.add(k)
        yield this_round
        pending = later


def _written_fields(mapping: SourceMapping, kind: str) -> tuple[str, ...]:
    """Canonical names of what the mapping supplies for ``kind``: the audit entry names the fields a
    source writes, never its own column names (which can say more than the data model does)."""
    if kind == "records":
        section = mapping.records
        extra: list[str] = ["attributes"] if section.attributes else []
    else:
        assert mapping.interactions is not None
        section = mapping.interactions
        extra = list(section.defaults)
    return tuple(sorted({*section.fields.values(), *extra}))


def _prepare(
    rows: list[RawRow], prepare: Callable[[dict[str, Any]], T], rejected: list[Rejection]
) -> list[tuple[RawRow, T]]:
    """Prepare each row, collecting reader errors and rejections instead of stopping."""
    prepared = []
    for raw in rows:
        if raw.error:
            rejected.append(Rejection(raw.number, raw.error, _READER_DETAILS[raw.error], raw.values))
            continue
        try:
            prepared.append((raw, prepare(raw.values)))
        except Rejected as exc:
            rejected.append(Rejection(raw.number, exc.reason, exc.detail, raw.values))
    return prepared


_GRANT = frozenset({"true", "yes", "1", "y"})
_WITHDRAW = frozenset({"false", "no", "0", "n"})


@dataclass(frozen=True)
class _Say:
    """What one row says about one consent purpose on one channel."""

    purpose: str
    channel: str
    action: str
    at: datetime | None


def _consent_says(values: dict[str, Any], mapping: SourceMapping, now: datetime) -> list[_Say]:
    """The row's consent columns as grant/withdraw; an unreadable value rejects the row rather than
    guessing what the customer meant."""
    says: list[_Say] = []
    for column in mapping.consent:
        raw = values.get(column.column)
        text = str(raw).strip().lower() if raw is not None else ""
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        if not text:
            continue
        if column.values:
            vocabulary = dict(column.values)
            if text not in vocabulary:
                raise Rejected(
                    "invalid_consent",
                    f"column {safe_column(column.column)} must be one of {', '.join(vocabulary)} or empty",
                )
            if vocabulary[text] == "none":
                continue
            action = vocabulary[text]
        elif text in _GRANT:
            action = "grant"
        elif text in _WITHDRAW:
            action = "withdraw"
        else:
            raise Rejected(
                "invalid_consent",
                f"column {safe_column(column.column)} must be true/yes/1/y, false/no/0/n or empty",
            )
        at = None
        when = values.get(column.at) if column.at else None
        if column.at and when is not None and str(when).strip():
            try:
                at = parse_datetime(str(when).strip(), mapping.datetime_formats, column.at)
            except Rejected:
                raise Rejected(
                    "invalid_consent", f"column {safe_column(column.at)} matches no declared datetime format"
                ) from None
            if at > now:
                raise Rejected("invalid_consent", f"column {safe_column(column.at)} is in the future")
        says.append(_Say(column.purpose, column.channel, action, at))
    return says


class IngestService:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        *,
        chunk_size: int = 500,
        today: date | None = None,
        resolve: bool = True,
    ) -> None:
        """``resolve``: run incremental identity resolution on every changed record, in the chunk's
        transaction (the write path of DESIGN.md); off only for tools that resolve in batch afterwards."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.db = db
        self.vault = vault
        self.chunk_size = chunk_size
        self.today = today
        self.resolver: IdentityService | None = IdentityService(db, vault) if resolve else None
        self._ledger: ConsentLedger | None = None

    # -- sources -------------------------------------------------------------------------------------

    def register_source(self, mapping_toml: str, *, origin: str = "mapping") -> tuple[SourceMapping, bool]:
        """Register a source with its mapping, or replace the mapping of an existing one.
        Returns the parsed mapping and whether the source is new."""
        mapping = SourceMapping.from_toml(mapping_toml, origin=origin)
        with self.db.transaction() as session:
            source = session.execute(select(Source).where(Source.name == mapping.name)).scalar_one_or_none()
            created = source is None
            if source is None:
                session.add(
                    Source(
                        id=uuid.uuid4(),
                        name=mapping.name,
                        line_of_business=mapping.line_of_business,
                        mapping_toml=mapping_toml,
                        created_at=utcnow(),
                    )
                )
            else:
                if source.line_of_business != mapping.line_of_business:
                    raise IngestError(
                        f"source {mapping.name!r} is registered for {source.line_of_business}; "
                        "a source cannot change its line of business"
                    )
                source.mapping_toml = mapping_toml
                source.updated_at = utcnow()
            record(
                session,
                AuditEvent(
                    "sources.register",
                    details={
                        "source": mapping.name,
                        "line_of_business": mapping.line_of_business,
                        "created": created,
                    },
                ),
            )
            return mapping, created

    def line_of_business(self, source_name: str) -> str:
        with self.db.read() as session:
            lob = session.execute(select(Source.line_of_business).where(Source.name == source_name)).scalar()
        if lob is None:
            raise SourceNotFound(f"source {source_name!r} is not registered")
        return lob

    def mapping(self, session: Session, source_name: str) -> tuple[uuid.UUID, SourceMapping]:
        row = session.execute(
            select(Source.id, Source.mapping_toml).where(Source.name == source_name)
        ).one_or_none()
        if row is None:
            raise SourceNotFound(
                f"source {source_name!r} is not registered; run `cdp sources register MAPPING`"
            )
        if not row.mapping_toml:
            raise IngestError(f"source {source_name!r} has no field mapping; register one first")
        return row.id, SourceMapping.from_toml(row.mapping_toml, origin=f"mapping of {source_name}")

    def sources(self) -> list[SourceInfo]:
        with self.db.read() as session:
            records = dict(
                session.execute(
                    select(SourceRecord.source_id, func.count()).group_by(SourceRecord.source_id)
                ).all()
            )
            interactions = dict(
                session.execute(
                    select(Interaction.source_id, func.count()).group_by(Interaction.source_id)
                ).all()
            )
            quarantine = QuarantineRepository(session, self.vault)
            return [
                SourceInfo(
                    s.id,
                    s.name,
                    s.line_of_business,
                    records.get(s.id, 0),
                    interactions.get(s.id, 0),
                    sum(quarantine.counts_by_reason(s.id).values()),
                )
                for s in session.execute(select(Source).order_by(Source.name)).scalars()
            ]

    # -- ingestion -----------------------------------------------------------------------------------

    def ingest_file(
        self, source_name: str, path: Path, *, kind: str = "records", progress: Progress | None = None
    ) -> IngestSummary:
        with self.db.read() as session:
            _, mapping = self.mapping(session, source_name)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise IngestError(f"cannot read {path}: {exc.strerror}") from None
        rows = read_rows(path, encoding=mapping.encoding, delimiter=mapping.csv_delimiter)
        return self.ingest_rows(
            source_name, rows, kind=kind, content_sha256=digest.hexdigest(), progress=progress
        )

    def ingest_rows(
        self,
        source_name: str,
        rows: Iterable[RawRow],
        *,
        kind: str = "records",
        content_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> IngestSummary:
        if kind not in KINDS:
            raise IngestError(f"kind must be one of {', '.join(KINDS)}")
        started = time.perf_counter()
        with self.db.transaction() as session:
            source_id, mapping = self.mapping(session, source_name)
            if kind == "interactions" and mapping.interactions is None:
                raise IngestError(f"source {source_name!r} has no [interactions] mapping")
            run = self._start_or_resume(session, source_id, kind, content_sha256)
            summary = IngestSummary(
                run.id,
                source_name,
                kind,
                inserted=run.inserted,
                updated=run.updated,
                unchanged=run.unchanged,
                rejected=run.rejected,
                resumed_after_row=run.rows_committed,
            )
        skip = summary.resumed_after_row
        for chunk in _chunks(rows, self.chunk_size):
            todo = [row for row in chunk if row.number > skip]
            if todo:
                with self.db.transaction() as session:
                    counts = self._chunk(session, source_id, mapping, run.id, kind, todo)
                    self._audit_chunk(session, mapping, run.id, kind, counts)
                    self._advance(session, run.id, todo[-1].number, counts)
                refresh_if_stale(self.db)
                summary.inserted += counts["inserted"]
                summary.updated += counts["updated"]
                summary.unchanged += counts["unchanged"]
                summary.rejected += counts["rejected"]
                summary.reasons.update(counts["reasons"])
                room = MAX_REPORTED_REJECTIONS - len(summary.rejections)
                summary.rejections += [
                    (r.row_number, r.reason, r.detail) for r in counts["rejections"][:room]
                ]
            if progress:
                progress(len(chunk))
        with self.db.transaction() as session:
            session.execute(
                update(IngestRun)
                .where(IngestRun.id == run.id)
                .values(status="completed", finished_at=utcnow())
            )
        summary.rows = summary.inserted + summary.updated + summary.unchanged + summary.rejected
        summary.seconds = time.perf_counter() - started
        return summary

    def _audit_chunk(
        self, session: Session, mapping: SourceMapping, run_id: uuid.UUID, kind: str, counts: dict[str, Any]
    ) -> None:
        record(
            session,
            AuditEvent(
                f"{kind}.ingest",
                subjects=tuple(str(record_id) for record_id in counts["written"]),
                fields=_written_fields(mapping, kind),
                details={
                    "source": mapping.name,
                    "run_id": str(run_id),
                    "inserted": counts["inserted"],
                    "updated": counts["updated"],
                    "unchanged": counts["unchanged"],
                    "rejected": counts["rejected"],
                },
            ),
        )

    def _advance(self, session: Session, run_id: uuid.UUID, last_row: int, counts: dict[str, Any]) -> None:
        """Move the run's resume point past this chunk, in the chunk's own transaction."""
        session.execute(
            update(IngestRun)
            .where(IngestRun.id == run_id)
            .values(
                rows_committed=last_row,
                inserted=IngestRun.inserted + counts["inserted"],
                updated=IngestRun.updated + counts["updated"],
                unchanged=IngestRun.unchanged + counts["unchanged"],
                rejected=IngestRun.rejected + counts["rejected"],
            )
        )

    def _start_or_resume(
        self, session: Session, source_id: uuid.UUID, kind: str, content_sha256: str | None
    ) -> IngestRun:
        if content_sha256 is not None:
            unfinished = session.execute(
                select(IngestRun)
                .where(
                    IngestRun.source_id == source_id,
                    IngestRun.kind == kind,
                    IngestRun.content_sha256 == content_sha256,
                    IngestRun.status == "running",
                )
                .order_by(IngestRun.started_at.desc())
                .limit(1)
            ).scalar_one_or_none()
            if unfinished is not None:
                return unfinished
        run = IngestRun(
            id=uuid.uuid4(),
            source_id=source_id,
            kind=kind,
            content_sha256=content_sha256,
            status="running",
            started_at=utcnow(),
            rows_committed=0,
            inserted=0,
            updated=0,
            unchanged=0,
            rejected=0,
        )
        session.add(run)
        session.flush()
        return run

    def _chunk(
        self,
        session: Session,
        source_id: uuid.UUID,
        mapping: SourceMapping,
        run_id: uuid.UUID,
        kind: str,
        rows: list[RawRow],
    ) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "inserted": 0,
            "updated": 0,
            "unchanged": 0,
            "rejected": 0,
            "reasons": Counter(),
        }
        rejected: list[Rejection] = []
        if kind == "records":
            written = self._records(session, source_id, mapping, rows, counts, rejected)
        else:
            written = self._interactions(session, source_id, mapping, rows, counts, rejected)
        QuarantineRepository(session, self.vault).add_many(source_id, run_id, kind, rejected)
        counts["rejected"] = len(rejected)
        counts["reasons"] = Counter(r.reason for r in rejected)
        counts["rejections"] = rejected
        counts["written"] = written
        return counts

    def _records(
        self,
        session: Session,
        source_id: uuid.UUID,
        mapping: SourceMapping,
        rows: list[RawRow],
        counts: dict[str, Any],
        rejected: list[Rejection],
    ) -> list[uuid.UUID]:
        """Insert or update the rows' records; returns the ids of those inserted or updated."""
        today = self.today or date.today()
        now = utcnow()
        pairs = _prepare(
            rows,
            lambda v: (prepare_record(v, mapping, today=today), _consent_says(v, mapping, now)),
            rejected,
        )
        prepared = [p for _, p in self._not_suppressed(session, source_id, mapping, pairs, rejected)]
        repo = RecordRepository(session, self.vault)
        changed: list[uuid.UUID] = []
        says: list[tuple[uuid.UUID, list[_Say]]] = []
        for batch in _rounds(prepared, key=lambda p: p[0].record.source_record_id):
            existing = repo.existing(source_id, [p[0].record.source_record_id for p in batch])
            new: list[NewRecord] = []
            new_says: list[list[_Say]] = []
            for item, said in batch:
                fingerprint = self.vault.blind.fingerprint("record_fingerprint", item.content)
                record = NewRecord(
                    item.record, item.lookup_keys, item.normalized, item.last_activity_at, fingerprint
                )
                found = existing.get(item.record.source_record_id)
                if found is None:
                    new.append(record)
                    new_says.append(said)
                    continue
                if found.fingerprint == fingerprint:
                    counts["unchanged"] += 1
                else:
                    repo.update(found, record)
                    changed.append(found.id)
                    counts["updated"] += 1
                says.append((found.id, said))
            inserted = repo.insert(source_id, new)
            changed += inserted
            says += zip(inserted, new_says, strict=True)
            counts["inserted"] += len(new)
        if self.resolver is not None:
            self.resolver.resolve_records(session, changed)
        if mapping.consent:
            self._record_consent(session, says)
        return changed

    def _not_suppressed(
        self,
        session: Session,
        source_id: uuid.UUID,
        mapping: SourceMapping,
        pairs: list[tuple[RawRow, tuple[PreparedRecord, list[_Say]]]],
        rejected: list[Rejection],
    ) -> list[tuple[RawRow, tuple[PreparedRecord, list[_Say]]]]:
        """Quarantine rows that match an erased person (reason ``suppressed``) instead of bringing them
        back; a DPO decides what happens to them. One indexed lookup per chunk, none while nobody has
        been erased."""
        suppressions = SuppressionList(session, self.vault)
        if not pairs or not suppressions.any():
            return pairs
        found = [
            suppression_identifiers(source_id, item.record.source_record_id, item.normalized)
            for _, (item, _) in pairs
        ]
        hits = suppressions.matches(found)
        if not hits:
            return pairs
        for index in sorted(hits):
            raw = pairs[index][0]
            kinds = ", ".join(sorted(set(hits[index])))
            rejected.append(
                Rejection(
                    raw.number,
                    "suppressed",
                    f"matches a person who was erased ({kinds}); a data protection officer decides",
                    raw.values,
                )
            )
        record(
            session,
            AuditEvent(
                "suppression.match",
                Outcome.DENIED,
                details={"source": mapping.name, "rows": len(hits)},
            ),
        )
        return [pair for index, pair in enumerate(pairs) if index not in hits]

    def _record_consent(self, session: Session, says: list[tuple[uuid.UUID, list[_Say]]]) -> None:
        """Append an ``import`` consent event wherever a row's say differs from the last one the import
        recorded for that record, purpose and channel: re-ingesting a file adds nothing, and a changed
        opt-in adds exactly one event."""
        wanted = sorted({record_id for record_id, said in says if said}, key=str)
        if not wanted:
            return
        last: dict[tuple[uuid.UUID, str, str], str] = {}
        for start in range(0, len(wanted), 500):
            rows = session.execute(
                select(
                    ConsentEvent.record_id, ConsentEvent.purpose, ConsentEvent.channel, ConsentEvent.action
                )
                .where(
                    ConsentEvent.source == "import", ConsentEvent.record_id.in_(wanted[start : start + 500])
                )
                .order_by(ConsentEvent.recorded_at)
            ).all()
            for row in rows:
                last[(row.record_id, row.purpose, row.channel)] = row.action
        scope = current_scope()
        actor = scope.actor.principal if scope is not None else "system:ingest"
        ledger = self._consent_ledger()
        for record_id, said in says:
            for say in said:
                key = (record_id, say.purpose, say.channel)
                if last.get(key) == say.action:
                    continue
                ledger.record(
                    session,
                    record_id,
                    say.purpose,
                    say.channel,
                    say.action,
                    "import",
                    occurred_at=say.at,
                    actor=actor,
                )
                last[key] = say.action

    def _consent_ledger(self) -> ConsentLedger:
        if self._ledger is None:
            self._ledger = ConsentLedger(self.db)
        return self._ledger

    def _interactions(
        self,
        session: Session,
        source_id: uuid.UUID,
        mapping: SourceMapping,
        rows: list[RawRow],
        counts: dict[str, Any],
        rejected: list[Rejection],
    ) -> list[uuid.UUID]:
        """Insert or update the rows' interactions; returns the ids of the records they belong to."""
        prepared = _prepare(rows, lambda v: prepare_interaction(v, mapping), rejected)
        records = RecordRepository(session, self.vault).existing(
            source_id, sorted({p.source_record_id for _, p in prepared})
        )
        repo = InteractionRepository(session, self.vault)
        keyed = []
        for raw, item in prepared:
            owner = records.get(item.source_record_id)
            if owner is None:
                rejected.append(
                    Rejection(
                        raw.number,
                        "unknown_record",
                        "no record of this source has that record id",
                        raw.values,
                    )
                )
                continue
            identity = (
                f"id:{item.interaction_id}"
                if item.interaction_id
                else f"fp:{hashlib.sha256(item.content).hexdigest()}"
            )
            keyed.append(
                NewInteraction(
                    record_id=owner.id,
                    subject_id=owner.subject_id,
                    natural_key=repo.natural_key(source_id, identity),
                    occurred_at=item.occurred_at,
                    channel=item.channel,
                    direction=item.direction,
                    kind=item.kind,
                    department=item.department,
                    details=item.details,
                    fingerprint=self.vault.blind.fingerprint("interaction_fingerprint", item.content),
                )
            )
        owners: set[uuid.UUID] = set()
        for batch in _rounds(keyed, key=lambda i: i.natural_key):
            existing = repo.existing(source_id, [i.natural_key for i in batch])
            new = []
            for interaction in batch:
                found = existing.get(interaction.natural_key)
                if found is None:
                    new.append(interaction)
                elif found.fingerprint == interaction.fingerprint:
                    counts["unchanged"] += 1
                else:
                    repo.update(found, interaction)
                    owners.add(interaction.record_id)
                    counts["updated"] += 1
            repo.insert(source_id, new)
            owners.update(interaction.record_id for interaction in new)
            counts["inserted"] += len(new)
        return sorted(owners, key=str)

    # -- quarantine ----------------------------------------------------------------------------------

    def retry_quarantined(
        self, *, source_name: str | None = None, entry_ids: Sequence[uuid.UUID] = ()
    ) -> RetrySummary:
        """Run pending quarantined rows through the current mapping again. Rows that now pass are
        ingested (and their quarantine copy shredded); the others keep their entry with the new reason.

        Each row is one transaction and records one ``quarantine.reprocess`` entry with it (the records
        written, the quarantine entry id, the counts). A row the reader could not parse is left as it is
        and, since nothing changes, records nothing."""
        retried = reprocessed = 0
        with self.db.read() as session:
            source_id = self.mapping(session, source_name)[0] if source_name else None
            quarantine = QuarantineRepository(session, self.vault)
            if entry_ids:
                entries = [quarantine.entry(entry_id) for entry_id in entry_ids]
            else:
                entries = quarantine.entries(source_id=source_id, limit=1_000_000)
            names = dict(session.execute(select(Source.id, Source.name)).all())
        for entry in entries:
            if entry.status != "pending":
                continue
            retried += 1
            with self.db.transaction() as session:
                quarantine = QuarantineRepository(session, self.vault)
                _, values = quarantine.payload(entry.id)
                if "_raw" in values and len(values) == 1:
                    continue  # the reader could not parse it at all: nothing a mapping change can fix
                _, mapping = self.mapping(session, names[entry.source_id])
                counts: dict[str, Any] = {"inserted": 0, "updated": 0, "unchanged": 0}
                rejected: list[Rejection] = []
                row = [RawRow(entry.row_number, values)]
                if entry.kind == "records":
                    written = self._records(session, entry.source_id, mapping, row, counts, rejected)
                else:
                    written = self._interactions(session, entry.source_id, mapping, row, counts, rejected)
                if rejected:
                    quarantine.requeue(entry.id, rejected[0].reason, rejected[0].detail)
                else:
                    quarantine.close(entry.id, "reprocessed")
                    reprocessed += 1
                record(
                    session,
                    AuditEvent(
                        "quarantine.reprocess",
                        subjects=tuple(str(record_id) for record_id in written),
                        fields=_written_fields(mapping, entry.kind) if written else (),
                        details={
                            "source": mapping.name,
                            "kind": entry.kind,
                            "entries": [str(entry.id)],
                            "reprocessed": 0 if rejected else 1,
                            "still_rejected": 1 if rejected else 0,
                            "inserted": counts["inserted"],
                            "updated": counts["updated"],
                            "unchanged": counts["unchanged"],
                        },
                    ),
                )
        return RetrySummary(retried, reprocessed, retried - reprocessed)

    def discard_quarantined(self, entry_ids: Sequence[uuid.UUID]) -> int:
        """Discard rows for good (their payload key is shredded), recorded with the entry ids."""
        with self.db.transaction() as session:
            quarantine = QuarantineRepository(session, self.vault)
            for entry_id in entry_ids:
                quarantine.close(entry_id, "discarded")
            record(
                session,
                AuditEvent(
                    "quarantine.reprocess",
                    details={
                        "entries": sorted({str(entry_id) for entry_id in entry_ids}),
                        "discarded": len(entry_ids),
                    },
                ),
            )
        return len(entry_ids)
