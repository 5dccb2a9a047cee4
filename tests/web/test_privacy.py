"""The privacy center through Flask's test client: a customer sees their own data in the clear, withdraws a
consent (the ledger says so), sees who accessed their profile, takes a copy of their data (downloadable
once, the link never shown to the browser) and erases it (receipt shown, session over)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cdp.consent.ledger import ConsentLedger
from cdp.db.models import EntityMember, SourceRecord, WebSession
from cdp.platform import Platform
from cdp.sources.records import RecordRepository
from tests.web.harness import WebWorld, csrf_of, sign_in_customer, web_client


def _signed_in(world: WebWorld, index: int) -> tuple[FlaskClient, str]:
    """A signed-in client and a last name the customer's records hold."""
    email, _, entity_id = world.customer(index)
    client = web_client(world)
    sign_in_customer(client, world, email)
    with world.platform.db.read() as session:
        members = session.execute(
            select(EntityMember.record_id).where(EntityMember.entity_id == entity_id)
        ).scalars()
        records = RecordRepository(session, world.platform.vault)
        data = [records.get(member).data for member in members]
    names = [d.last_name for d in data if d.last_name]
    names += [d.full_name.replace(",", " ").split()[-1] for d in data if d.full_name and not d.last_name]
    return client, names[0]


def test_your_data_shows_the_customers_own_details_with_their_sources(world: WebWorld) -> None:
    client, last_name = _signed_in(world, 0)
    page = client.get("/privacy/")
    assert page.status_code == 200
    assert last_name.casefold() in page.text.casefold() and "Who holds records about you" in page.text
    assert "from " in page.text  # provenance of each detail
    history = client.get("/privacy/history")
    assert history.status_code == 200 and 'class="timeline"' in history.text


def test_withdrawing_a_consent_takes_effect_in_the_ledger(world: WebWorld) -> None:
    client, _ = _signed_in(world, 0)
    page = client.get("/privacy/consents")
    form = {"purpose": "profiling", "channel": "any", "csrf_token": csrf_of(page.text)}
    granted = client.post("/privacy/consents", data={**form, "action": "grant"})
    assert granted.status_code == 303
    page = client.get("/privacy/consents")
    assert "Consent granted" in page.text
    withdrawn = client.post("/privacy/consents", data={**form, "action": "withdraw"})
    assert withdrawn.status_code == 303
    page = client.get("/privacy/consents")
    assert "Consent withdrawn" in page.text
    row = page.text.split('data-purpose="profiling"', 1)[1].split("</tr>", 1)[0]
    assert "withdrawn" in row and 'value="grant"' in row
    _, _, entity_id = world.customer(0)
    assert not ConsentLedger(world.platform.db).state(entity_id)["profiling"].holds


def test_an_unknown_consent_action_changes_nothing(world: WebWorld) -> None:
    client, _ = _signed_in(world, 0)
    page = client.get("/privacy/consents")
    response = client.post(
        "/privacy/consents",
        data={"purpose": "profiling", "channel": "any", "action": "delete", "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 303
    assert "Choose to grant or to withdraw" in client.get("/privacy/consents").text


def test_a_staff_read_appears_in_the_customers_access_log(world: WebWorld) -> None:
    _, _, entity_id = world.customer(0)
    world.support_reads(entity_id)
    client, _ = _signed_in(world, 0)
    page = client.get("/privacy/access")
    assert page.status_code == 200
    assert "support agent" in page.text and '"Purpose">support</td>' in page.text
    assert '"Purpose">dsr</td>' in page.text and "allowed" in page.text


def test_a_copy_is_downloaded_once_and_its_link_never_reaches_the_browser(world: WebWorld) -> None:
    client, last_name = _signed_in(world, 2)
    page = client.get("/privacy/requests")
    asked = client.post("/privacy/requests", data={"kind": "access", "csrf_token": csrf_of(page.text)})
    assert asked.status_code == 303 and asked.location.endswith("/privacy/requests")
    page = client.get("/privacy/requests")
    assert "Your copy is ready" in page.text and "/v1/dsr/downloads/" not in page.text
    download = client.post("/privacy/requests/download", data={"csrf_token": csrf_of(page.text)})
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        names = archive.namelist()
        assert "manifest.json" in names
        everything = " ".join(archive.read(name).decode("utf-8", "replace") for name in names)
    assert last_name in everything
    json.loads(zipfile.ZipFile(io.BytesIO(download.data)).read("manifest.json"))
    again = client.post("/privacy/requests/download", data={"csrf_token": csrf_of(page.text)})
    assert again.status_code == 303
    page = client.get("/privacy/requests")
    assert "no download waiting" in page.text and "completed" in page.text


def test_erasure_needs_confirmation_and_by_default_waits_for_the_dpo(world: WebWorld) -> None:
    client, _ = _signed_in(world, 3)
    page = client.get("/privacy/requests")
    token = csrf_of(page.text)
    unconfirmed = client.post("/privacy/requests", data={"kind": "erasure", "csrf_token": token})
    assert unconfirmed.status_code == 303
    page = client.get("/privacy/requests")
    assert "tick the box" in page.text and "awaiting approval" not in page.text
    asked = client.post("/privacy/requests", data={"kind": "erasure", "confirm": "yes", "csrf_token": token})
    assert asked.status_code == 303
    page = client.get("/privacy/requests")
    assert "A data protection officer approves it first" in page.text
    assert "awaiting approval" in page.text and "Erasure" in page.text


@pytest.fixture
def erasure_without_approval(world: WebWorld) -> Iterator[None]:
    platform = world.app.extensions["cdp"]
    settings = replace(platform.settings, dsr_erasure_requires_approval=False)
    world.app.extensions["cdp"] = Platform(settings, platform.db, platform.vault)
    try:
        yield
    finally:
        world.app.extensions["cdp"] = platform


@pytest.mark.usefixtures("erasure_without_approval")
def test_an_erasure_carried_out_at_once_shows_its_receipt_and_ends_the_session(world: WebWorld) -> None:
    _, _, entity_id = world.customer(4)
    client, last_name = _signed_in(world, 4)
    other_device, _ = _signed_in(world, 4)
    with world.platform.db.read() as session:
        record_ids = list(
            session.execute(
                select(EntityMember.record_id).where(EntityMember.entity_id == entity_id)
            ).scalars()
        )
    page = client.get("/privacy/requests")
    erased = client.post(
        "/privacy/requests", data={"kind": "erasure", "confirm": "yes", "csrf_token": csrf_of(page.text)}
    )
    assert erased.status_code == 200 and "Your data was erased" in erased.text
    assert "Ed25519" in erased.text and "verifies" in erased.text
    assert last_name.casefold() not in erased.text.casefold()
    assert "__Host-cdp-privacy=;" in erased.headers["Set-Cookie"]
    assert client.get("/privacy/requests").status_code == 303  # signed out: back to the front page
    assert other_device.get("/privacy/").text.count('href="/privacy/login"') == 1
    with world.platform.db.read() as session:
        assert all(session.get(SourceRecord, record_id) is None for record_id in record_ids)
        principals = [f"customer:{record_id}" for record_id in record_ids]
        assert session.execute(select(WebSession).where(WebSession.principal.in_(principals))).first() is None
