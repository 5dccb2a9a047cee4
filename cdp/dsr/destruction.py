"""The one destruction path, shared by erasure requests and retention sweeps.

plan (what, why, which records a legal hold keeps) → durable ``erasure_job`` → in ONE transaction:
suppression entries (erasure only) → pseudonymized copies of documents the law makes us keep → revoke
the customers' sign-ins → delete rows (blind index, consent events, match evidence and decisions,
membership, interactions, versions, outbox, records) → shred the data keys → drop entities left empty →
mark the job completed. The caller adds the signed receipt and the audit entry to that same transaction.

Why one transaction per batch: "killed at any point, the subject is either fully erased or untouched"
is exactly what the database's atomic commit gives; a job row written beforehand makes the work
resumable — a re-run finds the planned job and executes it, and every step is safe to repeat because it
works from what still exists.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, MetaData, Table, Uuid, delete, insert, select, update
from sqlalchemy.orm import Session

from cdp.access.grants import GrantStore
from cdp.audit.canonical import canonical_json
from cdp.db.models import (
    BlindIndexEntry,
    ConsentEvent,
    Entity,
    EntityMember,
    ErasureJob,
    Interaction,
    LegalHold,
    LoginCode,
    MatchDecision,
    MatchEdge,
    OutboxMessage,
    RetainedRecord,
    Source,
    SourceRecord,
    SourceRecordVersion,
    WebSession,
    WorkItem,
)
from cdp.db.types import utcnow
from cdp.dsr.suppression import SuppressionList, identifiers
from cdp.retention.policy import RetentionPolicy
from cdp.sources.records import RecordRepository
from cdp.vault import Vault
from cdp.vault.cipher import FieldCipher
from cdp.vault.subjects import SubjectStore

REASONS = ("dsr_erasure", "retention")
_IN_CHUNK = 1000


@dataclass(frozen=True)
class DestructionPlan:
    """What one job destroys. Ids only: the plan is stored, and must reveal nothing."""

    reason: str
    records: tuple[uuid.UUID, ...]
    held: tuple[uuid.UUID, ...] = ()
    suppress: bool = False
    entity_id: uuid.UUID | None = None

    def to_json(self) -> str:
        return canonical_json(
            {
                "reason": self.reason,
                "records": sorted(str(r) for r in self.records),
                "held": sorted(str(r) for r in self.held),
                "suppress": self.suppress,
                "entity_id": str(self.entity_id) if self.entity_id else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DestructionPlan:
        data = json.loads(text)
        return cls(
            reason=data["reason"],
            records=tuple(uuid.UUID(r) for r in data["records"]),
            held=tuple(uuid.UUID(r) for r in data["held"]),
            suppress=bool(data["suppress"]),
            entity_id=uuid.UUID(data["entity_id"]) if data.get("entity_id") else None,
        )


@dataclass
class DestructionOutcome:
    """Counts of what a job destroyed, kept and suppressed — the body of a receipt or certificate."""

    records: int = 0
    subjects_shredded: int = 0
    interactions: int = 0
    versions: int = 0
    consent_events: int = 0
    blind_index_entries: int = 0
    entities_removed: int = 0
    sign_ins_revoked: int = 0
    suppressed_identifiers: int = 0
    retained: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    retained_by_obligation: Counter[str] = field(default_factory=Counter)

    def add(self, other: DestructionOutcome) -> None:
        for name in (
            "records",
            "subjects_shredded",
            "interactions",
            "versions",
            "consent_events",
            "blind_index_entries",
            "entities_removed",
            "sign_ins_revoked",
            "suppressed_identifiers",
            "retained",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_category.update(other.by_category)
        self.retained_by_obligation.update(other.retained_by_obligation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "subjects_shredded": self.subjects_shredded,
            "interactions": self.interactions,
            "record_versions": self.versions,
            "consent_events": self.consent_events,
            "blind_index_entries": self.blind_index_entries,
            "entities_removed": self.entities_removed,
            "sign_ins_revoked": self.sign_ins_revoked,
            "suppressed_identifiers": self.suppressed_identifiers,
            "retained_pseudonymized": self.retained,
            "records_by_category": dict(sorted(self.by_category.items())),
            "retained_by_obligation": dict(sorted(self.retained_by_obligation.items())),
        }


T = TypeVar("T")


def _chunks(ids: Sequence[T]) -> Iterable[list[T]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield list(ids[start : start + _IN_CHUNK])


def held_records(session: Session, record_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these records an active legal hold keeps."""
    held: set[uuid.UUID] = set()
    for chunk in _chunks(record_ids):
        held.update(
            session.execute(
                select(LegalHold.record_id).where(
                    LegalHold.record_id.in_(chunk), LegalHold.released_at.is_(None)
                )
            ).scalars()
        )
    return held


class Destroyer:
    def __init__(self, session: Session, vault: Vault, policy: RetentionPolicy) -> None:
        self.session = session
        self.vault = vault
        self.policy = policy

    # -- planning ------------------------------------------------------------------------------------

    def plan(
        self,
        record_ids: Sequence[uuid.UUID],
        *,
        reason: str,
        suppress: bool,
        entity_id: uuid.UUID | None = None,
    ) -> DestructionPlan:
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {', '.join(REASONS)}")
        held = held_records(self.session, record_ids)
        return DestructionPlan(
            reason=reason,
            records=tuple(r for r in record_ids if r not in held),
            held=tuple(sorted(held, key=str)),
            suppress=suppress,
            entity_id=entity_id,
        )

    def save(self, plan: DestructionPlan, *, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Write the plan as a planned job (the caller commits it before executing)."""
        job_id = uuid.uuid4()
        self.session.add(
            ErasureJob(
                id=job_id,
                reason=plan.reason,
                request_id=request_id,
                status="planned",
                plan=plan.to_json(),
                created_at=utcnow(),
            )
        )
        self.session.flush()
        return job_id

    # -- execution -----------------------------------------------------------------------------------

    def execute(
        self, job_id: uuid.UUID, plan: DestructionPlan, *, now: datetime | None = None
    ) -> DestructionOutcome:
        """Destroy what the plan names and still exists, in the caller's transaction, and mark the job
        completed. Holds placed after planning are honoured: a record held now is skipped."""
        now = now or utcnow()
        outcome = DestructionOutcome()
        late_holds = held_records(self.session, plan.records)
        wanted = [r for r in plan.records if r not in late_holds]
        rows = self._existing(wanted)
        if rows:
            record_ids = [row.id for row in rows]
            subject_ids = [row.subject_id for row in rows]
            outcome.by_category.update(self.policy.category_of(row.line_of_business).name for row in rows)
            if plan.suppress:
                outcome.suppressed_identifiers = self._suppress(job_id, record_ids)
            self._keep_what_the_law_requires(job_id, rows, plan, now, outcome)
            outcome.sign_ins_revoked = self._revoke_sign_ins(record_ids)
            entity_ids = self._entities_of(record_ids)
            self._delete_rows(record_ids, subject_ids, outcome)
            outcome.subjects_shredded = SubjectStore(self.session, self.vault.keys).shred(subject_ids)
            outcome.entities_removed = self._drop_empty_entities(entity_ids)
            outcome.records = len(rows)
        self.session.execute(
            update(ErasureJob).where(ErasureJob.id == job_id).values(status="completed", completed_at=now)
        )
        return outcome

    def _existing(self, record_ids: Sequence[uuid.UUID]) -> list[Any]:
        rows: list[Any] = []
        for chunk in _chunks(record_ids):
            rows += self.session.execute(
                select(
                    SourceRecord.id,
                    SourceRecord.subject_id,
                    SourceRecord.source_id,
                    Source.line_of_business,
                )
                .join(Source, Source.id == SourceRecord.source_id)
                .where(SourceRecord.id.in_(chunk))
            ).all()
        return rows

    def _suppress(self, job_id: uuid.UUID, record_ids: list[uuid.UUID]) -> int:
        """Before the keys go: the identifiers of these records, as keyed hashes."""
        found: list[tuple[str, str]] = []
        for record in RecordRepository(self.session, self.vault).get_many(record_ids):
            found += identifiers(record.source_id, record.data.source_record_id, record.normalized)
        return SuppressionList(self.session, self.vault).add(job_id, found)

    def _keep_what_the_law_requires(
        self,
        job_id: uuid.UUID,
        rows: list[Any],
        plan: DestructionPlan,
        now: datetime,
        outcome: DestructionOutcome,
    ) -> None:
        """Pseudonymized copies of documents under a legal obligation that has not run out yet."""
        if not self.policy.obligations:
            return
        line_of = {row.id: row.line_of_business for row in rows}
        candidates = [
            row.id
            for row in rows
            if any(o.line_of_business == row.line_of_business for o in self.policy.obligations)
        ]
        if not candidates:
            return
        retained: list[dict[str, Any]] = []
        ciphers: dict[uuid.UUID, FieldCipher] = {}
        for chunk in _chunks(candidates):
            interactions = (
                self.session.execute(select(Interaction).where(Interaction.record_id.in_(chunk)))
                .scalars()
                .all()
            )
            for interaction in interactions:
                obligation = self.policy.obligation_for(line_of[interaction.record_id], interaction.kind)
                if obligation is None:
                    continue
                retain_until = obligation.keep.after(interaction.occurred_at)
                if retain_until <= now:
                    continue
                details = self._details(interaction, ciphers)
                amount, currency = _amount(details.get("amount")), _currency(details.get("currency"))
                retained.append(
                    {
                        "id": uuid.uuid4(),
                        "job_id": job_id,
                        "pseudonym": self._pseudonym(plan, interaction.record_id),
                        "source_id": interaction.source_id,
                        "category": obligation.name,
                        "kind": interaction.kind,
                        "occurred_at": interaction.occurred_at,
                        "amount": amount,
                        "currency": currency,
                        "reason": f"legal_obligation:{obligation.name}",
                        "retain_until": retain_until,
                        "created_at": now,
                    }
                )
                outcome.retained_by_obligation[obligation.name] += 1
        if retained:
            self.session.execute(insert(RetainedRecord), retained)
        outcome.retained = len(retained)

    def _details(self, interaction: Interaction, ciphers: dict[uuid.UUID, FieldCipher]) -> dict[str, Any]:
        cipher = ciphers.get(interaction.subject_id)
        if cipher is None:
            cipher = SubjectStore(self.session, self.vault.keys).open(interaction.subject_id)
            ciphers[interaction.subject_id] = cipher
        details = cipher.decrypt("interaction", str(interaction.id), "details", interaction.enc_details)
        return details if isinstance(details, dict) else {}

    def _pseudonym(self, plan: DestructionPlan, record_id: uuid.UUID) -> bytes:
        """One keyed hash per erased customer (per record when retention acts on records alone): the
        kept documents of one person stay linkable to each other, and to nobody without the key."""
        anchor = f"entity:{plan.entity_id}" if plan.entity_id else f"record:{record_id}"
        return self.vault.blind.token("pseudonym", anchor)

    def _revoke_sign_ins(self, record_ids: list[uuid.UUID]) -> int:
        """Revoke the customer's sign-ins and delete their web sessions (the privacy center's), which
        would otherwise keep a now-useless token and the erased record's id until they expire."""
        principals = [f"customer:{r}" for r in record_ids]
        for chunk in _chunks(principals):
            self.session.execute(delete(WebSession).where(WebSession.principal.in_(chunk)))
        return GrantStore(self.session).revoke_principals(principals, "erased")

    def _entities_of(self, record_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        entities: set[uuid.UUID] = set()
        for chunk in _chunks(record_ids):
            entities.update(
                self.session.execute(
                    select(EntityMember.entity_id).where(EntityMember.record_id.in_(chunk))
                ).scalars()
            )
        return entities

    def _delete_rows(
        self, record_ids: list[uuid.UUID], subject_ids: list[uuid.UUID], outcome: DestructionOutcome
    ) -> None:
        """The batch's record ids go into a temporary table once; every delete then selects from it.
        Rendering a thousand-id IN list per table cost more Python time than the deletes took in SQL."""
        connection = self.session.connection()
        doomed = _doomed_table(connection)
        connection.execute(delete(doomed))
        connection.execute(insert(doomed), [{"id": r} for r in record_ids])
        if connection.dialect.name == "postgresql":
            # A temporary table has no statistics until analyzed; without them the planner guesses it is
            # large and scans whole tables instead of probing their indexes once per id.
            connection.exec_driver_sql("ANALYZE cdp_doomed")
        ids = select(doomed.c.id)

        def gone(column: Any) -> int:
            return _count(connection.execute(delete(column.table).where(column.in_(ids))))

        self._close_complaints(ids)
        outcome.blind_index_entries += gone(BlindIndexEntry.record_id)
        gone(LoginCode.record_id)
        outcome.consent_events += gone(ConsentEvent.record_id)
        for column in (
            MatchDecision.record_a,
            MatchDecision.record_b,
            MatchEdge.record_a,
            MatchEdge.record_b,
        ):
            gone(column)
        gone(EntityMember.record_id)
        outcome.interactions += gone(Interaction.record_id)
        outcome.versions += gone(SourceRecordVersion.record_id)
        gone(SourceRecord.id)
        connection.execute(delete(doomed))
        for chunk in _chunks(subject_ids):
            connection.execute(delete(OutboxMessage).where(OutboxMessage.subject_id.in_(chunk)))

    def _core(self, statement: Any) -> Any:
        """Run a bulk DELETE/UPDATE on the session's connection: the same transaction, without the ORM's
        per-statement bookkeeping (which cost more than the SQL itself in a sweep)."""
        return self.session.connection().execute(statement)

    def _close_complaints(self, record_ids: Any) -> None:
        """Complaints about the destroyed interactions leave their queues: nothing is left to act on."""
        complaints = select(Interaction.id).where(
            Interaction.record_id.in_(record_ids), Interaction.kind == "complaint"
        )
        self._core(
            update(WorkItem)
            .where(WorkItem.kind == "complaint", WorkItem.ref_id.in_(complaints), WorkItem.status == "open")
            .values(status="closed", closed_at=utcnow())
        )

    def _drop_empty_entities(self, entity_ids: set[uuid.UUID]) -> int:
        if not entity_ids:
            return 0
        ids = sorted(entity_ids, key=str)
        still_used: set[uuid.UUID] = set()
        for chunk in _chunks(ids):
            still_used.update(
                self.session.execute(
                    select(EntityMember.entity_id).where(EntityMember.entity_id.in_(chunk)).distinct()
                ).scalars()
            )
        empty = [e for e in ids if e not in still_used]
        for chunk in _chunks(empty):
            self._core(delete(Entity).where(Entity.id.in_(chunk)))
        return len(empty)


_DOOMED = Table("cdp_doomed", MetaData(), Column("id", Uuid, primary_key=True), prefixes=["TEMPORARY"])
"""Per-connection scratch table of the record ids a batch destroys (emptied before and after use)."""


def _doomed_table(connection: Connection) -> Table:
    kind = "UUID" if connection.dialect.name == "postgresql" else "CHAR(32)"
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS cdp_doomed (id {kind} PRIMARY KEY)")
    return _DOOMED


def _count(result: Any) -> int:
    return int(result.rowcount)


def _amount(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return str(Decimal(str(value)))[:32]
    except (InvalidOperation, ValueError):
        return None


def _currency(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and len(value) == 3 and value.isalpha() else None


def load_job(session: Session, job_id: uuid.UUID) -> tuple[ErasureJob, DestructionPlan]:
    job = session.get(ErasureJob, job_id)
    if job is None:
        raise LookupError(f"erasure job {job_id} does not exist")
    return job, DestructionPlan.from_json(job.plan)
