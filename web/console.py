"""The compliance console: compliance officers and the DPO audit access, verify the audit chain and
follow requests, retention, legal holds and keys.

Every page calls the JSON API as the signed-in person (:func:`web.auth.api`), so the API's scope checks
and audit entries apply unchanged, and looking at the audit log from here is itself audited. One console
serves several roles: a compliance officer's token carries ``audit:read`` but not ``dsr:manage`` or
``retention:manage``, so each page (and each section of a page) checks the scope it needs first and says
plainly what is missing rather than showing the API's refusal.

The audit search is a GET form (shareable, back-button friendly): its filters are pseudonymous ids,
action names and dates, never personal data, and the subject and actor fields only accept the shape of
an id (an email address cannot be typed into a URL through them). Everything that changes something
(verifying the chain, acting on a request, placing or releasing a hold) is a CSRF-checked POST
answered with a redirect (Post/Redirect/Get).
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Response, redirect, request
from flask.typing import ResponseReturnValue

from cdp.audit import ACTIONS, Outcome
from cdp.dsr.service import OPEN_STATUSES, REJECTION_REASONS
from web.apps import CONSOLE
from web.auth import api, current_web_session, notify, scopes, signed_in, stash, take_notices, web_blueprint
from web.gateway import ApiResult
from web.pages import render

blueprint = web_blueprint(CONSOLE)

NAV = [
    ("/console/", "Overview"),
    ("/console/audit", "Audit log"),
    ("/console/access", "Access report"),
    ("/console/requests", "Requests"),
    ("/console/retention", "Retention"),
    ("/console/keys", "Keys"),
]
SCOPE_HOLDERS = {
    "audit:read": "compliance officers, the DPO and administrators",
    "dsr:manage": "the data protection officer",
    "retention:manage": "the data protection officer",
}
DSR_STATUSES = ("received", "verifying", "awaiting_approval", "in_progress", "completed", "rejected")
PERIODS = {"7": "Last 7 days", "30": "Last 30 days", "90": "Last 90 days", "365": "Last 12 months"}
PAGE_SIZE = 50
VERIFICATION_KEY = "console_verification"
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_ACTOR = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_CURSOR = re.compile(r"^[A-Za-z0-9_=-]{1,200}$")


# -- page helpers -------------------------------------------------------------------------------------


def _who() -> str:
    web_session = current_web_session()
    roles = web_session.state.get("roles", []) if web_session is not None else []
    return ", ".join(str(role).replace("_", " ") for role in roles)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return render(
        CONSOLE,
        template,
        status,
        nav_links=NAV,
        current_path=request.path,
        notices=take_notices(),
        who=_who(),
        **context,
    )


def missing(scope: str) -> str | None:
    """Why the signed-in person may not use a part of the console, or None when they may: the
    permission it needs, who holds it and that their role does not."""
    if scope in scopes():
        return None
    role = _who() or "your role"
    holders = SCOPE_HOLDERS.get(scope, "other roles")
    return (
        f"Not available to your role: this needs the “{scope}” permission, held by {holders}. "
        f"Your sign-in ({role}) does not include it."
    )


def problem_of(result: ApiResult) -> str:
    """The API's refusal as a sentence, with the names of the fields it found invalid (the messages
    are marshmallow's fixed texts; values are never echoed)."""
    sentence = result.problem
    body = result.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict):
        parts = []
        for location in errors.values():
            if isinstance(location, dict):
                for name, messages in location.items():
                    text = " ".join(messages) if isinstance(messages, list) else str(messages)
                    parts.append(f"{name}: {text}" if name != "_schema" else text)
        if parts:
            sentence = f"{sentence} ({'; '.join(parts)})"
    return sentence


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _midnight(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the chain's verdict ------------------------------------------------------------------------------


def chain_verdict(status: dict[str, Any] | None, full: dict[str, Any] | None) -> dict[str, Any]:
    """One word for the audit chain, and the checks behind it.

    ``status`` is ``GET /v1/audit/status``: the head entry re-hashed and the latest checkpoint's
    signature and head checked (cheap, so every overview does it). ``full`` is the last full
    verification this session ran (every entry re-hashed, every checkpoint checked). Any failed check
    makes the chain *broken*; with nothing sealed yet there is nothing to verify."""
    checks: list[dict[str, Any]] = []
    if status is not None:
        intact = status.get("head_intact")
        checks.append(
            {
                "label": "Head entry re-hashes to its stored hash",
                "ok": intact,
                "detail": f"entry {status.get('head_seq', 0):,}"
                if intact is not None
                else "nothing sealed yet",
            }
        )
        checkpoint = status.get("latest_checkpoint")
        if checkpoint:
            checks.append(
                {
                    "label": "Latest checkpoint's signature verifies",
                    "ok": bool(checkpoint.get("signature_valid")),
                    "detail": f"key {checkpoint.get('key_id')}",
                }
            )
            checks.append(
                {
                    "label": "Latest checkpoint matches the chain",
                    "ok": bool(checkpoint.get("matches_chain")),
                    "detail": f"first {checkpoint.get('seq', 0):,} entries",
                }
            )
        else:
            checks.append({"label": "Signed checkpoint", "ok": None, "detail": "none signed yet"})
    if full is not None:
        checks.append(
            {
                "label": "Full verification (every entry and checkpoint)",
                "ok": bool(full.get("ok")),
                "detail": (
                    f"{full.get('entries_verified', 0):,} entries, {full.get('checkpoints_verified', 0):,} "
                    f"checkpoints, at {str(full.get('at', ''))[:16].replace('T', ' ')} UTC"
                    if full.get("ok")
                    else str(full.get("first_problem") or "a problem was found")
                ),
            }
        )
    if any(check["ok"] is False for check in checks):
        state = "broken"
    elif any(check["ok"] is True for check in checks):
        state = "verified"
    else:
        state = "unverifiable"
    return {"state": state, "checks": checks, "status": status, "full": full}


def _full_verification() -> dict[str, Any] | None:
    web_session = current_web_session()
    found = web_session.state.get(VERIFICATION_KEY) if web_session is not None else None
    return found if isinstance(found, dict) else None


def _chain() -> tuple[dict[str, Any] | None, str | None]:
    """The chain's verdict for the signed-in auditor, or why it cannot be shown."""
    status = api(CONSOLE, "GET", "/v1/audit/status")
    if not status.ok:
        return None, problem_of(status)
    return chain_verdict(status.body, _full_verification()), None


# -- overview -----------------------------------------------------------------------------------------


@blueprint.get("/")
def index() -> ResponseReturnValue:
    web_session = current_web_session()
    if web_session is None or web_session.pending:
        return render(CONSOLE, "web/landing.html")
    return _overview()


def _request_counts() -> dict[str, Any]:
    found = api(CONSOLE, "GET", "/v1/dsr/requests", query={"limit": 200})
    if not found.ok:
        return {"error": problem_of(found)}
    items = found.body or []
    open_items = [item for item in items if item.get("status") in OPEN_STATUSES]
    return {
        "open": len(open_items),
        "overdue": sum(1 for item in open_items if item.get("overdue")),
        "awaiting_approval": sum(1 for item in open_items if item.get("status") == "awaiting_approval"),
        "truncated": len(items) >= 200,
    }


@signed_in(CONSOLE)
def _overview() -> ResponseReturnValue:
    audit_missing = missing("audit:read")
    chain = chain_error = keys = keys_error = None
    if audit_missing is None:
        chain, chain_error = _chain()
        found = api(CONSOLE, "GET", "/v1/keys/status")
        keys, keys_error = (found.body, None) if found.ok else (None, problem_of(found))
    dsr_missing = missing("dsr:manage")
    requests = _request_counts() if dsr_missing is None else None
    return _page(
        "web/console/overview.html",
        audit_missing=audit_missing,
        chain=chain,
        chain_error=chain_error,
        keys=keys,
        keys_error=keys_error,
        dsr_missing=dsr_missing,
        requests=requests,
    )


# -- the audit log ------------------------------------------------------------------------------------


def audit_filters(args: dict[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The search form's values as the page shows them, as the API takes them, and what is wrong with
    them. A value that is not an id's shape is neither sent nor shown again: it may be personal data
    typed into the wrong box."""
    shown: dict[str, str] = {}
    query: dict[str, str] = {}
    errors: list[str] = []
    for name, pattern in (("subject", _ID), ("actor", _ACTOR)):
        value = args.get(name, "").strip()
        if not value:
            continue
        if pattern.match(value):
            shown[name] = query[name] = value
        else:
            errors.append(
                f"The {name} must be an id (letters, digits and . _ : -), such as a customer id; "
                "search by name or email address in the department view instead."
            )
    action = args.get("action", "")
    if action in ACTIONS:
        shown["action"] = query["action"] = action
    outcome = args.get("outcome", "")
    if outcome in {o.value for o in Outcome}:
        shown["outcome"] = query["outcome"] = outcome
    since, until = _day(args.get("since", "")), _day(args.get("until", ""))
    if (args.get("since") and since is None) or (args.get("until") and until is None):
        errors.append("Dates must be given as year-month-day.")
    if since is not None:
        shown["since"] = since.isoformat()
        query["since"] = _midnight(since)
    if until is not None:
        shown["until"] = until.isoformat()
        query["until"] = _midnight(until + timedelta(days=1))
    if since is not None and until is not None and since > until:
        errors.append("The first day must not be after the last day.")
    return shown, query, errors


def _entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    details = entry.get("details") or {}
    return {
        **entry,
        "details_text": ", ".join(f"{key}: {value}" for key, value in sorted(details.items())),
    }


def _checkpoint_page(after: int) -> tuple[dict[str, Any] | None, str | None]:
    found = api(CONSOLE, "GET", "/v1/audit/checkpoints", query={"after": after, "limit": 20})
    return (found.body, None) if found.ok else (None, problem_of(found))


@blueprint.get("/audit")
@signed_in(CONSOLE)
def audit() -> ResponseReturnValue:
    audit_missing = missing("audit:read")
    if audit_missing is not None:
        return _page("web/console/audit.html", audit_missing=audit_missing)
    shown, query, errors = audit_filters(request.args.to_dict())
    cursor = request.args.get("cursor", "")
    page: dict[str, Any] | None = None
    if not errors:
        found = api(
            CONSOLE,
            "GET",
            "/v1/audit/entries",
            query={**query, "limit": PAGE_SIZE, "cursor": cursor if _CURSOR.match(cursor) else None},
        )
        if found.ok:
            page = {
                "items": [_entry_row(entry) for entry in found.body.get("items", [])],
                "next": (
                    "/console/audit?" + urlencode({**shown, "cursor": found.body["next_cursor"]})
                    if found.body.get("next_cursor")
                    else None
                ),
            }
        else:
            errors.append(problem_of(found))
    chain, chain_error = _chain()
    after = request.args.get("after", "0")
    checkpoints, checkpoints_error = _checkpoint_page(int(after) if after.isdigit() else 0)
    return _page(
        "web/console/audit.html",
        filters=shown,
        errors=errors,
        page=page,
        continued=bool(cursor),
        first_page="/console/audit?" + urlencode(shown),
        actions=sorted(ACTIONS),
        outcomes=[o.value for o in Outcome],
        chain=chain,
        chain_error=chain_error,
        checkpoints=checkpoints,
        checkpoints_error=checkpoints_error,
    )


@blueprint.post("/audit/verify")
@signed_in(CONSOLE)
def verify_chain() -> ResponseReturnValue:
    """Run the full verification (every entry re-hashed, every checkpoint's signature checked) and keep
    its result in the session, so the overview shows when the chain was last verified and by whom."""
    back = "/console/" if request.form.get("back") == "overview" else "/console/audit"
    lacking = missing("audit:read")
    if lacking is not None:
        notify(lacking, "error")
        return redirect(back, 303)
    found = api(CONSOLE, "GET", "/v1/audit/status", query={"verify": "true"})
    verification = found.body.get("verification") if found.ok and isinstance(found.body, dict) else None
    if not isinstance(verification, dict):
        notify(f"The chain could not be verified: {problem_of(found)}", "error")
        return redirect(back, 303)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stash(VERIFICATION_KEY, {**verification, "at": at})
    if verification.get("ok"):
        notify(
            f"Chain verified: {verification.get('entries_verified', 0):,} entries re-hashed and "
            f"{verification.get('checkpoints_verified', 0):,} signed checkpoints checked; "
            "nothing was altered.",
            "ok",
        )
    else:
        notify(
            f"The chain is broken: {verification.get('first_problem') or 'an entry does not verify'}. "
            "Export the log and report it.",
            "error",
        )
    return redirect(back, 303)


# -- the access report --------------------------------------------------------------------------------


def report_range(args: dict[str, str]) -> tuple[dict[str, str], dict[str, str], str | None]:
    """The period the form chose: one of :data:`PERIODS`, or from and to days (inclusive)."""
    period = args.get("period", "30")
    if period == "custom":
        since, until = _day(args.get("since", "")), _day(args.get("until", ""))
        if since is None or until is None:
            return {"period": "custom"}, {}, "Give both the first and the last day (year-month-day)."
        if since > until:
            return {"period": "custom"}, {}, "The first day must not be after the last day."
        shown = {"period": "custom", "since": since.isoformat(), "until": until.isoformat()}
        return shown, {"since": _midnight(since), "until": _midnight(until + timedelta(days=1))}, None
    if period not in PERIODS:
        period = "30"
    now = datetime.now(UTC)
    since_at = now - timedelta(days=int(period))
    return {"period": period}, {"since": since_at.strftime("%Y-%m-%dT%H:%M:%SZ")}, None


def by_department(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's rows as one table per department: per role, purpose and action, how many reads were
    allowed and how many attempts refused."""
    tables: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        department = row.get("department") or ""
        key = (row.get("role") or "", row.get("purpose") or "", row.get("action") or "")
        cell = tables[department].setdefault(
            key, {"role": key[0], "purpose": key[1], "action": key[2], "allowed": 0, "refused": 0}
        )
        cell["allowed" if row.get("outcome") == "success" else "refused"] += int(row.get("count") or 0)
    out = []
    for department in sorted(tables, key=lambda name: (name == "", name)):
        cells = sorted(tables[department].values(), key=lambda c: -(c["allowed"] + c["refused"]))
        out.append(
            {
                "department": department,
                "rows": cells,
                "allowed": sum(c["allowed"] for c in cells),
                "refused": sum(c["refused"] for c in cells),
            }
        )
    return out


@blueprint.get("/access")
@signed_in(CONSOLE)
def access() -> ResponseReturnValue:
    audit_missing = missing("audit:read")
    if audit_missing is not None:
        return _page("web/console/access.html", audit_missing=audit_missing)
    shown, query, error = report_range(request.args.to_dict())
    report = None
    if error is None:
        found = api(CONSOLE, "GET", "/v1/audit/reports/access", query=query)
        if found.ok:
            report = {**found.body, "departments": by_department(found.body.get("rows", []))}
        else:
            error = problem_of(found)
    return _page("web/console/access.html", chosen=shown, periods=PERIODS, report=report, error=error)


# -- data-subject requests ----------------------------------------------------------------------------


@blueprint.get("/requests")
@signed_in(CONSOLE)
def requests_page() -> ResponseReturnValue:
    dsr_missing = missing("dsr:manage")
    if dsr_missing is not None:
        return _page("web/console/requests.html", dsr_missing=dsr_missing)
    status = request.args.get("status", "")
    query: dict[str, Any] = {"limit": 200}
    if status == "overdue":
        query["overdue"] = "true"
    elif status in DSR_STATUSES:
        query["status"] = status
    else:
        status = ""
    found = api(CONSOLE, "GET", "/v1/dsr/requests", query=query)
    return _page(
        "web/console/requests.html",
        found.status if not found.ok else 200,
        items=found.body if found.ok else [],
        error=None if found.ok else problem_of(found),
        chosen=status,
        statuses=DSR_STATUSES,
        reasons=REJECTION_REASONS,
        open_statuses=OPEN_STATUSES,
    )


def _back_to_requests() -> ResponseReturnValue:
    status = request.form.get("status", "")
    if status == "overdue" or status in DSR_STATUSES:
        return redirect(f"/console/requests?status={status}", 303)
    return redirect("/console/requests", 303)


@blueprint.post("/requests/<request_id>/<action>")
@signed_in(CONSOLE)
def act_on_request(request_id: str, action: str) -> ResponseReturnValue:
    """Verify, approve, reject or carry out a request, as the API allows the DPO to."""
    lacking = missing("dsr:manage")
    if lacking is not None:
        notify(lacking, "error")
        return _back_to_requests()
    wanted = _uuid(request_id)
    if wanted is None or action not in ("verify", "approve", "reject", "process"):
        notify("There is no such request or action.", "error")
        return _back_to_requests()
    body: dict[str, Any] | None = None
    if action == "reject":
        reason = request.form.get("reason", "")
        if reason not in REJECTION_REASONS:
            notify("Choose the reason for rejecting the request.", "error")
            return _back_to_requests()
        body = {"reason": reason, "detail": request.form.get("detail", "").strip()[:300]}
    elif action == "verify":
        body = {"code": request.form.get("code", "").strip()[:32]}
    done = api(CONSOLE, "POST", f"/v1/dsr/requests/{wanted}/{action}", json_body=body)
    if not done.ok:
        notify(problem_of(done), "error")
        return _back_to_requests()
    result = done.body or {}
    if action == "approve":
        notify("Request approved. Carry it out with “Process” when you are ready.", "ok")
    elif action == "reject":
        notify("Request rejected; the customer is told the reason.", "ok")
    elif action == "verify":
        notify("The requester is verified.", "ok")
    elif result.get("receipt"):
        notify(
            f"Erasure carried out; signed receipt {result['receipt'].get('id')} issued (see Retention).", "ok"
        )
    else:
        notify(
            f"Request processed: it is now {str(result.get('status', 'updated')).replace('_', ' ')}.", "ok"
        )
    return _back_to_requests()


# -- retention, receipts and legal holds --------------------------------------------------------------


def _summary(counts: Any) -> str:
    """A sweep's nested counts in one line: ``records: 12, interactions: 40``."""
    if not isinstance(counts, dict):
        return str(counts)
    parts = []
    for key, value in sorted(counts.items()):
        if isinstance(value, dict):
            value = _summary(value) or "none"
            parts.append(f"{key} ({value})")
        else:
            parts.append(f"{key}: {value}")
    return ", ".join(parts)


@blueprint.get("/retention")
@signed_in(CONSOLE)
def retention() -> ResponseReturnValue:
    retention_missing = missing("retention:manage")
    audit_missing = missing("audit:read")
    show_all = request.args.get("holds") == "all"
    context: dict[str, Any] = {
        "retention_missing": retention_missing,
        "audit_missing": audit_missing,
        "show_all": show_all,
    }
    if retention_missing is None:
        policy = api(CONSOLE, "GET", "/v1/retention/policy")
        sweeps = api(CONSOLE, "GET", "/v1/retention/sweeps", query={"limit": 20})
        holds = api(CONSOLE, "GET", "/v1/retention/holds", query={"active": "false" if show_all else "true"})
        context.update(
            policy=policy.body if policy.ok else None,
            policy_error=None if policy.ok else problem_of(policy),
            sweeps=[{**s, "summary": _summary(s.get("counts"))} for s in sweeps.body] if sweeps.ok else [],
            sweeps_error=None if sweeps.ok else problem_of(sweeps),
            holds=holds.body if holds.ok else [],
            holds_error=None if holds.ok else problem_of(holds),
        )
    if audit_missing is None:
        receipts = api(CONSOLE, "GET", "/v1/receipts", query={"limit": 50})
        context.update(
            receipts=receipts.body if receipts.ok else [],
            receipts_error=None if receipts.ok else problem_of(receipts),
        )
    return _page("web/console/retention.html", **context)


@blueprint.post("/retention/holds")
@signed_in(CONSOLE)
def place_hold() -> ResponseReturnValue:
    lacking = missing("retention:manage")
    if lacking is not None:
        notify(lacking, "error")
        return redirect("/console/retention", 303)
    customer_id = _uuid(request.form.get("customer_id", "").strip())
    if customer_id is None:
        notify("Give the customer id (a UUID, as shown in the department view or a request).", "error")
        return redirect("/console/retention", 303)
    placed = api(
        CONSOLE,
        "POST",
        "/v1/retention/holds",
        json_body={"customer_id": customer_id, "reason": request.form.get("reason", "")},
    )
    if placed.ok:
        count = len(placed.body or [])
        notify(f"Legal hold placed on {count} record{'s' if count != 1 else ''} of the customer.", "ok")
    else:
        notify(problem_of(placed), "error")
    return redirect("/console/retention", 303)


@blueprint.post("/retention/holds/<hold_id>/release")
@signed_in(CONSOLE)
def release_hold(hold_id: str) -> ResponseReturnValue:
    lacking = missing("retention:manage")
    if lacking is not None:
        notify(lacking, "error")
        return redirect("/console/retention", 303)
    wanted = _uuid(hold_id)
    if wanted is None:
        notify("There is no such legal hold.", "error")
        return redirect("/console/retention", 303)
    released = api(
        CONSOLE,
        "POST",
        f"/v1/retention/holds/{wanted}/release",
        json_body={"reason": request.form.get("reason", "")},
    )
    if released.ok:
        notify("Legal hold released: its records follow the retention policy and erasures again.", "ok")
    else:
        notify(problem_of(released), "error")
    return redirect("/console/retention", 303)


# -- keys ---------------------------------------------------------------------------------------------


@blueprint.get("/keys")
@signed_in(CONSOLE)
def keys() -> ResponseReturnValue:
    audit_missing = missing("audit:read")
    if audit_missing is not None:
        return _page("web/console/keys.html", audit_missing=audit_missing)
    found = api(CONSOLE, "GET", "/v1/keys/status")
    return _page(
        "web/console/keys.html",
        keys=found.body if found.ok else None,
        error=None if found.ok else problem_of(found),
    )
