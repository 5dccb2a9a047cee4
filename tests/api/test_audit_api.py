"""The compliance API over the audit log and a customer's access log, on SQLite and PostgreSQL: every
filter narrows, pages follow the cursor, exports stream in both formats with spreadsheet formulas
defused, only auditor roles get in (and a refusal is itself audited), status and verification notice a
rewritten row, and a customer sees staff reads of their data by department, role and purpose only."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from api import create_app
from api.audit import CSV_COLUMNS, csv_cell
from cdp.access.clients import ClientRepository
from cdp.access.roles import ROLE_SCOPES
from cdp.audit import ActorKind, AuditActor, AuditEvent, AuditService, record_now
from cdp.audit.queries import Entry, search
from cdp.db.types import utcnow
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.vault.audit_keys import verify_signature
from tests.api.test_oauth_code_flow import MARIA, Live, live
from tests.api.test_profiles_api import customer_session, staff_session
from tests.profiles.fixtures import Customers, seed_customers

__all__ = ["live"]

AUDITORS = ("compliance_officer", "dpo", "admin")
AUDIT_GETS = {
    "/v1/audit/entries": "audit.search",
    "/v1/audit/reports/access": "audit.report",
    "/v1/audit/export": "audit.export",
    "/v1/audit/status": "audit.status",
    "/v1/audit/checkpoints": "audit.status",
}


@dataclass
class Api:
    platform: Platform
    client: FlaskClient
    customers: Customers
    tokens: dict[str, str] = field(default_factory=dict)
    client_ids: dict[str, str] = field(default_factory=dict)

    def token(self, role: str, department: str | None = None) -> str:
        """A client-credentials token of a machine client with ``role`` and every scope it may hold."""
        if role not in self.tokens:
            with self.platform.db.transaction() as session:
                registered, secret = ClientRepository(session).create(
                    name=f"{role} client",
                    role=role,
                    department=department,
                    scopes=ROLE_SCOPES[role],
                    grant="client_credentials",
                )
            basic = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
            response = self.client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            )
            assert response.status_code == 200, response.get_json()
            self.tokens[role] = response.get_json()["access_token"]
            self.client_ids[role] = registered.client_id
        return self.tokens[role]

    def get(self, role: str, url: str, **params: Any) -> TestResponse:
        return self.client.get(
            url, query_string=params, headers={"Authorization": f"Bearer {self.token(role)}"}
        )

    def entries(self, **filters: Any) -> list[Entry]:
        return search(self.platform.db, limit=1000, **filters).items


@pytest.fixture
def api(platform: Platform, tmp_path: Path) -> Api:
    customers = seed_customers(platform, tmp_path)
    made = Api(platform, create_app(platform=platform).test_client(), customers)
    made.token("support_agent", department="support")
    return made


def read_profile(api: Api, customer: uuid.UUID, purpose: str = "support") -> int:
    return api.get("support_agent", f"/v1/customers/{customer}", purpose=purpose).status_code


# -- search -------------------------------------------------------------------------------------------


def test_search_finds_staff_reads_and_each_filter_narrows(api: Api) -> None:
    john, maria = api.customers.john, api.customers.maria
    assert read_profile(api, john) == 200
    assert read_profile(api, maria) == 200
    assert read_profile(api, john, "dsr") == 403  # a purpose the support role may not use
    agent = api.client_ids["support_agent"]

    def found(**params: Any) -> list[dict[str, Any]]:
        response = api.get("compliance_officer", "/v1/audit/entries", **params)
        assert response.status_code == 200, response.get_json()
        items: list[dict[str, Any]] = response.get_json()["items"]
        return items

    about_john = found(subject=str(john), action="profile.read")
    assert [(e["outcome"], e["purpose"]) for e in about_john] == [("denied", "dsr"), ("success", "support")]
    read = about_john[1]
    assert (read["actor"], read["actor_kind"], read["role"], read["department"]) == (
        agent,
        "client",
        "support_agent",
        "support",
    )
    assert str(john) in read["subjects"] and read["fields"] and "policy_version" in read["details"]
    assert set(read) == {*CSV_COLUMNS}
    assert [e["purpose"] for e in found(subject=str(john), outcome="denied")] == ["dsr"]
    assert len(found(actor=agent, action="profile.read")) == 3
    assert [
        str(maria) in e["subjects"] for e in found(actor=agent, outcome="success", action="profile.read")
    ] == [
        True,
        False,
    ]
    later = (utcnow() + timedelta(seconds=1)).isoformat()
    assert found(action="profile.read", since=later) == []
    assert len(found(action="profile.read", until=later)) == 3


def test_a_search_is_itself_audited_with_its_filters_as_ids_and_names(api: Api) -> None:
    john = str(api.customers.john)
    assert read_profile(api, api.customers.john) == 200
    since = "2026-01-01T00:00:00Z"
    response = api.get(
        "compliance_officer", "/v1/audit/entries", subject=john, action="profile.read", since=since, limit=5
    )
    assert response.status_code == 200
    (entry,) = api.entries(action="audit.search")
    assert entry.actor == api.client_ids["compliance_officer"] and entry.role == "compliance_officer"
    assert entry.subjects == (john,)  # searching for a customer is found by searching for them
    assert entry.details == {
        "action": "profile.read",
        "since": "2026-01-01T00:00:00.000000Z",
        "limit": 5,
        "continued": False,
        "returned": 1,
    }


def test_pages_follow_the_cursor_and_a_bad_cursor_is_a_problem(api: Api) -> None:
    made = {
        record_now(api.platform.db, AuditEvent("profile.read", purpose="support", subjects=("page-test",)))
        for _ in range(5)
    }
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params: dict[str, Any] = {"subject": "page-test", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = api.get("dpo", "/v1/audit/entries", **params).get_json()
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
    assert cursor is None and sorted(seen) == sorted(str(i) for i in made) and len(seen) == 5
    bad = api.get("dpo", "/v1/audit/entries", cursor="bm90LWEtY3Vyc29y")
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert bad.get_json()["title"] == "Invalid cursor"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("action", "profile.steal"),
        ("outcome", "maybe"),
        ("since", "2026-01-01T00:00:00"),  # no time zone
        ("until", "yesterday"),
        ("subject", "maria.garcia@example.com"),
        ("actor", "Maria García"),
    ],
)
def test_filters_are_validated_and_free_text_never_reaches_the_log(api: Api, name: str, value: str) -> None:
    response = api.get("compliance_officer", "/v1/audit/entries", **{name: value})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert name in response.get_json()["errors"]["query"]
    assert value not in response.get_data(as_text=True)
    with api.platform.db.read() as session:
        leaked = session.execute(
            text(
                "SELECT count(*) FROM audit_entry WHERE details LIKE :v OR subjects LIKE :v OR actor LIKE :v"
            ),
            {"v": f"%{value}%"},
        ).scalar_one()
    assert leaked == 0


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_the_page_size_is_bounded(api: Api, limit: str) -> None:
    response = api.get("compliance_officer", "/v1/audit/entries", limit=limit)
    assert response.status_code == 422 and "limit" in response.get_json()["errors"]["query"]


def test_an_empty_time_range_is_refused(api: Api) -> None:
    response = api.get(
        "compliance_officer", "/v1/audit/entries", since="2026-02-01T00:00:00Z", until="2026-01-01T00:00:00Z"
    )
    assert response.status_code == 422 and "until" in response.get_json()["errors"]["query"]


# -- authorization ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(AUDIT_GETS))
def test_a_support_agent_is_refused_and_the_refusal_is_audited(api: Api, path: str) -> None:
    response = api.get("support_agent", path)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert 'scope="audit:read"' in response.headers["WWW-Authenticate"]
    (refusal,) = api.entries(action="auth.scope_denied")
    assert refusal.outcome == "denied" and refusal.actor == api.client_ids["support_agent"]
    assert refusal.details == {"scope": "audit:read", "operation": AUDIT_GETS[path]}
    assert api.entries(action=AUDIT_GETS[path]) == []


@pytest.mark.parametrize("role", AUDITORS)
def test_every_auditor_role_reaches_the_compliance_api(api: Api, role: str) -> None:
    for path, action in AUDIT_GETS.items():
        response = api.get(role, path)
        assert response.status_code == 200, (path, response.get_json())
        assert any(e.actor == api.client_ids[role] for e in api.entries(action=action)), path


# -- access report ------------------------------------------------------------------------------------


def test_the_access_report_counts_reads_and_refusals_by_department_role_and_purpose(api: Api) -> None:
    assert read_profile(api, api.customers.john) == 200
    assert read_profile(api, api.customers.maria) == 200
    assert read_profile(api, api.customers.john, "dsr") == 403
    assert api.get("support_agent", "/v1/audit/entries").status_code == 403
    response = api.get("compliance_officer", "/v1/audit/reports/access")
    assert response.status_code == 200
    body = response.get_json()
    rows = {
        (r["department"], r["role"], r["purpose"], r["action"], r["outcome"]): r["count"]
        for r in body["rows"]
    }
    assert rows[("support", "support_agent", "support", "profile.read", "success")] == 2
    assert rows[("support", "support_agent", "dsr", "profile.read", "denied")] == 1
    assert rows[("support", "support_agent", None, "auth.scope_denied", "denied")] == 1
    assert all(
        action in ("profile.read", "timeline.read") or outcome == "denied" for *_, action, outcome in rows
    )
    assert body["read_actions"] == ["profile.read", "timeline.read"] and body["total"] == sum(rows.values())
    past = api.get(
        "compliance_officer",
        "/v1/audit/reports/access",
        since="2020-01-01T00:00:00Z",
        until="2020-02-01T00:00:00+01:00",
    ).get_json()
    assert past["rows"] == [] and past["until"] == "2020-01-31T23:00:00.000000Z"
    latest, default = api.entries(action="audit.report")  # newest first
    assert latest.details == {
        "since": "2020-01-01T00:00:00.000000Z",
        "until": "2020-01-31T23:00:00.000000Z",
        "rows": 0,
    }
    assert default.details["rows"] == len(rows)


# -- export -------------------------------------------------------------------------------------------


def _seal(api: Api) -> AuditService:
    service = AuditService(api.platform.db, api.platform.vault, api.platform.settings.issuer)
    service.seal()
    service.checkpoint()
    return service


def test_jsonl_export_streams_every_matching_entry_oldest_first(api: Api) -> None:
    assert read_profile(api, api.customers.john) == 200
    assert read_profile(api, api.customers.maria) == 200
    _seal(api)
    assert read_profile(api, api.customers.ana) == 200  # still pending
    response = api.get("dpo", "/v1/audit/export", action="profile.read")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="audit-') and disposition.endswith('.jsonl"')
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(lines) == 3 == int(response.headers["X-Audit-Entries"])
    assert [line["seq"] is None for line in lines] == [False, False, True]
    assert lines[0]["seq"] < lines[1]["seq"]
    assert [
        str(c) in line["subjects"]
        for line, c in zip(lines, (api.customers.john, api.customers.maria, api.customers.ana), strict=True)
    ] == [True] * 3
    assert all(set(line) == set(CSV_COLUMNS) for line in lines)
    (export,) = api.entries(action="audit.export")
    assert export.actor == api.client_ids["dpo"]
    assert export.details["format"] == "jsonl" and export.details["count"] == 3
    assert export.details["action"] == "profile.read" and "until" in export.details


def test_an_export_does_not_contain_its_own_entry(api: Api) -> None:
    response = api.get("compliance_officer", "/v1/audit/export", action="audit.export")
    assert response.status_code == 200 and response.get_data(as_text=True) == ""
    assert response.headers["X-Audit-Entries"] == "0"
    second = api.get("compliance_officer", "/v1/audit/export", action="audit.export")
    assert [json.loads(line)["details"]["count"] for line in second.get_data(as_text=True).splitlines()] == [
        0
    ]


def test_csv_export_joins_lists_and_defuses_formulas(api: Api) -> None:
    assert read_profile(api, api.customers.maria) == 200
    hostile = AuditActor("=HYPERLINK(1)", ActorKind.CLIENT, "+role", "@dept")
    record_now(
        api.platform.db,
        AuditEvent(
            "profile.read", purpose="-purpose", subjects=("-2", "@x"), fields=("+f",), details={"n": "=1"}
        ),
        actor=hostile,
    )
    response = api.get("compliance_officer", "/v1/audit/export", format="csv", action="profile.read")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].endswith('.csv"')
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    read, smuggled = (dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:])
    members = [
        str(api.customers.maria),
        str(api.customers.maria_crm_record),
        str(api.customers.maria_helpdesk_record),
    ]
    assert sorted(read["subjects"].split(";")) == sorted(members)
    assert "first_name" in read["fields"].split(";") and json.loads(read["details"])["policy_version"] >= 1
    assert read["seq"] == "" and read["hash"] == ""  # pending: not sealed yet
    assert smuggled["actor"] == "'=HYPERLINK(1)"
    assert (smuggled["role"], smuggled["department"], smuggled["purpose"]) == (
        "'+role",
        "'@dept",
        "'-purpose",
    )
    assert smuggled["subjects"] == "'-2;@x" and smuggled["fields"] == "'+f"
    assert smuggled["details"] == '{"n":"=1"}'  # a JSON object never starts like a formula


@pytest.mark.parametrize("cell", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_formula_like_cells_get_a_leading_quote(cell: str) -> None:
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "profile.read", "1+2", "a=b", "'quoted"])
def test_other_cells_are_left_alone(cell: str) -> None:
    assert csv_cell(cell) == cell


# -- status, verification, checkpoints ----------------------------------------------------------------


def test_status_and_verification_reflect_a_rewritten_row(api: Api) -> None:
    for customer in (api.customers.john, api.customers.maria):
        assert read_profile(api, customer) == 200
    api.token("compliance_officer")
    service = _seal(api)
    assert read_profile(api, api.customers.ana) == 200  # recorded after sealing: pending
    status = api.get("compliance_officer", "/v1/audit/status").get_json()
    head = status["head_seq"]
    assert head >= 2 and status["head_intact"] is True and status["origin"] == api.platform.settings.issuer
    checkpoint = status["latest_checkpoint"]
    assert checkpoint["seq"] == head and checkpoint["signature_valid"] and checkpoint["matches_chain"]
    assert status["public_keys"] == service.public_keys() and status["pending"] >= 1
    assert "verification" not in status
    verified = api.get("compliance_officer", "/v1/audit/status", verify="true").get_json()
    assert verified["verification"]["ok"] is True and verified["verification"]["head_seq"] == head

    with api.platform.db.transaction() as session:
        session.execute(text("UPDATE audit_entry SET purpose = 'tampered' WHERE seq = 2"))
    broken = api.get("compliance_officer", "/v1/audit/status", verify="true").get_json()
    assert broken["verification"]["ok"] is False
    assert broken["verification"]["first_problem"].startswith("entry seq 2 ")
    assert "content does not match its hash" in broken["verification"]["first_problem"]
    first, second = api.entries(action="audit.verify")
    assert first.details == {"ok": False, "entries": 1, "problem_seq": 2}
    assert second.details["ok"] is True and second.actor == api.client_ids["compliance_officer"]

    with api.platform.db.transaction() as session:
        session.execute(text("UPDATE audit_entry SET details = '{}' WHERE seq = :s"), {"s": head})
    assert api.get("compliance_officer", "/v1/audit/status").get_json()["head_intact"] is False


def test_checkpoints_come_with_the_keys_to_verify_them_offline(api: Api) -> None:
    assert read_profile(api, api.customers.john) == 200
    _seal(api)
    assert read_profile(api, api.customers.maria) == 200
    _seal(api)
    body = api.get("admin", "/v1/audit/checkpoints").get_json()
    assert len(body["checkpoints"]) == 2 and body["next_after"] is None
    for checkpoint in body["checkpoints"]:
        key = body["public_keys"][checkpoint["key_id"]]
        assert verify_signature(key, checkpoint["message"].encode("ascii"), checkpoint["signature"])
        assert f"size {checkpoint['seq']}\nhead {checkpoint['head_hash']}\n" in checkpoint["message"]
    first = body["checkpoints"][0]["seq"]
    page = api.get("admin", "/v1/audit/checkpoints", limit=1).get_json()
    assert [c["seq"] for c in page["checkpoints"]] == [first] and page["next_after"] == first
    rest = api.get("admin", "/v1/audit/checkpoints", after=first).get_json()
    assert [c["seq"] for c in rest["checkpoints"]] == [body["checkpoints"][1]["seq"]]


# -- a customer's access log --------------------------------------------------------------------------


def test_a_customer_sees_staff_reads_of_their_data_by_role_not_by_name(live: Live, tmp_path: Path) -> None:
    records = live.customers(tmp_path)
    identity = IdentityService(live.platform.db, live.platform.vault)
    maria, john = identity.entity_of(records["L-1"]), identity.entity_of(records["L-2"])
    customer = customer_session(live, MARIA)
    staff = staff_session(live, "sam", "support_agent", "profiles:read", department="support")
    assert staff.get(f"{live.base}/v1/customers/{maria}", params={"purpose": "support"}).status_code == 200
    assert staff.get(f"{live.base}/v1/customers/{john}", params={"purpose": "support"}).status_code == 200
    assert customer.get(f"{live.base}/v1/me").status_code == 200  # their own read: not listed

    response = customer.get(f"{live.base}/v1/me/access-log")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    (item,) = body["items"]
    assert set(item) == {"at", "action", "department", "role", "purpose", "outcome"}
    assert {k: v for k, v in item.items() if k != "at"} == {
        "action": "profile.read",
        "department": "support",
        "role": "support_agent",
        "purpose": "support",
        "outcome": "success",
    }
    staff_reads = search(live.platform.db, subject=str(maria), action="profile.read").items
    sam = next(e.actor for e in staff_reads if e.actor_kind == "user")
    assert sam.startswith("user:") and sam not in response.text and "user:" not in response.text
    (looked,) = search(live.platform.db, action="audit.transparency").items
    assert looked.actor_kind == "customer" and str(maria) in looked.subjects

    refused = staff.get(f"{live.base}/v1/me/access-log")
    assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]


def test_an_access_report_until_the_first_days_of_year_one_starts_at_the_earliest_instant(api: Api) -> None:
    """Found by the fuzz test: the default period (30 days before ``until``) overflowed into year 0 and
    answered 500; it is clamped at the first representable instant, and the range is echoed as RFC 3339."""
    response = api.get("compliance_officer", "/v1/audit/reports/access", until="0001-01-01T13:00:00Z")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["since"] == "0001-01-01T00:00:00.000000Z" and body["until"] == "0001-01-01T13:00:00.000000Z"
    assert body["rows"] == []


def test_a_checkpoint_position_beyond_64_bits_is_refused_not_a_server_error(api: Api) -> None:
    """Found by the fuzz test: ``after=32607066282587373568`` overflowed SQLite's integer and answered 500."""
    response = api.get("compliance_officer", "/v1/audit/checkpoints", after=str(2**64 + 1))
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    assert api.get("compliance_officer", "/v1/audit/checkpoints", after=str(2**63 - 1)).status_code == 200
