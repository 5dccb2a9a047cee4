"""The department view in Chromium: a support agent signs in, finds a customer by email, opens them for
support and sees masked fields with the reason for each, and the contact history; a data steward opens
the review queue and a customer's identity cluster, drawn as an SVG graph with its split and merge
actions. Every page is screenshotted and none violates the CSP (no script, no inline style)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from cdp.identity.service import IdentityService
from tests.browser.conftest import LiveSite, browser_sign_in_staff, watch_csp
from tests.web.test_staff import customer_with

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(live_site: LiveSite) -> LiveSite:
    return live_site


def test_an_agent_finds_a_customer_and_sees_masked_fields_with_their_reasons(
    browser: Browser, site: LiveSite
) -> None:
    email, _, entity = customer_with(site.world, "date_of_birth")
    page = browser.new_page()
    violations = watch_csp(page)
    browser_sign_in_staff(site, page, "/staff", "support")
    assert page.locator("h1").text_content() == "Find a customer"
    site.shoot(page, "staff", "search")

    page.fill("#search-email", email)
    page.select_option("#search-purpose", "support")
    page.click("button:has-text('Search')")
    page.wait_for_selector("#results-heading")
    assert page.url == f"{site.base}/staff/search" and email not in page.url
    site.shoot(page, "staff", "results")

    page.click(f"a[href='/staff/customers/{entity}?purpose=support']")
    page.wait_for_selector("#profile-heading")
    assert page.url == f"{site.base}/staff/customers/{entity}?purpose=support"
    masked = page.locator("dd[data-field=date_of_birth] .masked")
    assert masked.text_content().endswith("-**-**")  # type: ignore[union-attr]
    why = page.locator("dd[data-field=date_of_birth] .why").first.text_content() or ""
    assert "Masked: your role's access policy" in why and "date_of_birth = masked" in why
    withheld = page.locator("table.withheld tr[data-field=attributes]").text_content() or ""
    assert "Your role's access policy" in withheld
    assert page.locator("ol.timeline li").count() > 0
    site.shoot(page, "staff", "profile")

    page.goto(f"{site.base}/staff/customers/{entity}?purpose=marketing")
    assert "may not read for purpose marketing" in (page.locator("[role=alert]").text_content() or "")
    site.shoot(page, "staff", "purpose-refused")
    assert violations == []
    page.close()


def test_a_steward_reviews_uncertain_pairs_and_sees_the_cluster_graph(
    browser: Browser, site: LiveSite
) -> None:
    _, record, entity = site.world.customer(1)
    members = IdentityService(site.world.platform.db, site.world.platform.vault).members(entity)
    page = browser.new_page()
    violations = watch_csp(page)
    browser_sign_in_staff(site, page, "/staff", "steward")
    site.shoot(page, "staff", "steward-start")

    page.click("nav a:has-text('Review queue')")
    page.wait_for_selector("h1:has-text('Review queue')")
    if page.locator("details").count():
        page.locator("details summary").first.click()  # no script: the browser opens <details> itself
        assert page.locator("details[open] table").first.is_visible()
    site.shoot(page, "staff", "review-queue")

    page.goto(f"{site.base}/staff/records/{record}")
    page.wait_for_selector("svg.graph")
    assert page.url == f"{site.base}/staff/customers/{entity}"
    assert page.locator("svg.graph circle.node").count() == len(members)
    assert page.locator("svg.graph").get_attribute("role") == "img"
    assert page.locator("table.members button:has-text('off')").count() == len(members)
    assert page.locator("#profile-heading").count() == 0  # a steward never sees the profile
    site.shoot(page, "staff", "cluster")
    assert violations == []
    page.close()
