"""The platform-wide invariants every crash-safety test checks after each kill and after the final re-run.

Each crash test knows its own operation (how many records an ingest committed, which customers a
resolution produced); this module knows what must hold whatever was interrupted, seen the way a new
process would see it — a fresh :class:`~cdp.platform.Platform` with an empty key cache and the keyring
read from disk:

1. the audit chain verifies (after sealing what is pending, as the sequencer would);
2. every stored ciphertext decrypts under the current keyring, unless its data key was crypto-shredded
   on purpose (``subject.wrapped_key`` NULL), and every live data key unwraps;
3. no half-erased subject: no customer row (source record, its versions, interactions) under a shredded
   key, no blind-index token that still finds a shredded subject or points past its record, no live key
   whose data is gone, no completed erasure whose records survived;
4. cheap structural checks: every ciphertext's key holder exists, nothing hangs off a missing record,
   no customer without members, every completed destruction has its signed receipt, every receipt
   verifies, and no ``enc_*`` column exists that this module does not know how to open.

"No lost records" needs the test's own knowledge: the report counts the records (and ciphertexts, keys,
audit entries) it saw, and each crash test compares them with what it expects — which also proves the
check looked at something.

Problems name tables, columns, ids and counts — never a decrypted value: the checker decrypts to prove a
ciphertext opens, then drops the plaintext.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, func, select
from sqlalchemy.orm import Session

from cdp.audit import AuditService
from cdp.config import Settings
from cdp.db.models import (
    ENCRYPTED_RECORD_FIELDS,
    AuditSigningKey,
    Base,
    BlindIndexEntry,
    DestructionReceipt,
    DsrRequest,
    Entity,
    EntityMember,
    ErasureJob,
    Interaction,
    LegalHold,
    RetentionSweep,
    SourceRecord,
    Subject,
    WebSession,
    table_of,
)
from cdp.dsr.receipts import signed_message
from cdp.platform import Platform
from cdp.vault import Vault, VaultError
from cdp.vault.audit_keys import verify_signature
from cdp.vault.subject_keys import WrappedKey

RECORD_CIPHERTEXTS = len(ENCRYPTED_RECORD_FIELDS)
"""Ciphertexts every source record holds at least (its encrypted normalized copy comes on top when set):
a test asserts ``decrypted_by_table["source_record"] >= records * RECORD_CIPHERTEXTS``."""

MAX_LISTED = 20
"""Problems listed in a failure message; the count of all of them is always given."""

WEB_SESSION_AAD = b"cdp-web-session/1:"
"""Mirrors ``cdp.access.websessions._AAD_PREFIX`` (web session state is wrapped under a KEK directly)."""


@dataclass(frozen=True)
class _Sealed:
    """One table's field ciphertexts: the AAD binds ``row_id``; ``subject`` holds the data key.

    ``customer_data``: the destroyer deletes these rows in the transaction that shreds their key, so a
    row left under a shredded key is half an erasure. Elsewhere (a closed quarantine entry, a redeemed
    export, a replaced TOTP secret) the row outliving its key is crypto-shredding on purpose."""

    table: str
    row_id: str
    subject: str
    customer_data: bool
    via_record: bool = False
    """The data key is the owning source record's (``record_id`` → ``source_record.subject_id``)."""


SEALED: tuple[_Sealed, ...] = (
    _Sealed("source_record", "id", "subject_id", customer_data=True),
    _Sealed("source_record_version", "id", "subject_id", customer_data=True, via_record=True),
    _Sealed("interaction", "id", "subject_id", customer_data=True),
    _Sealed("quarantined_row", "id", "subject_id", customer_data=False),
    _Sealed("outbox_message", "id", "subject_id", customer_data=False),
    _Sealed("export_archive", "id", "subject_id", customer_data=False),
    _Sealed("staff_user", "id", "totp_subject_id", customer_data=False),
    _Sealed("signing_key", "kid", "subject_id", customer_data=False),
    _Sealed("audit_signing_key", "key_id", "subject_id", customer_data=False),
)
KEK_SEALED = {"web_session": ("enc_state",)}
"""Ciphertexts under a KEK rather than a data key; a retired KEK ends them on purpose."""


@dataclass
class InvariantReport:
    """What one check looked at (so a test can prove it checked something) and what it found."""

    records: int = 0
    """Source records present."""
    subjects_live: int = 0
    subjects_shredded: int = 0
    data_keys_unwrapped: int = 0
    ciphertexts_decrypted: int = 0
    shredded_skipped: int = 0
    """Ciphertexts left unopened because their key was shredded (or their KEK retired) on purpose."""
    blind_index_entries: int = 0
    audit_entries: int = 0
    receipts_verified: int = 0
    decrypted_by_table: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        listed = "\n  ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f"\n  … and {more} more" if more > 0 else ""
        return (
            f"{len(self.problems)} platform invariant violation(s) "
            f"(records {self.records}, ciphertexts decrypted {self.ciphertexts_decrypted}, "
            f"shredded skipped {self.shredded_skipped}):\n  {listed}{tail}"
        )


def assert_platform_invariants(platform: Platform | Settings, *, seal_audit: bool = True) -> InvariantReport:
    """Check every invariant on a fresh view of ``platform``'s storage and fail with all problems found.

    Returns the report, so the caller can also assert that something was checked (its counts)."""
    report = check_platform_invariants(platform, seal_audit=seal_audit)
    assert report.ok, report.summary()
    return report


def check_platform_invariants(platform: Platform | Settings, *, seal_audit: bool = True) -> InvariantReport:
    """Like :func:`assert_platform_invariants`, but return the problems instead of failing on them.

    ``seal_audit``: chain pending audit entries first (what the sequencer does on its own), so the entries
    the interrupted operation wrote are verified too rather than merely counted as pending."""
    settings = platform if isinstance(platform, Settings) else platform.settings
    fresh = Platform.open(settings)  # a new process's view: empty key cache, keyring from disk
    report = InvariantReport()
    try:
        _check_audit(fresh, report, seal_audit)
        with fresh.db.read() as session:
            if not fresh.db.is_sqlite:  # one snapshot for every query (SQLite's read transaction is one)
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            subjects = _check_subjects(session, fresh.vault, report)
            _check_ciphertexts(session, fresh.vault, subjects, report)
            _check_kek_sealed(session, fresh.vault, report)
            _check_erasure(session, subjects, report)
            _check_structure(session, report)
            _check_receipts(session, report)
    finally:
        fresh.close()
    return report


# -- 1. audit ------------------------------------------------------------------------------------------


def _check_audit(fresh: Platform, report: InvariantReport, seal_audit: bool) -> None:
    audit = AuditService(fresh.db, fresh.vault, fresh.settings.issuer)
    if seal_audit:
        audit.seal()
    verified = audit.verify()
    report.audit_entries = verified.entries
    if not verified.ok:
        report.problems.append(f"audit chain does not verify: {verified.first_problem}")


# -- 2. keys and ciphertexts ---------------------------------------------------------------------------


def _check_subjects(session: Session, vault: Vault, report: InvariantReport) -> dict[uuid.UUID, WrappedKey]:
    """Every subject's key state, after checking that each live data key unwraps and that shredding
    was done whole (key, KEK version and timestamp together)."""
    subjects: dict[uuid.UUID, WrappedKey] = {}
    rows = session.execute(
        select(Subject.id, Subject.key_version, Subject.kek_version, Subject.wrapped_key, Subject.shredded_at)
    )
    for row in rows:
        wrapped = WrappedKey(row.key_version, row.kek_version, row.wrapped_key)
        subjects[row.id] = wrapped
        if row.wrapped_key is None:
            report.subjects_shredded += 1
            if row.shredded_at is None or row.kek_version is not None:
                report.problems.append(f"subject {row.id}: key gone but not marked shredded")
            continue
        report.subjects_live += 1
        if row.shredded_at is not None or row.kek_version is None:
            report.problems.append(f"subject {row.id}: marked shredded but still holds a wrapped key")
            continue
        try:
            vault.keys.open(row.id, wrapped)
        except VaultError as exc:
            report.problems.append(
                f"subject {row.id}: data key does not unwrap ({type(exc).__name__}: {exc})"
            )
            continue
        report.data_keys_unwrapped += 1
    return subjects


def _tables() -> Mapping[str, Table]:
    return Base.metadata.tables


def _sealed_rows(session: Session, spec: _Sealed) -> Iterator[tuple[str, Any, dict[str, bytes]]]:
    """(row id for the AAD, subject id, {field name: ciphertext}) of every row, NULL columns left out."""
    tables = _tables()
    table = tables[spec.table]
    encrypted: list[Column[Any]] = [c for c in table.c if c.name.startswith("enc_")]
    if spec.via_record:
        records = tables["source_record"]
        subject = records.c.subject_id
        query = select(table.c[spec.row_id], subject, *encrypted).select_from(
            table.outerjoin(records, records.c.id == table.c.record_id)
        )
    else:
        query = select(table.c[spec.row_id], table.c[spec.subject], *encrypted)
    for row in session.execute(query):
        blobs = {c.name[len("enc_") :]: row[2 + i] for i, c in enumerate(encrypted) if row[2 + i] is not None}
        if blobs:
            yield str(row[0]), row[1], blobs


def _check_ciphertexts(
    session: Session, vault: Vault, subjects: dict[uuid.UUID, WrappedKey], report: InvariantReport
) -> None:
    _check_coverage(report)
    for spec in SEALED:
        opened = 0
        for row_id, subject_id, blobs in _sealed_rows(session, spec):
            where = f"{spec.table} {row_id}"
            if spec.table == "source_record":
                report.records += 1
            wrapped = subjects.get(subject_id) if subject_id is not None else None
            if wrapped is None:
                report.problems.append(f"{where}: its data key holder (subject {subject_id}) does not exist")
                continue
            if wrapped.blob is None:
                if spec.customer_data:
                    report.problems.append(
                        f"half-erased: {where} still exists under shredded subject {subject_id}"
                    )
                else:
                    report.shredded_skipped += len(blobs)
                continue
            try:
                cipher = vault.keys.open(subject_id, wrapped)
            except VaultError:
                continue  # already reported by _check_subjects
            try:
                cipher.decrypt_many(spec.table, row_id, blobs)
            except VaultError as exc:  # vault errors name table, field, id and key version only
                report.problems.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            opened += len(blobs)
        report.ciphertexts_decrypted += opened
        report.decrypted_by_table[spec.table] = opened


def _check_coverage(report: InvariantReport) -> None:
    """A new encrypted column must be taught to this checker, or it would silently go unchecked."""
    known = {spec.table for spec in SEALED}
    for name, table in _tables().items():
        columns = [c.name for c in table.c if c.name.startswith("enc_")]
        if columns and name not in known and set(columns) - set(KEK_SEALED.get(name, ())):
            report.problems.append(
                f"{name}: ciphertext columns {columns} are not checked by tests/invariants.py"
            )


def _check_kek_sealed(session: Session, vault: Vault, report: InvariantReport) -> None:
    usable = {info.version for info in vault.keks.versions() if info.state != "retired"}
    opened = 0
    for row in session.execute(select(WebSession.id, WebSession.kek_version, WebSession.enc_state)):
        if row.kek_version not in usable:
            report.shredded_skipped += 1  # its KEK was retired: the session ended on purpose
            continue
        try:
            vault.keks.unwrap(row.kek_version, row.enc_state, WEB_SESSION_AAD + row.id.bytes)
        except VaultError as exc:
            report.problems.append(f"web_session {row.id}: {type(exc).__name__}: {exc}")
            continue
        opened += 1
    report.ciphertexts_decrypted += opened
    report.decrypted_by_table["web_session"] = opened


# -- 3. no half-erased subject -------------------------------------------------------------------------


def _check_erasure(session: Session, subjects: dict[uuid.UUID, WrappedKey], report: InvariantReport) -> None:
    shredded = {s for s, wrapped in subjects.items() if wrapped.blob is None}

    # Blind-index tokens are how a person is found: one left for a shredded key, a missing record or
    # another subject than its record's would keep an erased person findable (or misattribute a match).
    index = session.execute(
        select(
            BlindIndexEntry.id, BlindIndexEntry.subject_id, SourceRecord.id, SourceRecord.subject_id
        ).select_from(
            table_of(BlindIndexEntry).outerjoin(SourceRecord, SourceRecord.id == BlindIndexEntry.record_id)
        )
    ).all()
    report.blind_index_entries = len(index)
    for entry_id, subject_id, record_id, record_subject in index:
        if record_id is None:
            report.problems.append(f"blind_index {entry_id}: points at a record that does not exist")
        elif subject_id != record_subject:
            report.problems.append(f"blind_index {entry_id}: subject {subject_id} is not its record's")
        elif subject_id in shredded:
            report.problems.append(
                f"half-erased: blind_index {entry_id} still finds shredded subject {subject_id}"
            )

    # The other half: data deleted but its key kept. Every live key must still hold something.
    referenced: set[Any] = set()
    for table in _tables().values():
        for fk in table.foreign_keys:
            if fk.column.table.name == "subject" and fk.parent.table.name != "subject":
                referenced.update(session.execute(select(fk.parent).distinct()).scalars())
    orphans = sorted(
        str(s) for s, wrapped in subjects.items() if wrapped.blob is not None and s not in referenced
    )
    if orphans:
        report.problems.append(
            f"half-erased: {len(orphans)} live data key(s) hold no data any more, e.g. subject {orphans[0]}"
        )

    # Interactions are encrypted under their record's key: a mismatch is a row the erasure of that
    # record would shred the wrong key for.
    interactions = table_of(Interaction)
    mismatched = session.execute(
        select(func.count())
        .select_from(interactions.join(SourceRecord, SourceRecord.id == interactions.c.record_id))
        .where(interactions.c.subject_id != SourceRecord.subject_id)
    ).scalar_one()
    if mismatched:
        report.problems.append(f"interaction: {mismatched} row(s) under another subject than their record's")

    # A completed destruction must have destroyed what its plan names (records under a legal hold aside).
    present = set(session.execute(select(SourceRecord.id)).scalars())
    ever_held = set(session.execute(select(LegalHold.record_id)).scalars())
    for job_id, plan in session.execute(
        select(ErasureJob.id, ErasureJob.plan).where(ErasureJob.status == "completed")
    ):
        planned = {uuid.UUID(r) for r in json.loads(plan)["records"]}
        survivors = planned & present - ever_held
        if survivors:
            report.problems.append(
                f"half-erased: completed erasure job {job_id} left {len(survivors)} of its "
                f"{len(planned)} record(s), e.g. {min(str(r) for r in survivors)}"
            )


def _table(name: str) -> Table:
    return _tables()[name]


# -- 4. structure and receipts -------------------------------------------------------------------------


def _check_structure(session: Session, report: InvariantReport) -> None:
    empty = session.execute(
        select(func.count())
        .select_from(Entity)
        .where(~Entity.id.in_(select(EntityMember.entity_id).distinct()))
    ).scalar_one()
    if empty:
        report.problems.append(f"entity: {empty} customer(s) without any member record")
    for child, column in (
        ("entity_member", "record_id"),
        ("source_record_version", "record_id"),
        ("interaction", "record_id"),
        ("consent_event", "record_id"),
    ):
        table = _table(child)
        dangling = session.execute(
            select(func.count())
            .select_from(table.outerjoin(SourceRecord, SourceRecord.id == table.c[column]))
            .where(SourceRecord.id.is_(None))
        ).scalar_one()
        if dangling:
            report.problems.append(f"{child}: {dangling} row(s) belong to a record that does not exist")


def _check_receipts(session: Session, report: InvariantReport) -> None:
    """Every receipt verifies, and every completed destruction has one: the destruction and its receipt
    commit together, so a completed job without its receipt is a crash that split them."""
    keys: dict[str, str] = {
        key_id: public
        for key_id, public in session.execute(select(AuditSigningKey.key_id, AuditSigningKey.public_key))
    }
    receipts: set[uuid.UUID] = set()
    rows = session.execute(
        select(
            DestructionReceipt.id,
            DestructionReceipt.statement,
            DestructionReceipt.key_id,
            DestructionReceipt.signature,
        )
    )
    for receipt_id, statement, key_id, signature in rows:
        receipts.add(receipt_id)
        key = keys.get(key_id)
        if key is None or not verify_signature(key, signed_message(statement), signature):
            report.problems.append(f"destruction_receipt {receipt_id}: signature does not verify")
            continue
        report.receipts_verified += 1
    completed: list[tuple[str, Any, Any]] = [
        *(
            ("erasure_job", job_id, receipt_id)
            for job_id, receipt_id in session.execute(
                select(ErasureJob.id, ErasureJob.receipt_id).where(
                    ErasureJob.status == "completed", ErasureJob.request_id.is_not(None)
                )
            )
        ),
        *(
            ("dsr_request", request_id, result_id)
            for request_id, result_id in session.execute(
                select(DsrRequest.id, DsrRequest.result_id).where(
                    DsrRequest.kind == "erasure", DsrRequest.status == "completed"
                )
            )
        ),
        *(
            ("retention_sweep", sweep_id, certificate_id)
            for sweep_id, certificate_id in session.execute(
                select(RetentionSweep.id, RetentionSweep.certificate_id).where(
                    RetentionSweep.status == "completed"
                )
            )
        ),
    ]
    for table, row_id, receipt_id in completed:
        if receipt_id not in receipts:
            report.problems.append(f"{table} {row_id}: completed without a stored receipt")
