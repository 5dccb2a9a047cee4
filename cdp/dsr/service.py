"""Data-subject requests: open, verify, approve or reject, and carry out — an export or an erasure.

A request moves received → verifying (a one-time code went to the email on file) → awaiting_approval
(erasure, when a DPO must approve) → in_progress → completed, or → rejected with a reason. A signed-in
customer is verified by their sign-in. Every request has a statutory deadline (``dsr_deadline_days``)
and is overdue once it passes unfinished.

Erasure goes through :mod:`cdp.dsr.destruction` in two commits: the plan (an ``erasure_job``), then the
destruction with its signed receipt, the request's completion and the audit entry. A crash between the
two leaves a planned job that :meth:`DsrService.process` (or the scheduler's resume) picks up again.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.access.gate import AccessGate, Actor
from cdp.access.outbox import Outbox
from cdp.access.policy import FieldPolicy
from cdp.audit import AuditEvent, Outcome, record, record_now
from cdp.config import Settings
from cdp.consent.ledger import ConsentLedger
from cdp.db import Database
from cdp.db.models import DsrRequest, EntityMember, ErasureJob, SourceRecord
from cdp.db.types import utcnow
from cdp.dsr.archives import ArchiveStore
from cdp.dsr.destruction import Destroyer, DestructionOutcome, load_job
from cdp.dsr.export import ExportBuilder
from cdp.dsr.receipts import Receipts, SignedReceipt
from cdp.dsr.routing import RoutingRules, WorkQueue
from cdp.errors import CdpError
from cdp.platform import Platform
from cdp.profiles.service import ProfileService
from cdp.retention.policy import RetentionPolicy
from cdp.sources.records import RecordRepository
from cdp.vault import Vault, VaultError

KINDS = ("access", "erasure")
OPEN_STATUSES = ("received", "verifying", "awaiting_approval", "in_progress")
REJECTION_REASONS = (
    "identity_not_verified",
    "manifestly_unfounded",
    "excessive",
    "legal_obligation",
    "legal_claims",
    "duplicate",
    "withdrawn",
)
CODE_KIND = "dsr_code"
CODE_DIGITS = 8
MAX_CODE_ATTEMPTS = 5


class DsrError(CdpError):
    """A request cannot do this now (wrong state, nothing to verify against); the message says why."""


class DsrNotFound(CdpError):
    pass


class VerificationFailed(CdpError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"verification failed: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class DsrView:
    id: uuid.UUID
    kind: str
    status: str
    entity_id: uuid.UUID
    channel: str
    opened_by: str
    received_at: datetime
    due_at: datetime
    verified_at: datetime | None
    verification: str | None
    approval_required: bool
    approved_by: str | None
    approved_at: datetime | None
    completed_at: datetime | None
    rejected_reason: str | None
    rejected_detail: str | None
    queue: str | None
    assignee: str | None
    result_id: uuid.UUID | None
    now: datetime

    @property
    def overdue(self) -> bool:
        return self.status in OPEN_STATUSES and self.due_at < self.now

    def to_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        remaining = (self.due_at - self.now).total_seconds() / 86400
        return {
            "id": str(self.id),
            "kind": self.kind,
            "status": self.status,
            "customer_id": str(self.entity_id),
            "channel": self.channel,
            "opened_by": self.opened_by,
            "received_at": iso(self.received_at),
            "due_at": iso(self.due_at),
            "overdue": self.overdue,
            "days_left": round(remaining, 1) if self.status in OPEN_STATUSES else None,
            "verified_at": iso(self.verified_at),
            "verification": self.verification,
            "approval_required": self.approval_required,
            "approved_by": self.approved_by,
            "approved_at": iso(self.approved_at),
            "completed_at": iso(self.completed_at),
            "rejected_reason": self.rejected_reason,
            "rejected_detail": self.rejected_detail,
            "queue": self.queue,
            "assignee": self.assignee,
            "result_id": str(self.result_id) if self.result_id else None,
        }


def view_of(row: DsrRequest, now: datetime | None = None) -> DsrView:
    return DsrView(
        id=row.id,
        kind=row.kind,
        status=row.status,
        entity_id=row.entity_id,
        channel=row.channel,
        opened_by=row.opened_by,
        received_at=row.received_at,
        due_at=row.due_at,
        verified_at=row.verified_at,
        verification=row.verification,
        approval_required=row.approval_required,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        completed_at=row.completed_at,
        rejected_reason=row.rejected_reason,
        rejected_detail=row.rejected_detail,
        queue=row.queue,
        assignee=row.assignee,
        result_id=row.result_id,
        now=now or utcnow(),
    )


@dataclass(frozen=True)
class Processed:
    """What carrying out a request produced: the request, and either an export's one-time download token
    (shown once, never stored) or an erasure receipt."""

    request: DsrView
    download_token: str | None = None
    receipt: SignedReceipt | None = None
    outcome: DestructionOutcome | None = None


class DsrService:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        settings: Settings,
        policy: RetentionPolicy,
        *,
        exporter: ExportBuilder | None = None,
        routing: RoutingRules | None = None,
    ) -> None:
        """``exporter`` builds access exports; ``routing`` puts each request into its department queue
        (and closes the work item when the request is completed or rejected)."""
        self.db = db
        self.vault = vault
        self.settings = settings
        self.policy = policy
        self.exporter = exporter
        self.routing = routing

    @classmethod
    def for_platform(cls, platform: Platform) -> DsrService:
        """The service as servers, the CLI and jobs use it: the packaged (or configured) retention policy,
        the default field policy and consent ledger for exports, the packaged routing rules."""
        gate = AccessGate(FieldPolicy.default(), ConsentLedger(platform.db))
        profiles = ProfileService(platform.db, platform.vault, gate)
        return cls(
            platform.db,
            platform.vault,
            platform.settings,
            RetentionPolicy.load(platform.settings.retention_policy_file),
            exporter=ExportBuilder(platform.db, platform.vault, profiles),
            routing=RoutingRules.load(),
        )

    # -- opening -------------------------------------------------------------------------------------

    def open_self_service(self, actor: Actor, kind: str, *, now: datetime | None = None) -> DsrView:
        """A signed-in customer's own request: their sign-in verified them."""
        if actor.customer_record_id is None:
            raise DsrError("only a signed-in customer can open a request for themselves")
        at = now or utcnow()
        with self.db.transaction() as session:
            entity_id = self._entity_of(session, actor.customer_record_id)
            row = self._new(
                session, kind, entity_id, actor.customer_record_id, "self_service", actor.principal, at
            )
            row.verified_at = at
            row.verification = "signed_in"
            row.status = self._after_verification(row)
            self._route(session, row)
            record(session, self._event("dsr.request", row, details={"channel": row.channel}))
            return view_of(row, at)

    def open_on_behalf(
        self, entity_id: uuid.UUID, kind: str, *, opened_by: str, now: datetime | None = None
    ) -> DsrView:
        """A DPO opens a request a customer made by letter or phone: a one-time code goes to the email
        the customer's records hold, and the request waits until the customer gives it back."""
        at = now or utcnow()
        with self.db.transaction() as session:
            found = self._verification_contact(session, entity_id)
            if found is None:
                raise DsrError(
                    "the customer has no email on file to verify them with; verify their identity another "
                    "way and record the request in the source system"
                )
            record_id, subject_id, address = found
            row = self._new(session, kind, entity_id, record_id, "on_behalf", opened_by, at)
            row.status = "verifying"
            code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
            row.code_hash = self._code_hash(row.id, code)
            row.code_expires_at = at + timedelta(minutes=self.settings.dsr_code_ttl_minutes)
            Outbox(session, self.vault).put(
                subject_id,
                purpose="dsr_verification",
                recipient=address,
                subject="Confirm your data request",
                body=(
                    f"We received a request to {'export' if kind == 'access' else 'erase'} your data. "
                    f"To confirm it is yours, give us this code: {code}. It expires in "
                    f"{self.settings.dsr_code_ttl_minutes} minutes. If you did not ask, tell us: "
                    "nothing happens without the code."
                ),
            )
            self._route(session, row)
            record(session, self._event("dsr.request", row, details={"channel": row.channel}))
            return view_of(row, at)

    def _new(
        self,
        session: Session,
        kind: str,
        entity_id: uuid.UUID,
        record_id: uuid.UUID,
        channel: str,
        opened_by: str,
        at: datetime,
    ) -> DsrRequest:
        if kind not in KINDS:
            raise DsrError(f"kind must be one of {', '.join(KINDS)}")
        duplicate = session.execute(
            select(DsrRequest.id).where(
                DsrRequest.entity_id == entity_id,
                DsrRequest.kind == kind,
                DsrRequest.status.in_(OPEN_STATUSES),
            )
        ).first()
        if duplicate is not None:
            raise DsrError(f"this customer already has an open {kind} request ({duplicate[0]})")
        row = DsrRequest(
            id=uuid.uuid4(),
            kind=kind,
            status="received",
            entity_id=entity_id,
            record_id=record_id,
            channel=channel,
            opened_by=opened_by,
            received_at=at,
            updated_at=at,
            due_at=at + timedelta(days=self.settings.dsr_deadline_days),
            code_attempts=0,
            approval_required=kind == "erasure" and self.settings.dsr_erasure_requires_approval,
        )
        session.add(row)
        session.flush()
        return row

    def _entity_of(self, session: Session, record_id: uuid.UUID) -> uuid.UUID:
        entity_id = session.execute(
            select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
        ).scalar_one_or_none()
        if entity_id is None:
            raise DsrNotFound("your profile is not available yet")
        return entity_id

    def _verification_contact(
        self, session: Session, entity_id: uuid.UUID
    ) -> tuple[uuid.UUID, uuid.UUID, str] | None:
        """(record, subject, address) of the customer's most recently updated record holding an email."""
        ids = list(
            session.execute(
                select(SourceRecord.id)
                .join(EntityMember, EntityMember.record_id == SourceRecord.id)
                .where(EntityMember.entity_id == entity_id)
                .order_by(SourceRecord.updated_at.desc(), SourceRecord.id)
            ).scalars()
        )
        if not ids:
            raise DsrNotFound(f"customer {entity_id} does not exist")
        for stored in RecordRepository(session, self.vault).get_many(ids):
            if stored.data.email:
                return stored.id, stored.subject_id, stored.data.email
        return None

    def _code_hash(self, request_id: uuid.UUID, code: str) -> bytes:
        return self.vault.blind.fingerprint(CODE_KIND, f"{request_id}:{code}".encode())

    def _after_verification(self, row: DsrRequest) -> str:
        return "awaiting_approval" if row.approval_required and row.approved_at is None else "in_progress"

    def _route(self, session: Session, row: DsrRequest) -> None:
        if self.routing is not None:
            item = WorkQueue(session, self.routing).route(f"dsr_{row.kind}", row.id, now=row.received_at)
            row.queue = item.queue

    def _close_work(self, session: Session, row: DsrRequest) -> None:
        if self.routing is None:
            return
        queue = WorkQueue(session, self.routing)
        item = queue.find(f"dsr_{row.kind}", row.id)
        if item is not None and item.status == "open":
            queue.close(item.id)

    def _event(
        self,
        action: str,
        row: DsrRequest,
        outcome: Outcome = Outcome.SUCCESS,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            action,
            outcome,
            "dsr",
            (str(row.entity_id), str(row.id)),
            details={"kind": row.kind, "status": row.status, **(details or {})},
        )

    # -- verification, approval, rejection -----------------------------------------------------------

    def verify(self, request_id: uuid.UUID, code: str, *, now: datetime | None = None) -> DsrView:
        """Check the customer's code. A wrong code counts an attempt (committed even though this raises);
        after five the request can no longer be verified and must be rejected or reopened."""
        at = now or utcnow()
        failure: VerificationFailed | None = None
        with self.db.transaction() as session:
            row = self._locked(session, request_id)
            presented = "".join(code.split())
            if row.status != "verifying" or row.code_hash is None:
                raise DsrError(f"request {request_id} is not waiting for verification (status {row.status})")
            if row.code_expires_at is not None and row.code_expires_at <= at:
                failure = VerificationFailed("expired_code")
            elif row.code_attempts >= MAX_CODE_ATTEMPTS:
                failure = VerificationFailed("too_many_attempts")
            elif not hmac.compare_digest(self._code_hash(row.id, presented), row.code_hash):
                row.code_attempts += 1
                failure = VerificationFailed("bad_code")
            if failure is not None:
                record(session, self._event("dsr.verify", row, Outcome.DENIED, {"reason": failure.reason}))
            else:
                row.verified_at = at
                row.verification = "email_code"
                row.code_hash = None
                row.status = self._after_verification(row)
                row.updated_at = at
                record(session, self._event("dsr.verify", row))
            view = view_of(row, at)
        if failure is not None:
            raise failure
        return view

    def approve(self, request_id: uuid.UUID, *, approver: str, now: datetime | None = None) -> DsrView:
        at = now or utcnow()
        with self.db.transaction() as session:
            row = self._locked(session, request_id)
            if row.status != "awaiting_approval":
                raise DsrError(f"request {request_id} is not awaiting approval (status {row.status})")
            if approver == row.opened_by and row.channel == "on_behalf":
                raise DsrError("the DPO who opened a request on a customer's behalf cannot also approve it")
            row.approved_by = approver
            row.approved_at = at
            row.status = "in_progress"
            row.updated_at = at
            record(session, self._event("dsr.approve", row))
            return view_of(row, at)

    def reject(
        self, request_id: uuid.UUID, *, reason: str, detail: str = "", now: datetime | None = None
    ) -> DsrView:
        if reason not in REJECTION_REASONS:
            raise DsrError(f"reason must be one of {', '.join(REJECTION_REASONS)}")
        at = now or utcnow()
        with self.db.transaction() as session:
            row = self._locked(session, request_id)
            if row.status not in OPEN_STATUSES:
                raise DsrError(f"request {request_id} is already {row.status}")
            if row.status == "in_progress" and self._planned_job(session, row.id) is not None:
                raise DsrError("the erasure has started; it cannot be rejected any more")
            row.status = "rejected"
            row.rejected_reason = reason
            row.rejected_detail = detail.strip()[:300] or None
            row.completed_at = at
            row.updated_at = at
            self._close_work(session, row)
            record(session, self._event("dsr.reject", row, details={"reason": reason}))
            return view_of(row, at)

    def _locked(self, session: Session, request_id: uuid.UUID) -> DsrRequest:
        row = session.execute(
            select(DsrRequest).where(DsrRequest.id == request_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise DsrNotFound(f"request {request_id} does not exist")
        return row

    @staticmethod
    def _planned_job(session: Session, request_id: uuid.UUID) -> ErasureJob | None:
        return (
            session.execute(
                select(ErasureJob).where(ErasureJob.request_id == request_id).order_by(ErasureJob.created_at)
            )
            .scalars()
            .first()
        )

    # -- carrying out --------------------------------------------------------------------------------

    def process(self, request_id: uuid.UUID, *, now: datetime | None = None) -> Processed:
        """Carry out an in-progress request. Safe to call again after a crash: an erasure resumes from its
        planned job; a completed request is returned as it is."""
        with self.db.read() as session:
            row = session.get(DsrRequest, request_id)
            if row is None:
                raise DsrNotFound(f"request {request_id} does not exist")
            kind, status = row.kind, row.status
        if status == "completed":
            with self.db.read() as session:
                return Processed(view_of(self._get(session, request_id), now))
        if status != "in_progress":
            raise DsrError(f"request {request_id} cannot be carried out yet (status {status})")
        if kind == "access":
            return self._export(request_id, now)
        return self._erase(request_id, now)

    def _get(self, session: Session, request_id: uuid.UUID) -> DsrRequest:
        row = session.get(DsrRequest, request_id)
        if row is None:
            raise DsrNotFound(f"request {request_id} does not exist")
        return row

    def _export(self, request_id: uuid.UUID, now: datetime | None) -> Processed:
        if self.exporter is None:
            raise DsrError("exports are not configured in this process")
        with self.db.read() as session:
            row = self._get(session, request_id)
            entity_id, opened_by, channel, record_id = (
                row.entity_id,
                row.opened_by,
                row.channel,
                row.record_id,
            )
        if channel == "self_service":
            actor = Actor(opened_by, "customer", None, record_id)
            purpose = "self_service"
        else:
            actor = Actor(opened_by, "dpo")
            purpose = "dsr"
        bundle = self.exporter.build(actor, entity_id, purpose=purpose, request_id=request_id)
        at = now or utcnow()
        with self.db.transaction() as session:
            row = self._locked(session, request_id)
            if row.status != "in_progress":
                raise DsrError(f"request {request_id} changed while it was being carried out ({row.status})")
            archive_id, token = ArchiveStore(session, self.vault).store(
                request_id, bundle, ttl=timedelta(hours=self.settings.dsr_export_ttl_hours)
            )
            # The link also goes to the email on file, whoever carries the request out: a customer whose
            # own request finished in a retry (resume after a crash) still gets it.
            contact = self._verification_contact(session, entity_id)
            if contact is not None:
                Outbox(session, self.vault).put(
                    contact[1],
                    purpose="dsr_export",
                    recipient=contact[2],
                    subject="Your data export is ready",
                    body=(
                        "Your data export is ready. Download it once, within "
                        f"{self.settings.dsr_export_ttl_hours} hours, with this code: {token}"
                    ),
                )
            row.status = "completed"
            row.completed_at = at
            row.updated_at = at
            row.result_id = archive_id
            self._close_work(session, row)  # the builder recorded dsr.export; the download records its own
            view = view_of(row, at)
        return Processed(view, download_token=token if channel == "self_service" else None)

    def _erase(self, request_id: uuid.UUID, now: datetime | None) -> Processed:
        with self.db.transaction() as session:
            row = self._locked(session, request_id)
            job = self._planned_job(session, request_id)
            if job is None:
                destroyer = Destroyer(session, self.vault, self.policy)
                members = list(
                    session.execute(
                        select(EntityMember.record_id).where(EntityMember.entity_id == row.entity_id)
                    ).scalars()
                )
                plan = destroyer.plan(members, reason="dsr_erasure", suppress=True, entity_id=row.entity_id)
                job_id = destroyer.save(plan, request_id=request_id)
            else:
                job_id = job.id
        at = now or utcnow()
        with self.db.transaction() as session:
            row = self._locked(session, request_id)
            if row.status == "completed":
                return Processed(view_of(row, at))
            job, plan = load_job(session, job_id)
            outcome = Destroyer(session, self.vault, self.policy).execute(job_id, plan, now=at)
            receipt = Receipts(session, self.vault).issue(
                "erasure_receipt",
                {
                    "request_id": str(row.id),
                    "customer_id": str(row.entity_id),
                    "job_id": str(job_id),
                    "requested_at": row.received_at.isoformat(),
                    "verified_by": row.verification,
                    "approved_by": row.approved_by,
                    "destroyed_records": sorted(str(r) for r in plan.records),
                    "destroyed": outcome.to_dict(),
                    "kept_under_legal_hold": sorted(str(r) for r in plan.held),
                    "kept_pseudonymized": {
                        o.name: {"count": outcome.retained_by_obligation.get(o.name, 0), "basis": o.basis}
                        for o in self.policy.obligations
                        if outcome.retained_by_obligation.get(o.name)
                    },
                    "retention_policy": {"version": self.policy.version, "sha256": self.policy.digest},
                    "method": "crypto-shredding of per-subject data keys (AES-256-GCM), row deletion, "
                    "suppression by keyed hash",
                },
                now=at,
            )
            job.receipt_id = receipt.id
            row.status = "completed"
            row.completed_at = at
            row.updated_at = at
            row.result_id = receipt.id
            self._close_work(session, row)
            record(
                session,
                AuditEvent(
                    "dsr.erase",
                    Outcome.SUCCESS,
                    "dsr",
                    (str(row.entity_id), str(row.id), *(str(r) for r in plan.records)),
                    details={
                        "records": outcome.records,
                        "held": len(plan.held),
                        "retained": outcome.retained,
                        "receipt_id": str(receipt.id),
                    },
                ),
            )
            view = view_of(row, at)
        self.vault.keys.forget_unwrapped()
        return Processed(view, receipt=receipt, outcome=outcome)

    def resume(self, *, now: datetime | None = None) -> int:
        """Carry out every in-progress request (after a crash, or approvals made elsewhere)."""
        with self.db.read() as session:
            pending = session.execute(
                select(DsrRequest.id, DsrRequest.kind)
                .where(DsrRequest.status == "in_progress")
                .order_by(DsrRequest.received_at)
            ).all()
        done = 0
        for request_id, kind in pending:
            try:
                self.process(request_id, now=now)
                done += 1
            except (CdpError, VaultError) as exc:  # one stuck request must not stop the others
                record_now(
                    self.db,
                    AuditEvent(
                        "dsr.erase" if kind == "erasure" else "dsr.export",
                        Outcome.FAILED,
                        "dsr",
                        (str(request_id),),
                        details={"error": type(exc).__name__},
                    ),
                )
        return done

    # -- reading -------------------------------------------------------------------------------------

    def get(self, request_id: uuid.UUID, *, entity_id: uuid.UUID | None = None) -> DsrView:
        """One request; with ``entity_id``, only if it is about that customer (a customer's own view)."""
        with self.db.read() as session:
            row = session.get(DsrRequest, request_id)
            if row is None or (entity_id is not None and row.entity_id != entity_id):
                raise DsrNotFound(f"request {request_id} does not exist")
            return view_of(row)

    def search(
        self,
        *,
        status: str | None = None,
        overdue: bool = False,
        entity_id: uuid.UUID | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> list[DsrView]:
        at = now or utcnow()
        query = select(DsrRequest).order_by(DsrRequest.due_at, DsrRequest.id).limit(limit)
        if status is not None:
            query = query.where(DsrRequest.status == status)
        if overdue:
            query = query.where(DsrRequest.status.in_(OPEN_STATUSES), DsrRequest.due_at < at)
        if entity_id is not None:
            query = query.where(DsrRequest.entity_id == entity_id)
        with self.db.read() as session:
            return [view_of(row, at) for row in session.execute(query).scalars()]

    def mine(self, actor: Actor) -> list[DsrView]:
        """A signed-in customer's requests — found by the record they signed in with, so requests about
        a customer who was since erased (whose entity is gone) still show their outcome."""
        if actor.customer_record_id is None:
            raise DsrError("only a signed-in customer has own requests")
        with self.db.read() as session:
            entity_id = session.execute(
                select(EntityMember.entity_id).where(EntityMember.record_id == actor.customer_record_id)
            ).scalar_one_or_none()
            query = select(DsrRequest).order_by(DsrRequest.received_at.desc())
            if entity_id is not None:
                query = query.where(
                    (DsrRequest.entity_id == entity_id) | (DsrRequest.record_id == actor.customer_record_id)
                )
            else:
                query = query.where(DsrRequest.record_id == actor.customer_record_id)
            return [view_of(row) for row in session.execute(query).scalars()]
