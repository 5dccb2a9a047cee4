"""The privacy center: a customer sees the data held about them and exercises their rights.

Pages call the customer API (``/v1/me…``) as the signed-in customer; everything shown is what that API
discloses to its own subject, and every change (a consent, a request) is made by the API too.

The one-time export link is never put in front of the browser: the API answers the request with it,
the page keeps it in the encrypted session state and ``POST /privacy/requests/download`` fetches the
archive server-side and hands it over as an attachment, so the link (a bearer capability) appears in no
URL, history entry or log line.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request
from flask.typing import ResponseReturnValue

from web.apps import PRIVACY
from web.auth import (
    api,
    clear_cookie,
    current_web_session,
    end_session,
    notify,
    signed_in,
    stash,
    take_notices,
    web_blueprint,
)
from web.gateway import call
from web.pages import render

blueprint = web_blueprint(PRIVACY)

NAV = [
    ("/privacy/", "Your data"),
    ("/privacy/history", "Contact history"),
    ("/privacy/consents", "Consents"),
    ("/privacy/access", "Who saw your data"),
    ("/privacy/requests", "Copy or erase"),
]
FIELD_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "full_name": "Full name",
    "email": "Email",
    "phone": "Phone",
    "date_of_birth": "Date of birth",
    "address_line1": "Address",
    "street_number": "Street number",
    "city": "City",
    "postcode": "Postcode",
    "state": "State or region",
    "country": "Country",
    "national_id": "National id",
}
PURPOSE_ACTIONS = ("grant", "withdraw")


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return render(
        PRIVACY,
        template,
        status,
        nav_links=NAV,
        current_path=request.path,
        notices=take_notices(),
        field_labels=FIELD_LABELS,
        **context,
    )


@blueprint.get("/")
def index() -> ResponseReturnValue:
    web_session = current_web_session()
    if web_session is None or web_session.pending:
        return render(PRIVACY, "web/landing.html")
    return _your_data()


@signed_in(PRIVACY)
def _your_data() -> ResponseReturnValue:
    me = api(PRIVACY, "GET", "/v1/me")
    if not me.ok:
        return _page("web/privacy/data.html", me.status, error=me.problem, profile=None)
    return _page("web/privacy/data.html", profile=me.body)


@blueprint.get("/history")
@signed_in(PRIVACY)
def history() -> ResponseReturnValue:
    cursor = request.args.get("cursor")
    timeline = api(PRIVACY, "GET", "/v1/me/timeline", query={"limit": 50, "cursor": cursor})
    if not timeline.ok:
        return _page("web/privacy/history.html", timeline.status, error=timeline.problem, timeline=None)
    return _page("web/privacy/history.html", timeline=timeline.body, cursor=cursor)


def _consent_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per purpose and channel: what it means, its lawful basis and where it stands."""
    purposes = {p["name"]: p for p in body.get("purposes", [])}
    rows = []
    for state in body.get("state", []):
        purpose = purposes.get(state["purpose"], {})
        for channel in state.get("channels", []):
            rows.append(
                {
                    "purpose": state["purpose"],
                    "lawful_basis": state.get("lawful_basis"),
                    "text": purpose.get("text", ""),
                    "description": purpose.get("description", ""),
                    "channel": channel["channel"],
                    "status": channel["status"],
                    "since": channel.get("since"),
                    "holds": state.get("holds"),
                    "changeable": state.get("lawful_basis") in ("consent", "legitimate_interest"),
                }
            )
    return rows


@blueprint.get("/consents")
@signed_in(PRIVACY)
def consents() -> ResponseReturnValue:
    found = api(PRIVACY, "GET", "/v1/me/consents")
    if not found.ok:
        return _page("web/privacy/consents.html", found.status, error=found.problem, rows=[], history=[])
    body = found.body
    return _page(
        "web/privacy/consents.html", rows=_consent_rows(body), history=list(reversed(body.get("history", [])))
    )


@blueprint.post("/consents")
@signed_in(PRIVACY)
def change_consent() -> ResponseReturnValue:
    action = request.form.get("action", "")
    if action not in PURPOSE_ACTIONS:
        notify("Choose to grant or to withdraw.", "error")
        return redirect("/privacy/consents", 303)
    changed = api(
        PRIVACY,
        "POST",
        "/v1/me/consents",
        json_body={
            "purpose": request.form.get("purpose", ""),
            "channel": request.form.get("channel", ""),
            "action": action,
        },
    )
    if changed.ok:
        verb = "granted" if action == "grant" else "withdrawn"
        notify(f"Consent {verb}: it takes effect now.", "ok")
    else:
        notify(changed.problem, "error")
    return redirect("/privacy/consents", 303)


@blueprint.get("/access")
@signed_in(PRIVACY)
def access() -> ResponseReturnValue:
    cursor = request.args.get("cursor")
    log = api(PRIVACY, "GET", "/v1/me/access-log", query={"limit": 50, "cursor": cursor})
    if not log.ok:
        return _page("web/privacy/access.html", log.status, error=log.problem, log=None)
    return _page("web/privacy/access.html", log=log.body, cursor=cursor)


@blueprint.get("/requests")
@signed_in(PRIVACY)
def requests_page() -> ResponseReturnValue:
    mine = api(PRIVACY, "GET", "/v1/me/requests")
    web_session = current_web_session()
    download = web_session.state.get("download") if web_session is not None else None
    if not mine.ok:
        return _page(
            "web/privacy/requests.html", mine.status, error=mine.problem, items=[], download=download
        )
    return _page("web/privacy/requests.html", items=mine.body, download=download)


@blueprint.post("/requests")
@signed_in(PRIVACY)
def open_request() -> ResponseReturnValue:
    kind = request.form.get("kind", "")
    if kind not in ("access", "erasure"):
        notify("Choose a copy of your data or its erasure.", "error")
        return redirect("/privacy/requests", 303)
    if kind == "erasure" and request.form.get("confirm") != "yes":
        notify("To erase your data, tick the box that confirms you understand it cannot be undone.", "error")
        return redirect("/privacy/requests", 303)
    opened = api(PRIVACY, "POST", "/v1/me/requests", json_body={"kind": kind})
    if not opened.ok:
        notify(opened.problem, "error")
        return redirect("/privacy/requests", 303)
    body = opened.body
    if kind == "access":
        download = body.get("download")
        if download:
            stash("download", {"url": download["url"], "expires_at": download.get("expires_at")})
            notify("Your copy is ready. Download it below: the link works once.", "ok")
        return redirect("/privacy/requests", 303)
    if opened.status == 202:
        notify("Your erasure request was received. A data protection officer approves it first.", "ok")
        return redirect("/privacy/requests", 303)
    return _erased(body)


def _erased(body: dict[str, Any]) -> ResponseReturnValue:
    """The erasure is done and the sign-in it ran under is revoked: show the receipt, end the session."""
    receipt = body.get("receipt") or {}
    end_session()
    response = render(PRIVACY, "web/privacy/erased.html", request_id=body.get("id"), receipt=receipt)
    return clear_cookie(response, PRIVACY)


@blueprint.post("/requests/download")
@signed_in(PRIVACY)
def download_export() -> ResponseReturnValue:
    web_session = current_web_session()
    download = web_session.state.get("download") if web_session is not None else None
    if not download:
        notify("There is no download waiting. Ask for a new copy.", "error")
        return redirect("/privacy/requests", 303)
    stash("download", None)  # one use, like the link itself
    fetched = call("GET", str(download["url"]))
    if not fetched.ok:
        notify(fetched.problem, "error")
        return redirect("/privacy/requests", 303)
    response = Response(fetched.data, mimetype="application/zip")
    response.headers["Content-Disposition"] = fetched.headers.get(
        "Content-Disposition", 'attachment; filename="cdp-export.zip"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response
