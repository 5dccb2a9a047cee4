"""`cdp dsr ...`, `cdp receipts ...` and `cdp work ...`: data-subject requests a DPO takes on a customer's
behalf (a letter, a phone call), the signed receipts of what was destroyed, and the department queues
that requests and complaints wait in.

Everything runs as the operator (``operator:<OS user>``): the request's ``opened_by`` and ``approved_by``,
a legal hold's author and every audit entry name that principal. The services record the changes in the
transactions that make them; a change that fails is recorded here, in a transaction of its own, naming
the error class only. Reads record ``dsr.read``, ``dsr.receipt`` or ``work.read``.

Nothing printed here is a customer's data: requests, receipts and work items hold ids, states, counts
and reason codes. The one-time verification code goes to the email on file, never to the terminal, and an
export's download link goes to the customer only.

Exit status: 0 done; 1 ``receipts verify`` found the receipt invalid; 2 an expected failure (one
``error:`` line on stderr).

Imported by :mod:`cdp.cli` (which registers :data:`dsr`, :data:`receipts` and :data:`work`); it imports
the CLI's helpers only inside functions, so either module can be imported first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cdp.errors import CdpError

if TYPE_CHECKING:
    from cdp.cli import _State
    from cdp.dsr.receipts import SignedReceipt
    from cdp.dsr.routing import WorkItemView
    from cdp.dsr.service import DsrService, DsrView, Processed
    from cdp.platform import Platform

STATUSES = ("received", "verifying", "awaiting_approval", "in_progress", "completed", "rejected")
RECEIPT_KINDS = ("erasure_receipt", "destruction_certificate")
REJECTION_REASONS = (
    "identity_not_verified",
    "manifestly_unfounded",
    "excessive",
    "legal_obligation",
    "legal_claims",
    "duplicate",
    "withdrawn",
)
"""The service's reasons (cdp.dsr.service.REJECTION_REASONS, kept equal by a test), spelt out here so
that `cdp --help` does not import the whole request service."""
ROUTING_BATCH = 1000
"""Complaints routed, or items escalated, per transaction."""


# -- shared helpers (cdp/cli_retention.py uses them too) --------------------------------------------------


@contextmanager
def opened(state: _State) -> Iterator[Platform]:
    from cdp.cli import _platform

    with _platform(state) as platform:
        yield platform


def operator() -> str:
    """The principal this command acts as (``operator:<OS user>``, set by the ``cdp`` group)."""
    from cdp.audit.context import current_actor

    return current_actor().principal


@contextmanager
def audited(platform: Platform, action: str, subjects: Sequence[str] = ()) -> Iterator[None]:
    """Record ``action`` as not found or failed when the block raises.

    The block's transaction has rolled back by then, and any entry the service recorded in it, so the
    attempt is recorded in a transaction of its own: ids and the error class, never the input. A wrong
    verification code is the exception: the service already committed its ``denied`` entry."""
    from cdp.analytics.errors import SegmentNotFound
    from cdp.audit import AuditEvent, Outcome, record_now
    from cdp.dsr.receipts import ReceiptNotFound
    from cdp.dsr.routing import WorkItemNotFound
    from cdp.dsr.service import DsrNotFound, VerificationFailed
    from cdp.retention.holds import HoldNotFound

    try:
        yield
    except VerificationFailed:
        raise
    except Exception as exc:
        missing = isinstance(
            exc, DsrNotFound | ReceiptNotFound | HoldNotFound | WorkItemNotFound | SegmentNotFound
        )
        record_now(
            platform.db,
            AuditEvent(
                action,
                Outcome.NOT_FOUND if missing else Outcome.FAILED,
                subjects=tuple(subjects),
                details={"error": type(exc).__name__},
            ),
        )
        raise


def record_read(
    platform: Platform,
    action: str,
    *,
    subjects: Sequence[str] = (),
    purpose: str | None = None,
    **details: Any,
) -> None:
    """A read is recorded before its result is printed: nothing leaves unaudited."""
    from cdp.audit import AuditEvent, record_now

    record_now(
        platform.db,
        AuditEvent(
            action,
            purpose=purpose,
            subjects=tuple(subjects),
            details={k: v for k, v in details.items() if v is not None},
        ),
    )


def say(text: str) -> None:
    from cdp.cli import out

    out.print(text, markup=False, highlight=False)


def warn(text: str) -> None:
    from cdp.cli import err

    err.print(text, markup=False, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    """JSON on stdout exactly as serialized: no console wrapping or highlighting, so it can be piped."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def show_table(table: Table) -> None:
    from cdp.cli import _print_table

    _print_table(table)


def cell(value: object) -> Any:
    from cdp.cli import _cell

    return _cell(value)


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CdpError(f"{what} must be an id (UUID)") from None


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else "-"


def key_value_table(title: str, rows: Sequence[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("")
    table.add_column("")
    for label, value in rows:
        table.add_row(label, cell(value))
    return table


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


# -- data-subject requests ----------------------------------------------------------------------------


def _service(platform: Platform) -> DsrService:
    from cdp.dsr.service import DsrService

    return DsrService.for_platform(platform)


def _request_subjects(view: DsrView) -> tuple[str, str]:
    return (str(view.entity_id), str(view.id))


def _next_step(view: DsrView) -> str:
    if view.status == "awaiting_approval":
        return (
            f"next: a DPO other than the one who opened it approves it: `cdp dsr approve {view.id}` "
            f"(or rejects it: `cdp dsr reject {view.id} --reason ...`)"
        )
    if view.status == "in_progress":
        return (
            f"next: `cdp dsr process {view.id}` carries it out now; a running server does so at its next "
            "housekeeping tick"
        )
    if view.status == "verifying":
        return f"next: `cdp dsr verify {view.id} CODE` with the code the customer gives back"
    return ""


def _days_left(view: DsrView) -> str:
    left = view.to_dict()["days_left"]
    if left is None:
        return "-"
    return f"{left:.1f}"


@click.group()
def dsr() -> None:
    """Data-subject requests (access/export, erasure): open on a customer's behalf, verify, approve or
    reject, carry out, and follow their statutory deadlines."""


@dsr.command("open")
@click.option("--customer", required=True, metavar="UUID", help="The customer (entity) the request is about.")
@click.option("--kind", type=click.Choice(["access", "erasure"]), required=True)
@_JSON
@click.pass_obj
def dsr_open(state: _State, customer: str, kind: str, as_json: bool) -> None:
    """Open a request a customer made by letter or phone. A one-time code goes to the email their
    records hold (the demo's `cdp outbox list`); the request waits until they give it back."""
    customer_id = parse_id(customer, "--customer")
    with opened(state) as platform, audited(platform, "dsr.request", (str(customer_id),)):
        view = _service(platform).open_on_behalf(customer_id, kind, opened_by=operator())
    if as_json:
        emit_json(view.to_dict())
        return
    say(f"opened {kind} request {view.id} for customer {view.entity_id}: {view.status}")
    say(f"due {when(view.due_at)} UTC ({_days_left(view)} days); queue {view.queue or '-'}")
    say(
        "a one-time code went to the email on the customer's records; it is never shown here, so the "
        "customer has to read it back"
    )
    say(_next_step(view))


@dsr.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--overdue", is_flag=True, help="Only open requests past their statutory deadline.")
@click.option("--customer", default=None, metavar="UUID", help="Only this customer's requests.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_JSON
@click.pass_obj
def dsr_list(
    state: _State, status: str | None, overdue: bool, customer: str | None, limit: int, as_json: bool
) -> None:
    """Requests, the nearest deadline first, with days left and the overdue flag."""
    customer_id = parse_id(customer, "--customer") if customer else None
    subjects = (str(customer_id),) if customer_id else ()
    with opened(state) as platform, audited(platform, "dsr.read", subjects):
        views = _service(platform).search(status=status, overdue=overdue, entity_id=customer_id, limit=limit)
        record_read(platform, "dsr.read", subjects=subjects, purpose="dsr", requests=len(views))
    if as_json:
        emit_json([view.to_dict() for view in views])
        return
    if not views:
        say("no requests match")
        return
    table = Table(title=f"data-subject requests ({len(views)}, nearest deadline first)")
    for column in (
        "request", "kind", "status", "customer", "channel", "received", "due", "days left", "overdue",
        "queue",
    ):  # fmt: skip
        table.add_column(column, justify="right" if column == "days left" else "left")
    for view in views:
        table.add_row(
            cell(view.id),
            view.kind,
            view.status,
            cell(view.entity_id),
            view.channel,
            when(view.received_at),
            when(view.due_at),
            _days_left(view),
            "OVERDUE" if view.overdue else "",
            cell(view.queue or "-"),
        )
    show_table(table)
    late = sum(1 for view in views if view.overdue)
    if late:
        say(f"{late} request(s) overdue")


@dsr.command("show")
@click.argument("request")
@_JSON
@click.pass_obj
def dsr_show(state: _State, request: str, as_json: bool) -> None:
    """One request: its state, who opened, verified and approved it, its deadline, queue and result."""
    from cdp.dsr.routing import RoutingRules, WorkQueue

    request_id = parse_id(request, "REQUEST")
    with opened(state) as platform, audited(platform, "dsr.read", (str(request_id),)):
        view = _service(platform).get(request_id)
        with platform.db.read() as session:
            item = WorkQueue(session, RoutingRules.load()).find(f"dsr_{view.kind}", view.id)
        record_read(platform, "dsr.read", subjects=_request_subjects(view), purpose="dsr", requests=1)
    if as_json:
        emit_json({**view.to_dict(), "work_item": item.to_dict() if item else None})
        return
    verified = f"{when(view.verified_at)} ({view.verification})" if view.verified_at else "not yet"
    if not view.approval_required:
        approval = "not required"
    elif view.approved_at is None:
        approval = "required, not given"
    else:
        approval = f"{when(view.approved_at)} by {view.approved_by}"
    rows: list[tuple[str, object]] = [
        ("request", view.id),
        ("kind", view.kind),
        ("status", view.status),
        ("customer", view.entity_id),
        ("channel", view.channel),
        ("opened by", view.opened_by),
        ("received", when(view.received_at)),
        ("due", when(view.due_at) + (" (OVERDUE)" if view.overdue else "")),
        ("days left", _days_left(view)),
        ("verified", verified),
        ("approval", approval),
        ("completed", when(view.completed_at)),
    ]
    if view.status == "rejected":
        rows += [
            ("rejected because", view.rejected_reason),
            ("rejection detail", view.rejected_detail or "-"),
        ]
    if view.result_id is not None:
        rows.append(("receipt" if view.kind == "erasure" else "export archive", view.result_id))
    rows.append(("queue", view.queue or "-"))
    if item is not None:
        rows += [
            ("work item", f"{item.id} ({item.status}, level {item.escalation_level})"),
            ("assignee", item.assignee or "-"),
        ]
    show_table(key_value_table(f"{view.kind} request {view.id}", rows))
    step = _next_step(view)
    if step:
        say(step)


@dsr.command("verify")
@click.argument("request")
@click.argument("code")
@click.pass_obj
def dsr_verify(state: _State, request: str, code: str) -> None:
    """Check the one-time CODE the customer read back. Five wrong codes and the request can only be
    rejected."""
    request_id = parse_id(request, "REQUEST")
    with opened(state) as platform, audited(platform, "dsr.verify", (str(request_id),)):
        view = _service(platform).verify(request_id, code)
    say(f"verified request {view.id}: now {view.status}")
    say(_next_step(view))


@dsr.command("approve")
@click.argument("request")
@click.pass_obj
def dsr_approve(state: _State, request: str) -> None:
    """Approve an erasure as the operator. Four eyes: whoever opened a request on a customer's behalf
    cannot approve it too."""
    request_id = parse_id(request, "REQUEST")
    with opened(state) as platform, audited(platform, "dsr.approve", (str(request_id),)):
        view = _service(platform).approve(request_id, approver=operator())
    say(f"approved request {view.id} as {view.approved_by}: now {view.status}")
    say(_next_step(view))


@dsr.command("reject")
@click.argument("request")
@click.option(
    "--reason",
    type=click.Choice(REJECTION_REASONS),
    required=True,
    help="Why, as a reason code (shown to the customer).",
)
@click.option(
    "--detail",
    default="",
    help="At most 300 characters, shown to the customer: a case number, never personal data.",
)
@click.pass_obj
def dsr_reject(state: _State, request: str, reason: str, detail: str) -> None:
    """Reject an open request with a reason; its work item closes."""
    request_id = parse_id(request, "REQUEST")
    with opened(state) as platform, audited(platform, "dsr.reject", (str(request_id),)):
        view = _service(platform).reject(request_id, reason=reason, detail=detail)
    say(f"rejected request {view.id}: {view.rejected_reason}")


def _destroyed_table(processed: Processed, receipt: SignedReceipt) -> Table:
    assert processed.outcome is not None
    outcome = processed.outcome
    content = receipt.content
    rows: list[tuple[str, object]] = [("records destroyed", f"{outcome.records:,}")]
    for category, count in sorted(outcome.by_category.items()):
        rows.append((f"  {category}", f"{count:,}"))
    rows += [
        ("data keys shredded", f"{outcome.subjects_shredded:,}"),
        ("interactions", f"{outcome.interactions:,}"),
        ("record versions", f"{outcome.versions:,}"),
        ("consent events", f"{outcome.consent_events:,}"),
        ("blind index entries", f"{outcome.blind_index_entries:,}"),
        ("customers removed", f"{outcome.entities_removed:,}"),
        ("sign-ins revoked", f"{outcome.sign_ins_revoked:,}"),
        ("identifiers suppressed", f"{outcome.suppressed_identifiers:,}"),
        ("kept under legal hold", f"{len(content.get('kept_under_legal_hold', [])):,} record(s)"),
        ("kept pseudonymized", f"{outcome.retained:,} document(s)"),
    ]
    for obligation, count in sorted(outcome.retained_by_obligation.items()):
        rows.append((f"  {obligation}", f"{count:,}"))
    rows += [("receipt", receipt.id), ("signed by key", receipt.key_id)]
    return key_value_table(f"erasure of customer {processed.request.entity_id}", rows)


def write_receipt(path: Path, receipt: SignedReceipt) -> None:
    """The receipt as exported: what `cdp receipts verify` and a third party check offline."""
    try:
        path.write_text(json.dumps(receipt.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CdpError(
            f"cannot write the receipt to {path}: {exc.strerror or type(exc).__name__} "
            f"(get it with `cdp receipts show {receipt.id} --json`)"
        ) from None


@dsr.command("process")
@click.argument("request")
@click.option(
    "--receipt-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Erasure: also write the signed receipt (JSON) to this file.",
)
@_JSON
@click.pass_obj
def dsr_process(state: _State, request: str, receipt_out: Path | None, as_json: bool) -> None:
    """Carry out an in-progress request: build and send the export, or erase the customer and sign the
    receipt. Safe to run again: an interrupted erasure resumes, a completed request is shown as it is."""
    from cdp.dsr.receipts import Receipts

    request_id = parse_id(request, "REQUEST")
    with opened(state) as platform:
        service = _service(platform)
        with audited(platform, "dsr.read", (str(request_id),)):
            before = service.get(request_id)
        if before.kind == "access" and receipt_out is not None:
            raise click.UsageError("--receipt-out applies to erasure requests; this is an access request")
        action = "dsr.erase" if before.kind == "erasure" else "dsr.export"
        with audited(platform, action, _request_subjects(before)):
            processed = service.process(request_id)
        receipt = processed.receipt
        if receipt is None and before.kind == "erasure" and processed.request.result_id is not None:
            with audited(platform, "dsr.receipt", _request_subjects(before)), platform.db.read() as session:
                receipt = Receipts(session, platform.vault).get(processed.request.result_id)
    if receipt is not None and receipt_out is not None:
        write_receipt(receipt_out, receipt)
    view = processed.request
    if as_json:
        emit_json(
            {
                "request": view.to_dict(),
                "destroyed": processed.outcome.to_dict() if processed.outcome else None,
                "receipt": receipt.to_dict() if receipt else None,
            }
        )
        return
    if processed.outcome is not None and receipt is not None:
        show_table(_destroyed_table(processed, receipt))
        say(f"completed: customer {view.entity_id} erased (request {view.id}); receipt {receipt.id}")
    elif before.status != "completed" and view.kind == "access":
        say(
            f"completed: export {view.result_id} of request {view.id} is ready; its one-time download "
            "code went to the email on the customer's records"
        )
    else:
        say(f"request {view.id} was already {view.status} on {when(view.completed_at)}")
        if receipt is not None:
            say(f"receipt {receipt.id}")
    if receipt_out is not None and receipt is not None:
        say(f"receipt written to {receipt_out}; check it anywhere with `cdp receipts verify {receipt_out}`")


@dsr.command("resume")
@click.pass_obj
def dsr_resume(state: _State) -> None:
    """Carry out every in-progress request — what a restart after a crash runs (a running server does
    it at each housekeeping tick). A request that fails is recorded as failed and left in progress."""
    with opened(state) as platform, audited(platform, "dsr.erase"):
        service = _service(platform)
        waiting = len(service.search(status="in_progress", limit=1000))
        done = service.resume()
        left = service.search(status="in_progress", limit=1000)
    say(f"carried out {done} of {waiting} in-progress request(s)")
    if left:
        raise CdpError(
            f"{len(left)} request(s) are still in progress ({', '.join(str(v.id) for v in left[:5])}"
            f"{', ...' if len(left) > 5 else ''}); each failure is in the audit log as failed"
        )


# -- receipts -----------------------------------------------------------------------------------------


def _about(receipt: SignedReceipt) -> tuple[str, str, str]:
    """(what it is about, customer, records destroyed) from the signed statement: ids and counts."""
    content = receipt.content
    destroyed = content.get("destroyed", {})
    records = destroyed.get("records") if isinstance(destroyed, dict) else None
    count = f"{records:,}" if isinstance(records, int) else "-"
    if receipt.kind == "erasure_receipt":
        return f"request {content.get('request_id', '?')}", str(content.get("customer_id", "-")), count
    return f"sweep {content.get('sweep_id', '?')}", "-", count


def _receipt_subjects(receipt: SignedReceipt) -> tuple[str, ...]:
    content = receipt.content
    if receipt.kind != "erasure_receipt":
        return ()
    return tuple(str(content[k]) for k in ("customer_id", "request_id") if content.get(k))


@click.group()
def receipts() -> None:
    """Signed erasure receipts and destruction certificates: list, export, verify offline.

    `receipts verify` exits 0 when the receipt is valid and 1 when it is not."""


@receipts.command("list")
@click.option("--kind", type=click.Choice(RECEIPT_KINDS), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_JSON
@click.pass_obj
def receipts_list(state: _State, kind: str | None, limit: int, as_json: bool) -> None:
    """Receipts and certificates, newest first (ids and counts; never anyone's data)."""
    from cdp.dsr.receipts import Receipts

    with opened(state) as platform, audited(platform, "dsr.receipt"):
        with platform.db.read() as session:
            found = Receipts(session, platform.vault).list(kind=kind, limit=limit)
        record_read(platform, "dsr.receipt", receipts=len(found), kind=kind)
    if as_json:
        emit_json([receipt.to_dict() for receipt in found])
        return
    if not found:
        say("no receipts yet")
        return
    table = Table(title=f"receipts and certificates ({len(found)}, newest first)")
    for column in ("receipt", "kind", "issued", "about", "customer", "records destroyed", "key"):
        table.add_column(column, justify="right" if column == "records destroyed" else "left")
    for receipt in found:
        about, customer, count = _about(receipt)
        table.add_row(
            cell(receipt.id), receipt.kind, when(receipt.issued_at), cell(about), cell(customer), count,
            cell(receipt.key_id),
        )  # fmt: skip
    show_table(table)


@receipts.command("show")
@click.argument("receipt")
@_JSON
@click.pass_obj
def receipts_show(state: _State, receipt: str, as_json: bool) -> None:
    """One receipt. With --json: the signed receipt as exported, for `cdp receipts verify` or anyone
    holding the published key (`cdp audit public-key`)."""
    from cdp.dsr.receipts import Receipts

    receipt_id = parse_id(receipt, "RECEIPT")
    with opened(state) as platform, audited(platform, "dsr.receipt", (str(receipt_id),)):
        with platform.db.read() as session:
            found = Receipts(session, platform.vault).get(receipt_id)
        record_read(
            platform,
            "dsr.receipt",
            subjects=_receipt_subjects(found),
            receipt_id=str(found.id),
            kind=found.kind,
        )
    if as_json:
        emit_json(found.to_dict())
        return
    about, customer, count = _about(found)
    rows: list[tuple[str, object]] = [
        ("receipt", found.id),
        ("kind", found.kind),
        ("issued", found.issued_at.isoformat()),
        ("about", about),
        ("customer", customer),
        ("records destroyed", count),
        ("key id", found.key_id),
        ("public key", found.public_key),
        ("signature", "valid under the stored key" if found.verify() else "INVALID"),
    ]
    show_table(key_value_table(f"{found.kind} {found.id}", rows))
    say("signed statement:")
    say(json.dumps(found.content, indent=2, ensure_ascii=False))


class ReceiptInvalid(Exception):
    """The file is not a receipt, or not the one its signature covers; the message says which part."""


@dataclass(frozen=True)
class ReceiptCheck:
    receipt: SignedReceipt
    pinned: bool


def check_receipt(data: Any, public_key: str | None = None) -> ReceiptCheck:
    """Verify an exported receipt with nothing but its text and, ideally, the published public key.

    The signature covers the statement only, so the envelope's id, kind, time and key id must agree with
    it (and the key id with the key), or a receipt could be passed off under another id. Without
    ``public_key`` the key in the file is used: that proves the file is intact, not who signed it."""
    from cdp.dsr.receipts import SignedReceipt
    from cdp.vault.audit_keys import key_id_of

    if not isinstance(data, dict):
        raise ReceiptInvalid("not a cdp receipt (expected a JSON object)")
    try:
        receipt = SignedReceipt.from_dict(data)
    except ValueError as exc:
        raise ReceiptInvalid(str(exc)) from None
    if data.get("algorithm", "Ed25519") != "Ed25519":
        raise ReceiptInvalid("unsupported signature algorithm (expected Ed25519)")
    mismatched = receipt.envelope_mismatches()
    if mismatched == ["statement"]:
        raise ReceiptInvalid("the signed statement is not a JSON object")
    if mismatched:
        raise ReceiptInvalid(f"the receipt's {', '.join(mismatched)} do(es) not match its signed statement")
    try:
        own_key_id = key_id_of(receipt.public_key)
    except ValueError:
        raise ReceiptInvalid("the public key in the file is not hex") from None
    if own_key_id != receipt.key_id:
        raise ReceiptInvalid("the key id in the file does not belong to the public key in the file")
    if public_key is not None and public_key != receipt.public_key:
        raise ReceiptInvalid(
            f"the receipt names key {receipt.key_id}, not the pinned key {key_id_of(public_key)} "
            "(`cdp audit public-key` lists every key ever used)"
        )
    if not receipt.verify(public_key):
        raise ReceiptInvalid(f"the signature does not verify under key {receipt.key_id}")
    return ReceiptCheck(receipt, pinned=public_key is not None)


def _pinned_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip().lower()
    try:
        valid = len(bytes.fromhex(key)) == 32
    except ValueError:
        valid = False
    if not valid:
        raise click.BadParameter("a public key is 64 hex digits (see `cdp audit public-key`)")
    return key


@receipts.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    default=None,
    metavar="HEX",
    help="The published Ed25519 key (64 hex digits) to trust, obtained out of band.",
)
@click.pass_context
def receipts_verify(ctx: click.Context, file: Path, public_key: str | None) -> None:
    """Check an exported receipt offline: no database, no keys but the public one. Exit status 0 valid,
    1 invalid (the message says what does not hold)."""
    pinned = _pinned_key(public_key)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CdpError(f"cannot read {file}: {reason}") from None
    try:
        data = json.loads(text)
    except ValueError:
        say(f"FAILED: {file} is not JSON (export a receipt with `cdp receipts show ID --json`)")
        ctx.exit(1)
    try:
        check = check_receipt(data, pinned)
    except ReceiptInvalid as exc:
        say(f"FAILED: {exc}")
        ctx.exit(1)
    receipt = check.receipt
    about, _, count = _about(receipt)
    trust = "the pinned key" if check.pinned else "the key given in the file (NOT independently trusted)"
    say(
        f"OK: {receipt.kind} {receipt.id} issued {receipt.issued_at.isoformat()} ({about}, "
        f"{count} records destroyed) is signed by {trust}, key id {receipt.key_id}"
    )
    if not check.pinned:
        warn(
            "warning: checked against the key in the file only, which proves the file is intact, not who "
            "signed it; pin the key with --public-key for a real check (`cdp audit public-key`)"
        )


# -- department queues --------------------------------------------------------------------------------


@click.group()
def work() -> None:
    """Department queues: data-subject requests and complaints, routed by rules (cdp/dsr/routing.toml)
    with an SLA each, escalated when overdue."""


def _work_rows(table: Table, items: Sequence[WorkItemView]) -> None:
    for item in items:
        table.add_row(
            cell(item.id),
            item.kind,
            cell(item.ref_id),
            item.queue,
            item.rule,
            item.status,
            cell(item.assignee or "-"),
            when(item.due_at),
            "OVERDUE" if item.overdue else "",
            str(item.escalation_level),
        )


def _work_table(title: str) -> Table:
    table = Table(title=title)
    for column in (
        "item", "kind", "about", "queue", "rule", "status", "assignee", "due", "overdue", "level",
    ):  # fmt: skip
        table.add_column(column)
    return table


@work.command("list")
@click.option("--queue", default=None, help="Only this queue (see cdp/dsr/routing.toml).")
@click.option("--overdue", is_flag=True, help="Only open items past their due time.")
@click.option("--all", "include_closed", is_flag=True, help="Closed items too.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_JSON
@click.pass_obj
def work_list(
    state: _State, queue: str | None, overdue: bool, include_closed: bool, limit: int, as_json: bool
) -> None:
    """Work items, the earliest due first: what each is about (a request or complaint id), its queue,
    assignee, due time and escalation level."""
    from cdp.dsr.routing import OPEN, RoutingRules, WorkQueue

    rules = RoutingRules.load()
    if queue is not None and queue not in rules.queues:
        warn(f"note: the routing rules have no queue {queue!r}; known: {', '.join(rules.queues)}")
    with opened(state) as platform, audited(platform, "work.read"):
        with platform.db.read() as session:
            items = WorkQueue(session, rules).items(
                queue=queue, status=None if include_closed else OPEN, overdue_only=overdue, limit=limit
            )
        record_read(platform, "work.read", items=len(items), queue=queue)
    if as_json:
        emit_json([item.to_dict() for item in items])
        return
    if not items:
        say("no work items match")
        return
    table = _work_table(f"work items ({len(items)}, earliest due first)")
    _work_rows(table, items)
    show_table(table)


@work.command("assign")
@click.argument("item")
@click.option("--to", "assignee", required=True, metavar="PRINCIPAL", help="A staff principal id, user:<id>.")
@click.pass_obj
def work_assign(state: _State, item: str, assignee: str) -> None:
    """Give an open work item to a staff member, named by principal id (never a name or email)."""
    from cdp.dsr.routing import RoutingRules, WorkQueue

    item_id = parse_id(item, "ITEM")
    with (
        opened(state) as platform,
        audited(platform, "work.assign", (f"work_item:{item_id}",)),
        platform.db.transaction() as session,
    ):
        queue = WorkQueue(session, RoutingRules.load())
        previous = queue.get(item_id).assignee
        view = queue.assign(item_id, assignee)
    if previous == view.assignee:
        say(f"work item {view.id} is already assigned to {view.assignee}")
    else:
        say(f"assigned work item {view.id} ({view.kind} in {view.queue}) to {view.assignee}")


@work.command("close")
@click.argument("item")
@click.pass_obj
def work_close(state: _State, item: str) -> None:
    """Close an open work item (the complaint was resolved). A request's item closes by itself when the
    request is completed or rejected."""
    from cdp.dsr.routing import RoutingRules, WorkQueue

    item_id = parse_id(item, "ITEM")
    with (
        opened(state) as platform,
        audited(platform, "work.close", (f"work_item:{item_id}",)),
        platform.db.transaction() as session,
    ):
        view = WorkQueue(session, RoutingRules.load()).close(item_id)
    late = " (closed after its due time)" if view.closed_at and view.closed_at > view.due_at else ""
    say(f"closed work item {view.id} ({view.kind} in {view.queue}){late}")
    if view.kind != "complaint":
        warn(f"note: the request itself is unchanged; see `cdp dsr show {view.ref_id}`")


@work.command("route-complaints")
@click.option(
    "--since-days",
    type=click.IntRange(1, 36_500),
    default=30,
    show_default=True,
    help="Only complaints from the last N days: a first run over years of history should not open (and "
    "at once escalate) every old complaint.",
)
@click.pass_obj
def work_route_complaints(state: _State, since_days: int) -> None:
    """Route complaints that have no work item yet to their department's queue (a running server does
    this at each housekeeping tick)."""
    from cdp.db.types import utcnow
    from cdp.dsr.routing import RoutingRules, WorkQueue

    rules = RoutingRules.load()
    since = utcnow() - timedelta(days=since_days)
    routed = 0
    with opened(state) as platform, audited(platform, "work.route"):
        while True:
            with platform.db.transaction() as session:
                batch = WorkQueue(session, rules).route_new_complaints(since=since, limit=ROUTING_BATCH)
            routed += batch
            if batch < ROUTING_BATCH:
                break
    say(f"routed {routed:,} complaint(s) from the last {since_days} days (routing rules v{rules.version})")


@work.command("escalate")
@click.pass_obj
def work_escalate(state: _State) -> None:
    """Escalate every open item past its next escalation step (a running server does this at each
    housekeeping tick); each level fires once."""
    from cdp.dsr.routing import RoutingRules, WorkQueue

    rules = RoutingRules.load()
    escalated: list[WorkItemView] = []
    with opened(state) as platform, audited(platform, "work.escalate"):
        while True:
            with platform.db.transaction() as session:
                batch = WorkQueue(session, rules).escalate_overdue(limit=ROUTING_BATCH)
            escalated += batch
            if len(batch) < ROUTING_BATCH:
                break
    if not escalated:
        say("nothing to escalate")
        return
    table = _work_table(f"escalated work items ({len(escalated)})")
    _work_rows(table, escalated)
    show_table(table)
