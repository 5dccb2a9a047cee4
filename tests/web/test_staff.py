"""The department view through Flask's test client, signed in through the real OAuth pages: an agent
finds a customer by email (the value never enters a URL), opens them for a purpose and sees masked and
withheld fields with the rule behind each; a purpose the role may not use is refused on the page; a data
steward sees the identity cluster without the profile and merges and splits by hand; a POST without the
session's CSRF token changes nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from cdp.consent.ledger import ConsentLedger
from cdp.db.models import EntityMember, Interaction, SourceRecord
from cdp.identity.service import IdentityService
from tests.web.harness import WebWorld, build_world, csrf_of, sign_in_staff, web_client

_LINKS = re.compile(r'(?:href|action)="([^"]*)"')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    built = build_world(tmp_path_factory.mktemp("staff"))
    try:
        yield built
    finally:
        built.platform.close()


def staff(world: WebWorld, kind: str) -> FlaskClient:
    client = web_client(world)
    sign_in_staff(client, world, "/staff", kind)
    return client


def search(client: FlaskClient, purpose: str, **fields: str) -> TestResponse:
    token = csrf_of(client.get("/staff/").text)
    return client.post("/staff/search", data={"csrf_token": token, "purpose": purpose, **fields})


def identity(world: WebWorld) -> IdentityService:
    return IdentityService(world.platform.db, world.platform.vault)


def customer_with(world: WebWorld, field: str) -> tuple[str, uuid.UUID, uuid.UUID]:
    """(email, record id, entity id) of the first multi-record customer whose golden profile has
    ``field`` and who has a contact history — the demo world is random, and not every customer has a
    date of birth or has been in touch."""
    for index in range(40):
        email, record, entity = world.customer(index)
        with world.platform.db.read() as session:
            contacts = session.execute(
                select(func.count())
                .select_from(Interaction)
                .join(SourceRecord, SourceRecord.subject_id == Interaction.subject_id)
                .join(EntityMember, EntityMember.record_id == SourceRecord.id)
                .where(EntityMember.entity_id == entity)
            ).scalar_one()
        if contacts and field in identity(world).golden(entity).attributes:
            return email, record, entity
    raise LookupError(f"no customer with a {field} and contacts in this world")


def test_signed_out_visitors_get_the_landing_page_and_nothing_else(world: WebWorld) -> None:
    client = web_client(world)
    landing = client.get("/staff/")
    assert landing.status_code == 200 and 'href="/staff/login"' in landing.text
    _, _, entity = world.customer(0)
    opened = client.get(f"/staff/customers/{entity}?purpose=support")
    assert opened.status_code == 303 and opened.location.endswith("/staff/")
    assert client.post("/staff/search", data={"email": "someone@example.com"}).status_code == 403


def test_an_agent_finds_a_customer_by_email_and_the_email_stays_out_of_every_url(world: WebWorld) -> None:
    email, _, entity = world.customer(0)
    client = staff(world, "support")
    home = client.get("/staff/")
    assert "Find a customer" in home.text and 'value="identity_verification"' in home.text
    assert 'value="marketing"' not in home.text  # only the purposes the support role may use
    found = search(client, "support", email=email.upper())
    assert found.status_code == 200 and found.location is None  # rendered in the POST response
    assert f'href="/staff/customers/{entity}?purpose=support"' in found.text
    assert re.search(r"(One customer matches|\d+ customers match)\.", found.text)  # emails can be shared
    for link in _LINKS.findall(found.text):
        assert email.lower() not in link.lower() and quote(email).lower() not in link.lower()


def test_a_search_with_bad_or_mixed_input_is_explained_without_a_redirect(world: WebWorld) -> None:
    client = staff(world, "support")
    mixed = search(client, "support", email="a@example.com", last_name="Laurent")
    assert mixed.status_code == 422 and mixed.location is None
    assert "one kind of detail at a time" in mixed.text
    bad = search(client, "support", email="not-an-address")
    assert bad.status_code == 422 and "not a valid email address" in bad.text
    refused = search(client, "marketing", email="a@example.com")  # a purpose support may not use
    assert refused.status_code == 422 and "Choose why" in refused.text


def test_a_support_agent_sees_masked_and_withheld_fields_with_the_rule_behind_each(world: WebWorld) -> None:
    _, _, entity = customer_with(world, "date_of_birth")
    page = staff(world, "support").get(f"/staff/customers/{entity}?purpose=support")
    assert page.status_code == 200
    dob = re.search(r'<dd data-field="date_of_birth"><span class="masked">([^<]+)</span>', page.text)
    assert dob and dob.group(1).endswith("-**-**")
    assert "Masked: your role&#39;s access policy" in page.text
    assert "roles.support_agent.fields.date_of_birth = masked" in page.text
    assert '<tr data-field="attributes"><td>Extra attributes</td>' in page.text
    assert "roles.support_agent.fields has no attributes (default deny)" in page.text
    assert "Member records" in page.text and "Contact history" in page.text
    assert 'class="timeline"' in page.text
    assert "Identity cluster" not in page.text  # support agents do not hold identity:read


def by_marketing_consent(world: WebWorld, consented: bool) -> uuid.UUID | None:
    """A multi-record customer who did (or did not) consent to the marketing use of their email."""
    ledger = ConsentLedger(world.platform.db)
    for index in range(12):
        _, _, entity = world.customer(index)
        if (ledger.withheld(entity, "marketing", ["email"]) == {}) is consented:
            return entity
    return None


def test_marketing_sees_a_consenting_customers_email_masked_with_its_rule(world: WebWorld) -> None:
    entity = by_marketing_consent(world, True)
    assert entity is not None, "the demo world has customers who consented to marketing"
    page = staff(world, "marketing").get(f"/staff/customers/{entity}?purpose=marketing")
    assert page.status_code == 200
    assert re.search(r'<dd data-field="email"><span class="masked">[^<]*\*\*\*@', page.text)
    assert "roles.marketing_analyst.fields.email = masked" in page.text
    withheld = page.text.split("Not shown to you", 1)[1].split("</table>", 1)[0]
    assert 'data-field="phone"' in withheld and 'data-field="interaction_content"' in withheld
    assert "roles.marketing_analyst.fields has no phone (default deny)" in withheld


def test_a_field_the_customer_did_not_consent_to_is_withheld_and_says_so(world: WebWorld) -> None:
    entity = by_marketing_consent(world, False)
    if entity is None:
        pytest.skip("every customer in this world consented to marketing")
    page = staff(world, "marketing").get(f"/staff/customers/{entity}?purpose=marketing")
    assert page.status_code == 200 and 'data-field="email"><span class="masked">' not in page.text
    withheld = page.text.split("Not shown to you", 1)[1].split("</table>", 1)[0]
    assert '<tr data-field="email">' in withheld
    assert "The customer has not consented to this purpose" in withheld


def test_a_purpose_the_role_may_not_use_is_refused_with_a_message(world: WebWorld) -> None:
    _, _, entity = world.customer(0)
    page = staff(world, "support").get(f"/staff/customers/{entity}?purpose=marketing")
    assert page.status_code == 403
    assert 'role="alert"' in page.text and "may not read for purpose marketing" in page.text
    assert "Golden profile" not in page.text
    missing = staff(world, "support").get(f"/staff/customers/{uuid.uuid4()}?purpose=support")
    assert missing.status_code == 404 and "No such customer" in missing.text


def test_a_compliance_officer_sees_the_cluster_labelled_by_source_beside_the_masked_profile(
    world: WebWorld,
) -> None:
    _, _, entity = world.customer(1)
    page = staff(world, "compliance").get(f"/staff/customers/{entity}?purpose=compliance")
    assert page.status_code == 200
    assert "roles.compliance_officer.fields.email = masked" in page.text
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    members = identity(world).members(entity)
    assert svg.count('<circle class="node"') == len(members)
    assert "record " not in svg  # every node is labelled by its source, known from the profile
    assert "Split" not in page.text and "Merge" not in page.text  # identity:read only


def test_a_steward_sees_the_cluster_without_the_profile_and_splits_and_merges(world: WebWorld) -> None:
    _, record, entity = world.customer(2)
    members = identity(world).members(entity)
    other = next(m for m in members if m != record)
    client = staff(world, "steward")
    page = client.get(f"/staff/customers/{entity}")
    assert page.status_code == 200
    assert "Golden profile" not in page.text and "Contact history" not in page.text
    assert '<svg class="graph"' in page.text and page.text.count('<circle class="node"') == len(members)
    assert f'<td class="mono">{record}</td>' in page.text
    svg = page.text.split('<svg class="graph"', 1)[1].split("</svg>", 1)[0]
    assert "record " not in svg  # nodes are labelled by source system even without profiles:read

    token = csrf_of(page.text)
    split = client.post(
        f"/staff/customers/{entity}/split",
        data={
            "csrf_token": token,
            "record_id": str(record),
            "stay": str(other),
            "reason": "different people",
        },
    )
    assert split.status_code == 303 and split.location.endswith(f"/staff/records/{other}")
    assert identity(world).entity_of(record) != identity(world).entity_of(other)
    landed = client.get(split.location)
    assert landed.status_code == 303
    after = client.get(landed.location)
    assert "Record split off" in after.text and f'<td class="mono">{record}</td>' not in after.text

    merged = client.post(
        "/staff/merges",
        data={
            "csrf_token": token,
            "record_a": str(other),
            "record_b": str(record),
            "reason": "same person after all",
        },
    )
    assert merged.status_code == 303
    joined = identity(world).entity_of(record)
    assert joined == identity(world).entity_of(other) and merged.location.endswith(
        f"/staff/customers/{joined}"
    )
    assert "Merged" in client.get(merged.location).text


def test_the_steward_review_queue_lists_uncertain_pairs_with_their_evidence(world: WebWorld) -> None:
    client = staff(world, "steward")
    page = client.get("/staff/review")
    assert page.status_code == 200 and 'aria-current="page"' in page.text
    queue = identity(world).review_queue(20)
    assert page.text.count('class="card review-item"') == len(queue)
    if queue:
        assert "Evidence:" in page.text and "prior odds that two records match" in page.text
        assert ">Merge</button>" in page.text or ">Keep apart</button>" in page.text
    assert staff(world, "support").get("/staff/review").status_code == 403


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(world: WebWorld) -> None:
    email, record, entity = world.customer(3)
    members = identity(world).members(entity)
    other = next(m for m in members if m != record)
    agent = staff(world, "support")
    refused = agent.post("/staff/search", data={"email": email, "purpose": "support"})
    assert refused.status_code == 403 and entity.hex not in refused.text.replace("-", "")
    steward = staff(world, "steward")
    split = steward.post(
        f"/staff/customers/{entity}/split",
        data={"record_id": str(record), "stay": str(other), "reason": "no token", "csrf_token": "0" * 64},
    )
    assert split.status_code == 403 and identity(world).entity_of(record) == entity
