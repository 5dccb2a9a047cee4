"""The compliance console through Flask's test client: a compliance officer sees the audit chain verified
(and broken once a row is rewritten), verifies it in full, searches the log by id, action and outcome,
reads the access report and the keys; a DPO works the request queue (approve and carry out an erasure,
reject another) and places and releases a legal hold; a role without a permission is told so in words;
a POST without the CSRF token is refused."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from cdp.audit import AuditService
from cdp.audit.queries import search
from tests.web.harness import WebWorld, build_world, csrf_of, sign_in_customer, sign_in_staff, web_client

Person = tuple[str, uuid.UUID, uuid.UUID]
"""(email, record id, customer id) of a resolved customer."""
_PEOPLE: dict[int, list[Person]] = {}


def distinct_customers(world: WebWorld) -> list[Person]:
    """Distinct customers, each signing in unambiguously (:meth:`WebWorld.customers`)."""
    picked = world.customers()
    assert len(picked) >= 8, "the demo world has too few distinct customers"
    return picked


def _seal(world: WebWorld) -> None:
    """What the audit sequencer job does in a running server: seal pending entries, sign a checkpoint."""
    platform = world.platform
    AuditService(platform.db, platform.vault, platform.settings.issuer).seal_and_checkpoint()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    built = build_world(tmp_path_factory.mktemp("web-console"))
    people = _PEOPLE[id(built)] = distinct_customers(built)
    built.support_reads(people[3][2])
    _seal(built)
    try:
        yield built
    finally:
        built.platform.close()


@pytest.fixture(scope="module")
def people(world: WebWorld) -> list[Person]:
    """Customers of their own for each test (see :func:`distinct_customers`); the fourth is the one the
    support desk read."""
    return _PEOPLE[id(world)]


@pytest.fixture(scope="module")
def compliance(world: WebWorld) -> FlaskClient:
    client = web_client(world)
    sign_in_staff(client, world, "/console", "compliance")
    return client


@pytest.fixture(scope="module")
def dpo(world: WebWorld) -> FlaskClient:
    client = web_client(world)
    sign_in_staff(client, world, "/console", "dpo")
    return client


def words(page: str) -> str:
    """The page's text, tags stripped and spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def table_rows(page: str, table_class: str) -> list[str]:
    opening = re.search(rf'<table class="(?:[^"]* )?{table_class}(?: [^"]*)?">', page)
    assert opening is not None, f"no table of class {table_class}"
    body = page[opening.end() :].split("</table>", 1)[0]
    return re.findall(r"<tr[^>]*>.*?</tr>", body.split("<tbody>", 1)[1], flags=re.S)


def verdict(page: str) -> str:
    found = re.search(r'data-verdict="([a-z]+)"', page)
    assert found, "the page shows no chain verdict"
    return found.group(1)


# -- signed out and without permissions ---------------------------------------------------------------


def test_signed_out_the_console_offers_the_staff_sign_in_and_hides_every_page(world: WebWorld) -> None:
    client = web_client(world)
    front = client.get("/console/")
    assert front.status_code == 200 and 'href="/console/login"' in front.text
    for path in ("/console/audit", "/console/requests", "/console/keys"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.location.endswith("/console/")


def test_compliance_officer_without_dsr_manage_is_told_the_queue_is_not_for_their_role(
    compliance: FlaskClient,
) -> None:
    page = compliance.get("/console/requests")
    assert page.status_code == 200
    said = words(page.text)
    assert "Not available to your role" in said and "dsr:manage" in said and "compliance officer" in said
    assert '<table class="queue">' not in page.text
    retention = words(compliance.get("/console/retention").text)
    assert "retention:manage" in retention and "Destruction certificates and erasure receipts" in retention


def test_a_post_without_the_csrf_token_is_refused(compliance: FlaskClient, dpo: FlaskClient) -> None:
    refused = compliance.post("/console/audit/verify", data={"back": "overview"})
    assert refused.status_code == 403 and "not accepted" in refused.text
    forged = dpo.post(
        "/console/retention/holds",
        data={"customer_id": str(uuid.uuid4()), "reason": "case 1", "csrf_token": "x"},
    )
    assert forged.status_code == 403


# -- the audit chain ----------------------------------------------------------------------------------


def test_compliance_officer_sees_the_chain_verified_with_its_latest_checkpoint(
    compliance: FlaskClient,
) -> None:
    page = compliance.get("/console/")
    assert page.status_code == 200
    assert verdict(page.text) == "verified"
    said = words(page.text)
    assert "Chain verified" in said and "Latest checkpoint's signature verifies passed" in said
    assert "Latest checkpoint matches the chain passed" in said
    assert "Active KEK v1" in said  # the keys summary


def test_verify_the_chain_now_runs_the_full_verification_and_records_it(
    world: WebWorld, compliance: FlaskClient
) -> None:
    before = len(search(world.platform.db, action="audit.verify", limit=100).items)
    audit = compliance.get("/console/audit")
    answer = compliance.post(
        "/console/audit/verify", data={"csrf_token": csrf_of(audit.text), "back": "audit"}
    )
    assert answer.status_code == 303 and answer.location.endswith("/console/audit")
    page = compliance.get("/console/audit")
    said = words(page.text)
    assert re.search(r"Chain verified: [\d,]+ entries re-hashed and 1 signed checkpoints checked", said)
    assert "Full verification (every entry and checkpoint) passed" in said
    assert verdict(page.text) == "verified"
    recorded = search(world.platform.db, action="audit.verify", limit=100).items
    assert len(recorded) == before + 1 and recorded[0].details["ok"] is True


def test_a_rewritten_entry_shows_the_chain_broken(world: WebWorld) -> None:
    client = web_client(world)  # a session of its own: no earlier full verification in it
    sign_in_staff(client, world, "/console", "compliance")
    _seal(world)
    with world.platform.db.transaction() as session:
        head, original = session.execute(
            text("SELECT seq, purpose FROM audit_entry WHERE seq = (SELECT MAX(seq) FROM audit_entry)")
        ).one()
        session.execute(text("UPDATE audit_entry SET purpose = 'tampered' WHERE seq = :s"), {"s": head})
    try:
        page = client.get("/console/")
        assert verdict(page.text) == "broken"
        assert "Chain broken" in words(page.text)
        assert "Head entry re-hashes to its stored hash failed" in words(page.text)
        verify = client.post(
            "/console/audit/verify", data={"csrf_token": csrf_of(page.text), "back": "overview"}
        )
        assert verify.status_code == 303
        after = client.get("/console/")
        assert "The chain is broken" in words(after.text) and verdict(after.text) == "broken"
    finally:
        with world.platform.db.transaction() as session:
            session.execute(
                text("UPDATE audit_entry SET purpose = :p WHERE seq = :s"), {"p": original, "s": head}
            )
    assert verdict(client.get("/console/").text) == "broken"  # the failed full verification is remembered


# -- search and reports -------------------------------------------------------------------------------


def test_audit_search_narrows_by_action_outcome_and_subject(
    world: WebWorld, compliance: FlaskClient, people: list[Person]
) -> None:
    _, _, entity_id = people[3]
    denied = compliance.get("/console/audit?action=profile.read&outcome=denied")
    assert denied.status_code == 200
    rows = table_rows(denied.text, "entries")
    assert rows and all("profile.read" in row and ">denied<" in row for row in rows)
    assert all("dsr" in words(row) for row in rows)  # the refused purpose

    about = compliance.get(f"/console/audit?subject={entity_id}")
    rows = table_rows(about.text, "entries")
    assert len(rows) >= 2 and all(str(entity_id) in row for row in rows)
    assert {"success", "denied"} <= {o for row in rows for o in re.findall(r">(success|denied)<", row)}

    nothing = compliance.get(f"/console/audit?subject={uuid.uuid4()}&action=profile.read")
    assert "No entries match." in words(nothing.text)


def test_audit_search_refuses_an_email_address_without_sending_or_echoing_it(
    world: WebWorld, compliance: FlaskClient, people: list[Person]
) -> None:
    email, _, _ = people[0]
    page = compliance.get("/console/audit", query_string={"subject": email})
    assert page.status_code == 200
    assert "must be an id" in words(page.text)
    assert email not in page.text and html.escape(email) not in page.text
    assert not [
        e for e in search(world.platform.db, action="audit.search", limit=1000).items if email in str(e)
    ]


def test_audit_search_pages_through_older_entries(compliance: FlaskClient) -> None:
    # More than a page of entries whatever ran before in this worker: each keys page read is audited.
    for _ in range(30):
        assert compliance.get("/console/keys").status_code == 200
    first = compliance.get("/console/audit")
    assert len(table_rows(first.text, "entries")) == 50
    older = re.search(r'href="(/console/audit\?cursor=[^"]+)">Older entries', first.text)
    assert older, "no link to older entries"
    second = compliance.get(html.unescape(older.group(1)))
    assert second.status_code == 200 and table_rows(second.text, "entries")
    assert table_rows(second.text, "entries")[0] not in table_rows(first.text, "entries")


def test_access_report_tables_reads_by_department_role_and_purpose(compliance: FlaskClient) -> None:
    page = compliance.get("/console/access?period=7")
    assert page.status_code == 200
    said = words(page.text)
    assert "support" in said and "support agent" in said
    assert re.search(r'<h2 id="dept-\d+">support\s', page.text)
    rows = re.findall(r"<tr[^>]*>.*?</tr>", page.text, flags=re.S)
    allowed = [words(r) for r in rows if "support agent" in r and "profile.read" in r]
    assert any(row.startswith("support agent support profile.read 1") for row in allowed), allowed
    assert any(row.startswith("support agent dsr profile.read 0") for row in allowed), allowed
    custom = compliance.get("/console/access?period=custom&since=2020-01-01&until=2020-01-31")
    assert "No access to personal data in this period." in words(custom.text)
    wrong = compliance.get("/console/access?period=custom&since=2020-02-01&until=2020-01-01")
    assert "must not be after" in words(wrong.text)


def test_keys_page_shows_keks_and_signing_key_ids_and_no_key_material(
    world: WebWorld, compliance: FlaskClient
) -> None:
    page = compliance.get("/console/keys")
    assert page.status_code == 200
    said = words(page.text)
    assert "v1 active" in said and "Every data key is wrapped under the active KEK, v1." in said
    assert "ES256" in said and "Ed25519" in said
    keyring = world.platform.settings.keyring_path.read_text()
    secrets = re.findall(r'"(?:key|blind_index_key)": "([^"]+)"', keyring)
    assert secrets and not [s for s in secrets if s in page.text]


# -- the DPO ------------------------------------------------------------------------------------------


def _customer_asks_erasure(world: WebWorld, person: Person) -> uuid.UUID:
    """The customer asks for erasure in the privacy center; returns their customer id."""
    email, _, entity_id = person
    customer = web_client(world)
    sign_in_customer(customer, world, email)
    page = customer.get("/privacy/requests")
    asked = customer.post(
        "/privacy/requests", data={"kind": "erasure", "confirm": "yes", "csrf_token": csrf_of(page.text)}
    )
    assert asked.status_code == 303
    told = words(customer.get("/privacy/requests").text)
    assert "Your erasure request was received" in told, told
    return entity_id


def _row_of(page: str, customer: uuid.UUID) -> tuple[str, str]:
    """(request id, row html) of the customer's request in the queue."""
    for row in table_rows(page, "queue"):
        if str(customer) in row:
            found = re.search(r'id="request-([0-9a-f-]{36})"', row)
            assert found
            return found.group(1), row
    raise AssertionError(f"the customer's request is not in the queue: {words(page)[:3000]}")


def test_dpo_approves_and_carries_out_an_erasure_and_sees_its_signed_receipt(
    world: WebWorld, dpo: FlaskClient, people: list[Person]
) -> None:
    customer = _customer_asks_erasure(world, people[1])
    queue = dpo.get("/console/requests?status=awaiting_approval")
    assert queue.status_code == 200
    request_id, row = _row_of(queue.text, customer)
    assert "awaiting approval" in row and "days" in words(row) and "Approve" in row
    token = csrf_of(queue.text)

    approved = dpo.post(f"/console/requests/{request_id}/approve", data={"csrf_token": token})
    assert approved.status_code == 303 and approved.location.endswith("/console/requests")
    page = dpo.get("/console/requests")
    assert "Request approved" in words(page.text)
    _, row = _row_of(page.text, customer)
    assert "in progress" in row and "Process" in row

    processed = dpo.post(f"/console/requests/{request_id}/process", data={"csrf_token": token})
    assert processed.status_code == 303
    page = dpo.get("/console/requests?status=completed")
    notice = words(page.text)
    assert "Erasure carried out; signed receipt" in notice
    receipt_id = re.search(r"signed receipt ([0-9a-f-]{36})", notice)
    assert receipt_id
    _, row = _row_of(page.text, customer)
    assert "completed" in row

    retention = dpo.get("/console/retention")
    receipts = table_rows(retention.text, "receipts")
    mine = [r for r in receipts if receipt_id.group(1) in r]
    assert mine and "verifies" in mine[0] and "does not verify" not in mine[0]


def test_dpo_rejects_a_request_with_a_reason(world: WebWorld, dpo: FlaskClient, people: list[Person]) -> None:
    customer = _customer_asks_erasure(world, people[2])
    queue = dpo.get("/console/requests")
    request_id, row = _row_of(queue.text, customer)
    assert "Reject" in row
    token = csrf_of(queue.text)
    no_reason = dpo.post(f"/console/requests/{request_id}/reject", data={"csrf_token": token, "reason": ""})
    assert no_reason.status_code == 303
    assert "Choose the reason" in words(dpo.get("/console/requests").text)
    rejected = dpo.post(
        f"/console/requests/{request_id}/reject",
        data={"csrf_token": token, "reason": "legal_claims", "detail": "Case 2024-17 is pending."},
    )
    assert rejected.status_code == 303
    page = dpo.get("/console/requests?status=rejected")
    assert "Request rejected" in words(page.text)
    _, row = _row_of(page.text, customer)
    assert "rejected" in row and "legal claims" in row


def test_overview_counts_open_and_overdue_requests_for_the_dpo(
    world: WebWorld, dpo: FlaskClient, people: list[Person]
) -> None:
    _customer_asks_erasure(world, people[4])
    said = words(dpo.get("/console/").text)
    found = re.search(r"Open (\d+) Overdue (\d+) Awaiting your approval (\d+)", said)
    assert found, said
    assert int(found.group(1)) >= 1 and int(found.group(3)) >= 1 and found.group(2) == "0"


def test_dpo_places_and_releases_a_legal_hold(
    world: WebWorld, dpo: FlaskClient, people: list[Person]
) -> None:
    _, _, entity_id = people[5]
    page = dpo.get("/console/retention")
    assert "Retention policy" in words(page.text) and "Version 1" in words(page.text)
    token = csrf_of(page.text)
    short = dpo.post(
        "/console/retention/holds", data={"csrf_token": token, "customer_id": str(entity_id), "reason": "x"}
    )
    assert short.status_code == 303
    assert "Give 3 to 300 characters" in words(dpo.get("/console/retention").text)
    placed = dpo.post(
        "/console/retention/holds",
        data={"csrf_token": token, "customer_id": str(entity_id), "reason": "Litigation matter 2024-017"},
    )
    assert placed.status_code == 303
    page = dpo.get("/console/retention")
    assert re.search(r"Legal hold placed on \d+ records? of the customer", words(page.text))
    held = [row for row in table_rows(page.text, "holds") if str(entity_id) in row]
    assert held and all("in force" in row and "Litigation matter 2024-017" in row for row in held)
    hold_id = re.search(r"/console/retention/holds/([0-9a-f-]{36})/release", held[0])
    assert hold_id
    released = dpo.post(
        f"/console/retention/holds/{hold_id.group(1)}/release",
        data={"csrf_token": token, "reason": "Matter 2024-017 settled"},
    )
    assert released.status_code == 303
    page = dpo.get("/console/retention?holds=all")
    assert "Legal hold released" in words(page.text)
    row = next(row for row in table_rows(page.text, "holds") if hold_id.group(1) in row or "settled" in row)
    assert "released" in row and "Matter 2024-017 settled" in row
