"""The department view: staff find a customer and see what their role may see of them.

Support agents, department agents, marketing analysts (and compliance staff) search by an exact email,
phone number or name, choose *why* they open a customer (a purpose their role may use), and read the
360° golden profile — with where each value came from, which fields are masked and which are left out,
and why — the contact history across channels, and, with ``identity:read``, how the customer's records
were resolved, drawn as a graph. Data stewards (``identity:manage``, no profile access) work the review
queue and merge or split records; their cluster page shows record ids, source systems and weights only.

Every read is a call to the JSON API as the signed-in person (:mod:`web.gateway`), so the access gate,
consent and the audit log apply exactly as for any client. Searches are POSTs whose results are rendered
in the response: what was searched for never appears in a URL, a redirect or a log line.
"""

from __future__ import annotations

import re
import uuid
from functools import lru_cache
from typing import Any

from flask import Response, redirect, request
from flask.typing import ResponseReturnValue

from cdp.access.policy import PROFILE_FIELDS, FieldPolicy, Mode
from web.apps import STAFF
from web.auth import api, current_web_session, notify, scopes, signed_in, take_notices, web_blueprint
from web.gateway import ApiResult
from web.graph import GraphEdge, GraphNode, cluster_svg
from web.pages import render
from web.privacy import FIELD_LABELS

blueprint = web_blueprint(STAFF)

LABELS: dict[str, str] = {
    **FIELD_LABELS,
    "address_line2": "Address (line 2)",
    "attributes": "Extra attributes",
    "interactions": "Contact history",
    "interaction_content": "What was said in contacts",
}
REASONS = {
    "role_policy": "your role's access policy",
    "purpose": "not needed for this purpose",
    "consent": "the customer has not consented to this purpose",
}
SEARCH_FIELDS = ("email", "phone", "region", "first_name", "last_name")
TIMELINE_PAGE = 25
REVIEW_PAGE = 20
_PURPOSE = re.compile(r"^[a-z][a-z_]{0,39}$")


@lru_cache(maxsize=1)
def _policy() -> FieldPolicy:
    return FieldPolicy.default()


def _role() -> str | None:
    web_session = current_web_session()
    roles = list(web_session.state.get("roles", ())) if web_session is not None else []
    return str(roles[0]) if len(roles) == 1 else None


def _who() -> str:
    web_session = current_web_session()
    role = (_role() or "staff").replace("_", " ")
    department = web_session.state.get("department") if web_session is not None else None
    return f"{role} · {department}" if department else role


def _purposes() -> list[dict[str, str]]:
    """The purposes the signed-in role may read for, in the policy's order, with what each is for."""
    policy = _policy()
    role = policy.role(_role() or "")
    if role is None or "profiles:read" not in scopes():
        return []
    return [
        {"name": name, "label": name.replace("_", " "), "description": purpose.description}
        for name, purpose in policy.purposes.items()
        if name in role.purposes
    ]


def _role_summary() -> dict[str, list[str]]:
    """What the role sees of a profile, by mode (before purpose and consent narrow it further)."""
    role = _policy().role(_role() or "")
    summary: dict[str, list[str]] = {"clear": [], "masked": [], "denied": []}
    for name in PROFILE_FIELDS:
        mode = role.mode(name) if role is not None else Mode.DENIED
        summary[mode.value].append(LABELS.get(name, name))
    return summary


def _nav() -> list[tuple[str, str]]:
    links = [("/staff/", "Find a customer" if "profiles:read" in scopes() else "Start")]
    if "identity:read" in scopes():
        links.append(("/staff/review", "Review queue"))
    return links


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return render(
        STAFF,
        template,
        status,
        nav_links=_nav(),
        current_path=request.path,
        notices=take_notices(),
        who=_who(),
        labels=LABELS,
        granted=scopes(),
        **context,
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _safe_purpose(value: str | None) -> str:
    return value if value and _PURPOSE.match(value) else ""


def _with_purpose(path: str, purpose: str) -> str:
    purpose = _safe_purpose(purpose)
    return f"{path}?purpose={purpose}" if purpose else path


def _problem_text(result: ApiResult) -> str:
    """The API's refusal as a sentence: validation messages by field (they name fields, never values)."""
    body = result.body
    if result.status == 422 and isinstance(body, dict) and isinstance(body.get("errors"), dict):
        messages: list[str] = []
        for fields in body["errors"].values():
            if not isinstance(fields, dict):
                continue
            for name, problems in fields.items():
                texts = problems if isinstance(problems, list) else [problems]
                label = "" if name == "_schema" else f"{LABELS.get(name, name.replace('_', ' '))}: "
                messages.extend(f"{label}{text}" for text in texts if isinstance(text, str))
        if messages:
            return " ".join(messages)
    if result.status == 404:
        return "No such customer, or none you may see."
    return result.problem


# -- front page and search ----------------------------------------------------------------------------


@blueprint.get("/")
def index() -> ResponseReturnValue:
    web_session = current_web_session()
    if web_session is None or web_session.pending:
        return render(STAFF, "web/landing.html")
    return _home()


@signed_in(STAFF)
def _home() -> ResponseReturnValue:
    return _page("web/staff/home.html", form={"region": "GB"}, results=None, error=None, **_home_context())


def _home_context() -> dict[str, Any]:
    return {"purposes": _purposes(), "summary": _role_summary(), "role": _role()}


@blueprint.post("/search")
@signed_in(STAFF)
def search() -> ResponseReturnValue:
    """Run a search and render its results in this response (never a redirect carrying the values)."""
    form = {name: request.form.get(name, "").strip() for name in SEARCH_FIELDS}
    form["purpose"] = request.form.get("purpose", "")
    context = _home_context()
    allowed = [p["name"] for p in context["purposes"]]

    def refuse(message: str, status: int) -> Response:
        return _page("web/staff/home.html", status, form=form, results=None, error=message, **context)

    if "profiles:read" not in scopes():
        return refuse("Your role does not look customers up: it may not read customer profiles.", 403)
    if form["purpose"] not in allowed:
        return refuse("Choose why you are looking the customer up (a purpose your role may use).", 422)
    body: dict[str, str] = {}
    if form["email"]:
        body["email"] = form["email"]
    if form["phone"]:
        body["phone"] = form["phone"]
        body["region"] = form["region"] or "GB"
    if form["first_name"]:
        body["first_name"] = form["first_name"]
    if form["last_name"]:
        body["last_name"] = form["last_name"]
    kinds = sum(
        1 for present in (form["email"], form["phone"], form["first_name"] or form["last_name"]) if present
    )
    if kinds != 1:
        message = (
            "Fill in one of: an email address, a phone number, or a name."
            if kinds == 0
            else "Search by one kind of detail at a time: email, phone or name."
        )
        return refuse(message, 422)
    found = api(STAFF, "POST", "/v1/customers/search", json_body=body)
    if not found.ok:
        return refuse(_problem_text(found), found.status)
    return _page("web/staff/home.html", form=form, results=found.body, error=None, **context)


# -- a customer ---------------------------------------------------------------------------------------


def _attribute_rows(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per disclosed attribute: its value (masked or clear), provenance and, if masked, why."""
    redactions = {r.get("field"): r for r in profile.get("redactions", [])}
    rows = []
    for name, item in profile.get("attributes", {}).items():
        if name == "attributes":
            continue
        redaction = redactions.get(name)
        rows.append(
            {
                "field": name,
                "label": LABELS.get(name, name.replace("_", " ")),
                "value": item.get("value"),
                "mode": item.get("mode", "clear"),
                "source": item.get("source"),
                "strategy": (item.get("strategy") or "").replace("_", " "),
                "support": item.get("support"),
                "why": REASONS.get(str(redaction.get("reason")), "") if redaction else "",
                "rule": redaction.get("rule", "") if redaction else "",
            }
        )
    order = {name: index for index, name in enumerate(PROFILE_FIELDS)}
    return sorted(rows, key=lambda row: order.get(row["field"], len(order)))


def _withheld(*redaction_lists: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every field left out (not masked), once, with the reason in words and the rule that decided it."""
    seen: dict[str, dict[str, str]] = {}
    for redactions in redaction_lists:
        for redaction in redactions:
            name = str(redaction.get("field"))
            if redaction.get("mode") != "omitted" or name in seen:
                continue
            seen[name] = {
                "field": name,
                "label": LABELS.get(name, name.replace("_", " ")),
                "reason": str(redaction.get("reason", "")),
                "why": REASONS.get(str(redaction.get("reason")), "not disclosed"),
                "rule": str(redaction.get("rule", "")),
            }
    order = {name: index for index, name in enumerate(PROFILE_FIELDS)}
    return sorted(seen.values(), key=lambda row: order.get(row["field"], len(order)))


def _short(record_id: str) -> str:
    return record_id[:8]


def _cluster(
    explanation: dict[str, Any],
    sources: dict[str, str],
    review: list[dict[str, Any]],
) -> dict[str, Any]:
    """The cluster's nodes, edges (with their kind) and the rows of the pairs table, plus the graph."""
    records = [str(r) for r in explanation.get("records", [])]
    number = {record: index + 1 for index, record in enumerate(records)}
    uncertain = {frozenset((str(i["record_a"]), str(i["record_b"]))) for i in review}
    edges: list[GraphEdge] = []
    pairs: list[dict[str, Any]] = []
    linked: set[frozenset[str]] = set()
    for link in explanation.get("links", []):
        a, b = str(link["record_a"]), str(link["record_b"])
        pair = frozenset((a, b))
        linked.add(pair)
        if link.get("refused"):
            kind, status = "cut", f"link refused: {str(link['refused']).replace('_', ' ')}"
        elif pair in uncertain:
            kind, status = "uncertain", "uncertain: near the threshold, awaiting review"
        else:
            kind, status = "link", "linked"
        weight = link.get("match_weight")
        edges.append(GraphEdge(a, b, float(weight) if weight is not None else None, kind))
        pairs.append(
            {
                "a": a,
                "b": b,
                "na": number.get(a),
                "nb": number.get(b),
                "weight": weight,
                "kind": kind,
                "status": status,
            }
        )
    for decision in explanation.get("decisions", []):
        a, b = str(decision["record_a"]), str(decision["record_b"])
        pair = frozenset((a, b))
        if decision.get("kind") != "merge" or pair in linked or a not in number or b not in number:
            continue
        linked.add(pair)
        edges.append(GraphEdge(a, b, None, "manual"))
        pairs.append(
            {
                "a": a,
                "b": b,
                "na": number[a],
                "nb": number[b],
                "weight": None,
                "kind": "manual",
                "status": "merged by hand",
            }
        )
    pairs.sort(key=lambda p: (p["na"] or 0, p["nb"] or 0))
    nodes = [
        GraphNode(record, sources.get(record) or f"record {_short(record)}", str(number[record]))
        for record in records
    ]
    members = set(records)
    candidates = [
        {
            "member": str(i["record_a"]) if str(i["record_a"]) in members else str(i["record_b"]),
            "other": str(i["record_b"]) if str(i["record_a"]) in members else str(i["record_a"]),
            "weight": i.get("match_weight"),
            "refused": i.get("refused"),
        }
        for i in review
        if not i.get("linked") and (str(i["record_a"]) in members) != (str(i["record_b"]) in members)
    ]
    graph = cluster_svg(
        nodes,
        edges,
        title=f"Identity cluster of {len(records)} record{'s' if len(records) != 1 else ''}",
        description=(
            "Each circle is a member record, labelled by its source; each line a scored pair with its match "
            "weight in bits. Dashed lines are uncertain or refused links."
        ),
    )
    return {
        "records": [{"id": r, "number": number[r], "source": sources.get(r)} for r in records],
        "pairs": pairs,
        "decisions": explanation.get("decisions", []),
        "candidates": candidates,
        "graph": graph,
    }


@blueprint.get("/customers/<entity_id>")
@signed_in(STAFF)
def customer(entity_id: str) -> ResponseReturnValue:
    """The customer's page: profile and history for the chosen purpose, and the identity cluster."""
    wanted = _uuid(entity_id)
    granted = scopes()
    if wanted is None:
        return _page("web/message.html", 404, heading="Not found", message="No such customer.")
    if not granted & {"profiles:read", "identity:read"}:
        message = "Your role may not open customers."
        return _page("web/message.html", 403, heading="Not allowed", message=message)
    customer_id = str(wanted)
    purpose = _safe_purpose(request.args.get("purpose"))
    cursor = request.args.get("cursor") or None
    context: dict[str, Any] = {
        "entity_id": customer_id,
        "purpose": purpose,
        "purposes": _purposes(),
        "profile": None,
        "rows": [],
        "withheld": [],
        "timeline": None,
        "cursor": cursor,
        "profile_error": None,
        "timeline_error": None,
        "cluster": None,
        "cluster_error": None,
    }
    status = 200
    sources: dict[str, str] = {}
    if "profiles:read" in granted and purpose:
        profile = api(STAFF, "GET", f"/v1/customers/{customer_id}", query={"purpose": purpose})
        if profile.ok:
            body = profile.body
            context.update(profile=body, rows=_attribute_rows(body))
            sources = {str(r["record_id"]): str(r["source"]) for r in body.get("records", [])}
            query = {"purpose": purpose, "limit": TIMELINE_PAGE, "cursor": cursor}
            timeline = api(STAFF, "GET", f"/v1/customers/{customer_id}/timeline", query=query)
            if timeline.ok:
                context["timeline"] = timeline.body
            else:
                context["timeline_error"] = _problem_text(timeline)
            timeline_redactions = timeline.body.get("redactions", []) if timeline.ok else []
            context["withheld"] = _withheld(body.get("redactions", []), timeline_redactions)
        else:
            status = profile.status
            context["profile_error"] = _problem_text(profile)
    if "identity:read" in granted and status not in (400, 403, 404):
        explanation = api(STAFF, "GET", f"/v1/identity/entities/{customer_id}/explanation")
        if explanation.ok:
            review = api(STAFF, "GET", "/v1/identity/review", query={"limit": 500})
            items = review.body.get("items", []) if review.ok else []
            known = {**explanation.body.get("sources", {}), **sources}
            context["cluster"] = _cluster(explanation.body, known, items)
        else:
            context["cluster_error"] = _problem_text(explanation)
            if context["profile"] is None:
                status = explanation.status
    return _page("web/staff/customer.html", status, **context)


@blueprint.get("/records/<record_id>")
@signed_in(STAFF)
def record(record_id: str) -> ResponseReturnValue:
    """Open the customer a record belongs to (the review queue names records, pages show customers)."""
    wanted = _uuid(record_id)
    if wanted is None:
        return _page("web/message.html", 404, heading="Not found", message="No such record.")
    found = api(STAFF, "GET", f"/v1/identity/records/{wanted}/entity")
    if not found.ok:
        message = "No such record, or it is not resolved yet." if found.status == 404 else found.problem
        return _page("web/message.html", found.status, heading="Not available", message=message)
    entity = str(found.body["entity_id"])
    return redirect(_with_purpose(f"/staff/customers/{entity}", request.args.get("purpose", "")), 303)


# -- data stewards: review, merge, split --------------------------------------------------------------


@blueprint.post("/customers/<entity_id>/split")
@signed_in(STAFF)
def split(entity_id: str) -> ResponseReturnValue:
    """Split one record off a customer; then show the customer the remaining records belong to."""
    wanted = _uuid(entity_id)
    moving = _uuid(request.form.get("record_id"))
    staying = _uuid(request.form.get("stay"))
    purpose = request.form.get("purpose", "")
    if wanted is None:
        return _page("web/message.html", 404, heading="Not found", message="No such customer.")
    back = _with_purpose(f"/staff/customers/{wanted}", purpose)
    if moving is None:
        notify("Choose the record to split off.", "error")
        return redirect(back, 303)
    done = api(
        STAFF,
        "POST",
        f"/v1/identity/entities/{wanted}/splits",
        json_body={"record_ids": [str(moving)], "reason": request.form.get("reason", "").strip()},
    )
    if not done.ok:
        notify(_problem_text(done), "error")
        return redirect(back, 303)
    count = len(done.body.get("entity_ids", []))
    notify(f"Record split off: the records now belong to {count} customers.", "ok")
    if staying is not None and staying != moving:
        return redirect(_with_purpose(f"/staff/records/{staying}", purpose), 303)
    return redirect("/staff/review", 303)


@blueprint.post("/merges")
@signed_in(STAFF)
def merge() -> ResponseReturnValue:
    """Merge two records' customers by hand; back to the review queue or to the merged customer."""
    record_a, record_b = _uuid(request.form.get("record_a")), _uuid(request.form.get("record_b"))
    purpose = request.form.get("purpose", "")
    from_review = request.form.get("back") == "review"
    fallback = "/staff/review" if from_review else "/staff/"
    if record_a is None or record_b is None:
        notify("Give the ids of both records to merge.", "error")
        return redirect(fallback, 303)
    done = api(
        STAFF,
        "POST",
        "/v1/identity/merges",
        json_body={
            "record_a": str(record_a),
            "record_b": str(record_b),
            "reason": request.form.get("reason", "").strip(),
        },
    )
    if not done.ok:
        notify(_problem_text(done), "error")
        back = fallback if from_review else _with_purpose(f"/staff/records/{record_a}", purpose)
        return redirect(back, 303)
    notify("Merged: both records now belong to one customer.", "ok")
    if from_review:
        return redirect("/staff/review", 303)
    return redirect(_with_purpose(f"/staff/customers/{done.body['entity_id']}", purpose), 303)


@blueprint.post("/review/keep-apart")
@signed_in(STAFF)
def keep_apart() -> ResponseReturnValue:
    """Keep a linked pair apart: split the second record off the customer both belong to."""
    record_a, record_b = _uuid(request.form.get("record_a")), _uuid(request.form.get("record_b"))
    if record_a is None or record_b is None:
        notify("Give the ids of both records.", "error")
        return redirect("/staff/review", 303)
    found = api(STAFF, "GET", f"/v1/identity/records/{record_b}/entity")
    if not found.ok:
        notify(_problem_text(found), "error")
        return redirect("/staff/review", 303)
    if str(record_a) not in [str(r) for r in found.body.get("records", [])]:
        notify("These records already belong to different customers.", "info")
        return redirect("/staff/review", 303)
    done = api(
        STAFF,
        "POST",
        f"/v1/identity/entities/{found.body['entity_id']}/splits",
        json_body={"record_ids": [str(record_b)], "reason": request.form.get("reason", "").strip()},
    )
    if done.ok:
        notify("Kept apart: the two records now belong to different customers.", "ok")
    else:
        notify(_problem_text(done), "error")
    return redirect("/staff/review", 303)


@blueprint.get("/review")
@signed_in(STAFF)
def review() -> ResponseReturnValue:
    """Uncertain pairs, nearest the threshold first, each with the evidence that scored it."""
    if "identity:read" not in scopes():
        message = "The review queue is for data stewards: your role may not see how records were resolved."
        return _page("web/staff/review.html", 403, items=[], error=message)
    queue = api(STAFF, "GET", "/v1/identity/review", query={"limit": REVIEW_PAGE})
    if not queue.ok:
        return _page("web/staff/review.html", queue.status, items=[], error=_problem_text(queue))
    items = []
    for item in queue.body.get("items", []):
        pair = {"record_a": item["record_a"], "record_b": item["record_b"]}
        explained = api(STAFF, "GET", "/v1/identity/explanations", query=pair)
        items.append({**item, "explanation": explained.body if explained.ok else None})
    return _page("web/staff/review.html", items=items, error=None)
