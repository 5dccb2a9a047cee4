"""The data-subject request API on SQLite and PostgreSQL: a customer's export is a link that works once, a
customer's erasure answers with a receipt that verifies and ends their sign-ins, the DPO's flow needs the
customer's code and a second person's approval, and refusals are problems that reveal nothing.

The helpers here (tokens, the world) are shared by the retention and work queue API tests.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import re
import secrets
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gunicorn.config import Config
from gunicorn.glogging import Logger
from sqlalchemy import select
from werkzeug.test import EnvironBuilder, TestResponse

from api import create_app
from api.dsr import REDACTED_DOWNLOAD_PATH
from cdp.access.clients import ClientRepository
from cdp.access.gate import Actor
from cdp.access.outbox import Outbox
from cdp.access.roles import ROLE_SCOPES
from cdp.db.models import AuditEntry, DsrRequest, EntityMember
from cdp.dsr.receipts import SignedReceipt
from cdp.dsr.service import DsrService
from cdp.platform import Platform
from tests.api.tokens import customer_token
from tests.dsr.world import World, seed_world

PROBLEM = "application/problem+json"


# -- shared helpers -----------------------------------------------------------------------------------


def staff_client(
    platform: Platform, client: FlaskClient, role: str, *, department: str | None = None
) -> tuple[str, str]:
    """(client id, access token) of a machine client of ``role`` with every scope the role allows."""
    with platform.db.transaction() as session:
        registered, secret = ClientRepository(session).create(
            name=f"api test {role}",
            role=role,
            department=department,
            scopes=ROLE_SCOPES[role],
            grant="client_credentials",
        )
    basic = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.get_json()
    return registered.client_id, str(response.get_json()["access_token"])


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    platform: Platform
    world: World
    tokens: dict[str, str] = field(default_factory=dict)
    client_ids: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return self.client.open(path, method=method, json=body, headers=headers)

    def add_staff(self, name: str, role: str, department: str | None = None) -> None:
        self.client_ids[name], self.tokens[name] = staff_client(
            self.platform, self.client, role, department=department
        )

    def entries(self, action: str) -> list[AuditEntry]:
        with self.platform.db.read() as session:
            return list(session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


def make_api(platform: Platform, tmp_path: Path, world: World | None = None, **overrides: Any) -> Api:
    """The app over ``platform`` (its settings changed by ``overrides``), with Maria's and John's
    customer tokens and two DPOs."""
    if overrides:
        platform = dataclasses.replace(platform, settings=platform.settings.with_overrides(**overrides))
    world = world or seed_world(platform, tmp_path)
    app = create_app(platform=platform)
    api = Api(app, app.test_client(), platform, world)
    api.tokens["maria"] = customer_token(platform, world.customers.maria_crm_record)
    with platform.db.read() as session:
        john_record = session.execute(
            select(EntityMember.record_id).where(EntityMember.entity_id == world.customers.john)
        ).scalar_one()
    api.tokens["john"] = customer_token(platform, john_record)
    api.add_staff("dpo", "dpo")
    api.add_staff("dpo2", "dpo")
    return api


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["request_id"]
    return dict(body)


def latest_code(platform: Platform) -> str:
    """The one-time code of the newest verification message in the outbox (what the customer reads)."""
    with platform.db.read() as session:
        messages = [m for m in Outbox(session, platform.vault).latest() if m.purpose == "dsr_verification"]
    match = re.search(r"code: (\d+)", messages[0].body)
    assert match is not None
    return match.group(1)


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def api(platform: Platform, tmp_path: Path) -> Api:
    """Erasures need a DPO's approval (the default)."""
    return make_api(platform, tmp_path)


@pytest.fixture
def self_service_api(platform: Platform, tmp_path: Path) -> Api:
    """Erasures are carried out as soon as a signed-in customer asks."""
    return make_api(platform, tmp_path, dsr_erasure_requires_approval=False)


# -- customers ----------------------------------------------------------------------------------------


def test_a_customers_access_request_answers_with_a_link_that_works_once(api: Api) -> None:
    response = api.call("POST", "/v1/me/requests", "maria", {"kind": "access"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["kind"], body["status"], body["verification"]) == ("access", "completed", "signed_in")
    assert "opened_by" not in body and "queue" not in body
    url, expires_at = body["download"]["url"], body["download"]["expires_at"]
    token = url.rsplit("/", 1)[1]
    assert url.startswith("/v1/dsr/downloads/") and len(token) >= 43 and expires_at

    # HEAD (which link checkers send) must not spend the link
    assert api.client.head(url).status_code == 405

    download = api.client.get(url)
    assert download.status_code == 200
    assert download.mimetype == "application/zip"
    assert download.headers["Content-Disposition"] == f'attachment; filename="cdp-export-{body["id"]}.zip"'
    assert download.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert {f["name"] for f in manifest["files"]} <= set(archive.namelist())
    assert manifest["customer_id"] == str(api.world.maria) and manifest["request_id"] == body["id"]

    again = assert_problem(api.client.get(url), 404)
    unknown = assert_problem(api.client.get("/v1/dsr/downloads/" + secrets.token_urlsafe(32)), 404)
    assert {k: again[k] for k in ("type", "title", "detail")} == {
        k: unknown[k] for k in ("type", "title", "detail")
    }
    assert again["instance"] == REDACTED_DOWNLOAD_PATH
    assert token not in json.dumps(again)

    downloads = api.entries("dsr.export.download")
    assert sorted((e.outcome, e.actor_kind) for e in downloads) == [
        ("not_found", "anonymous"),
        ("not_found", "anonymous"),
        ("success", "anonymous"),
    ]
    with api.platform.db.read() as session:
        everything = " ".join(str(row) for row in session.execute(select(AuditEntry.__table__)).all())
    assert token not in everything

    mine = api.call("GET", "/v1/me/requests", "maria").get_json()
    assert [(r["id"], r["status"], r["result_id"] is not None) for r in mine] == [
        (body["id"], "completed", True)
    ]


def test_the_download_token_never_reaches_the_servers_access_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    token = secrets.token_urlsafe(32)
    path = f"/v1/dsr/downloads/{token}"
    environ = EnvironBuilder(path=path, method="GET").get_environ()
    environ["RAW_URI"] = path + "?utm=x"  # what gunicorn puts there: the request line's target
    started: list[str] = []
    with caplog.at_level(logging.DEBUG):
        body = b"".join(api.app(environ, lambda status, headers, exc_info=None: started.append(status)))
    assert started == ["404 NOT FOUND"] and token.encode() not in body

    logger = Logger(Config())
    response = SimpleNamespace(status="404 NOT FOUND", sent=len(body), headers=[])
    atoms = logger.atoms(response, [], environ, timedelta(milliseconds=3))
    for line_format in (
        Config().access_log_format,
        '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
    ):  # default, cdp serve
        line = line_format % atoms
        assert token not in line and REDACTED_DOWNLOAD_PATH in line
    assert not [r for r in caplog.records if token in r.getMessage()]


def test_a_customers_erasure_answers_with_a_receipt_that_verifies_and_ends_their_sign_ins(
    self_service_api: Api,
) -> None:
    api = self_service_api
    response = api.call("POST", "/v1/me/requests", "maria", {"kind": "erasure"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["kind"], body["status"]) == ("erasure", "completed")
    assert "download" not in body
    receipt = body["receipt"]
    assert receipt["valid"] is True and receipt["kind"] == "erasure_receipt"
    signed = SignedReceipt.from_dict(receipt)
    assert signed.verify()
    assert signed.content["request_id"] == body["id"] and signed.content["customer_id"] == str(
        api.world.maria
    )
    assert set(signed.content["destroyed_records"]) == {str(r) for r in api.world.maria_records}
    assert body["result_id"] == receipt["id"]

    refused = api.call("GET", "/v1/me/requests", "maria")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]

    stored = api.call("GET", f"/v1/receipts/{receipt['id']}", "dpo")
    assert stored.status_code == 200 and stored.get_json() == receipt
    listed = api.call("GET", "/v1/receipts?kind=erasure_receipt", "dpo").get_json()
    assert [r["id"] for r in listed] == [receipt["id"]] and listed[0]["valid"] is True
    assert api.call("GET", "/v1/receipts?kind=destruction_certificate", "dpo").get_json() == []


def test_an_erasure_needing_approval_answers_202_and_waits(api: Api) -> None:
    response = api.call("POST", "/v1/me/requests", "maria", {"kind": "erasure"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "awaiting_approval" and body["approval_required"] is True
    assert "receipt" not in body and "download" not in body
    again = assert_problem(api.call("POST", "/v1/me/requests", "maria", {"kind": "erasure"}), 409)
    assert body["id"] in again["detail"]

    # a customer's own request is approved by one DPO (no one opened it on their behalf)
    approved = api.call("POST", f"/v1/dsr/requests/{body['id']}/approve", "dpo")
    assert approved.status_code == 200 and approved.get_json()["status"] == "in_progress"
    done = api.call("POST", f"/v1/dsr/requests/{body['id']}/process", "dpo")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed" and done.get_json()["receipt"]["valid"] is True


def test_a_customer_sees_only_their_own_requests(api: Api) -> None:
    johns = api.call("POST", "/v1/me/requests", "john", {"kind": "access"}).get_json()
    marias = api.call("POST", "/v1/me/requests", "maria", {"kind": "access"}).get_json()

    assert api.call("GET", f"/v1/me/requests/{marias['id']}", "maria").get_json()["id"] == marias["id"]
    other = assert_problem(api.call("GET", f"/v1/me/requests/{johns['id']}", "maria"), 404)
    assert johns["id"] not in other["detail"]
    assert [r["id"] for r in api.call("GET", "/v1/me/requests", "maria").get_json()] == [marias["id"]]
    assert_problem(api.call("GET", f"/v1/me/requests/{uuid.uuid4()}", "maria"), 404)
    bad = assert_problem(api.call("GET", "/v1/me/requests/not-an-id", "maria"), 422)
    assert bad["errors"] == {"path": {"request_id": ["Not a valid UUID."]}}

    reads = [e for e in api.entries("dsr.read") if e.outcome == "not_found"]
    assert len(reads) == 2 and all(
        e.actor == f"customer:{api.world.customers.maria_crm_record}" for e in reads
    )


# -- the DPO ------------------------------------------------------------------------------------------


def test_the_dpo_flow_needs_the_customers_code_and_a_second_dpos_approval(api: Api) -> None:
    opened = api.call(
        "POST", "/v1/dsr/requests", "dpo", {"customer_id": str(api.world.maria), "kind": "erasure"}
    )
    assert opened.status_code == 201, opened.get_json()
    request = opened.get_json()
    assert (request["status"], request["channel"], request["opened_by"]) == (
        "verifying",
        "on_behalf",
        api.client_ids["dpo"],
    )
    assert request["queue"] == "privacy" and request["approval_required"] is True
    path = f"/v1/dsr/requests/{request['id']}"

    code = latest_code(api.platform)
    wrong = "00000000" if code != "00000000" else "11111111"
    failed = assert_problem(api.call("POST", f"{path}/verify", "dpo", {"code": wrong}), 400)
    assert failed["reason"] == "bad_code" and wrong not in json.dumps(failed)
    verifies = [(e.outcome, json.loads(e.details)["reason"]) for e in api.entries("dsr.verify")]
    assert verifies == [("denied", "bad_code")]  # one entry for the refusal, not two

    assert_problem(api.call("POST", f"{path}/process", "dpo"), 409)  # not verified yet
    verified = api.call("POST", f"{path}/verify", "dpo", {"code": code})
    assert verified.status_code == 200 and verified.get_json()["status"] == "awaiting_approval"
    assert verified.get_json()["verification"] == "email_code"

    own = assert_problem(api.call("POST", f"{path}/approve", "dpo"), 409)
    assert "cannot also approve" in own["detail"]
    approved = api.call("POST", f"{path}/approve", "dpo2")
    assert approved.status_code == 200
    assert approved.get_json()["approved_by"] == api.client_ids["dpo2"]

    processed = api.call("POST", f"{path}/process", "dpo")
    assert processed.status_code == 200, processed.get_json()
    outcome = processed.get_json()
    assert outcome["status"] == "completed" and outcome["receipt"]["valid"] is True
    assert SignedReceipt.from_dict(outcome["receipt"]).content["approved_by"] == api.client_ids["dpo2"]

    read = api.call("GET", path, "dpo").get_json()
    assert read["status"] == "completed" and read["result_id"] == outcome["receipt"]["id"]
    found = api.call(
        "GET", f"/v1/dsr/requests?status=completed&customer_id={api.world.maria}", "dpo"
    ).get_json()
    assert [r["id"] for r in found] == [request["id"]]
    assert api.call("GET", "/v1/dsr/requests?status=verifying", "dpo").get_json() == []
    assert api.call("GET", "/v1/dsr/requests?overdue=true", "dpo").get_json() == []


def test_an_export_opened_on_a_customers_behalf_sends_its_link_to_the_customer_only(api: Api) -> None:
    opened = api.call(
        "POST", "/v1/dsr/requests", "dpo", {"customer_id": str(api.world.customers.john), "kind": "access"}
    )
    path = f"/v1/dsr/requests/{opened.get_json()['id']}"
    verified = api.call("POST", f"{path}/verify", "dpo", {"code": latest_code(api.platform)})
    assert verified.get_json()["status"] == "in_progress"  # an export needs no approval

    processed = api.call("POST", f"{path}/process", "dpo")
    assert processed.status_code == 200, processed.get_json()
    assert processed.get_json()["status"] == "completed" and "download" not in processed.get_json()
    with api.platform.db.read() as session:
        sent = [m for m in Outbox(session, api.platform.vault).latest() if m.purpose == "dsr_export"]
    token = sent[0].body.rsplit(" ", 1)[1]
    assert api.client.get(f"/v1/dsr/downloads/{token}").status_code == 200
    # carrying it out again returns it as it is: no second export, no second link
    assert api.call("POST", f"{path}/process", "dpo").get_json()["status"] == "completed"


def test_a_rejection_takes_a_lawful_reason(api: Api) -> None:
    opened = api.call(
        "POST", "/v1/dsr/requests", "dpo", {"customer_id": str(api.world.customers.john), "kind": "access"}
    )
    path = f"/v1/dsr/requests/{opened.get_json()['id']}"

    bad = assert_problem(api.call("POST", f"{path}/reject", "dpo", {"reason": "do not feel like it"}), 422)
    assert list(bad["errors"]["json"]) == ["reason"]
    assert api.call("GET", path, "dpo").get_json()["status"] == "verifying"

    rejected = api.call("POST", f"{path}/reject", "dpo", {"reason": "duplicate", "detail": "see request 41"})
    assert rejected.status_code == 200
    assert (rejected.get_json()["status"], rejected.get_json()["rejected_reason"]) == (
        "rejected",
        "duplicate",
    )
    assert_problem(api.call("POST", f"{path}/reject", "dpo", {"reason": "duplicate"}), 409)
    assert_problem(
        api.call("POST", f"/v1/dsr/requests/{uuid.uuid4()}/reject", "dpo", {"reason": "duplicate"}), 404
    )


def test_bad_input_is_a_problem_with_field_errors_and_writes_nothing(api: Api) -> None:
    body = {"customer_id": "maria", "kind": "export"}
    problem = assert_problem(api.call("POST", "/v1/dsr/requests", "dpo", body), 422)
    assert set(problem["errors"]["json"]) == {"customer_id", "kind"}
    assert "maria" not in json.dumps(problem)
    assert_problem(api.call("POST", "/v1/me/requests", "maria", {}), 422)
    assert_problem(api.call("GET", "/v1/dsr/requests?status=lost&limit=0", "dpo"), 422)
    assert_problem(api.call("POST", "/v1/dsr/requests/not-an-id/verify", "dpo", {"code": "1"}), 422)
    unknown = {"customer_id": str(uuid.uuid4()), "kind": "access"}
    assert_problem(api.call("POST", "/v1/dsr/requests", "dpo", unknown), 404)
    assert_problem(api.call("GET", f"/v1/receipts/{uuid.uuid4()}", "dpo"), 404)
    with api.platform.db.read() as session:
        assert session.execute(select(DsrRequest.id)).first() is None


def test_each_route_needs_its_scope(api: Api) -> None:
    api.add_staff("support", "support_agent", department="support")
    for method, path in (
        ("GET", "/v1/dsr/requests"),
        ("POST", "/v1/dsr/requests"),
        ("POST", f"/v1/dsr/requests/{uuid.uuid4()}/process"),
        ("GET", "/v1/receipts"),
    ):
        for token in ("support", "maria"):
            refused = api.call(method, path, token, {})
            assert refused.status_code == 403, (method, path, token)
            assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    for method in ("GET", "POST"):
        assert api.call(method, "/v1/me/requests", "dpo", {"kind": "access"}).status_code == 403
        assert api.call(method, "/v1/me/requests", None, {"kind": "access"}).status_code == 401


def test_staff_carrying_out_a_customers_own_export_never_receive_its_link(api: Api) -> None:
    record = api.world.customers.maria_crm_record
    view = DsrService.for_platform(api.platform).open_self_service(
        Actor(f"customer:{record}", "customer", None, record), "access"
    )  # opened, but not carried out (say the server stopped)
    processed = api.call("POST", f"/v1/dsr/requests/{view.id}/process", "dpo")
    assert processed.status_code == 200, processed.get_json()
    assert processed.get_json()["status"] == "completed"
    assert "download" not in processed.get_json() and "/v1/dsr/downloads/" not in processed.get_data(
        as_text=True
    )
