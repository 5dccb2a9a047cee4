"""The compliance console in real Chromium: a compliance officer signs in (password and TOTP), sees the
audit chain verified, verifies it in full, searches the log, reads the access report and the keys, and is
told the request queue is not for their role; a DPO approves and carries out an erasure from the queue
and places a legal hold. Every page is screenshotted and none violates the CSP (there is no script)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from cdp.audit import AuditService
from tests.api.tokens import customer_token
from tests.browser.conftest import LiveSite, browser_sign_in_staff, watch_csp
from tests.web.test_console import Person, distinct_customers

pytestmark = pytest.mark.browser


def _erasure_request(site: LiveSite, person: Person) -> uuid.UUID:
    """A customer asks for erasure through the API (the privacy center's own call); it waits for the DPO."""
    world = site.world
    _, record_id, entity_id = person
    answer = world.app.test_client().post(
        "/v1/me/requests",
        json={"kind": "erasure"},
        headers={"Authorization": f"Bearer {customer_token(world.platform, record_id)}"},
    )
    assert answer.status_code == 202, answer.get_json()
    return entity_id


@pytest.fixture(scope="module")
def people(live_site: LiveSite) -> list[Person]:
    """Distinct customers, taken before anyone is erased: one read by support, one erased, one held."""
    return distinct_customers(live_site.world)


@pytest.fixture(scope="module")
def site(live_site: LiveSite, people: list[Person]) -> Iterator[LiveSite]:
    live_site.world.support_reads(people[0][2])
    platform = live_site.world.platform
    AuditService(platform.db, platform.vault, platform.settings.issuer).seal_and_checkpoint()
    yield live_site


def _main(page: Page) -> str:
    """The text of the page's main region, once the page (after any redirect) has loaded."""
    page.wait_for_load_state()
    return page.inner_text("main")


def _nav(page: Page, label: str) -> None:
    page.click(f"header nav >> text={label}")
    page.wait_for_load_state()
    assert page.get_attribute(f"header nav >> text={label}", "aria-current") == "page"


def test_compliance_officer_verifies_the_chain_searches_the_log_and_reads_the_reports(
    browser: Browser, site: LiveSite
) -> None:
    page = browser.new_page()
    violations = watch_csp(page)
    browser_sign_in_staff(site, page, "/console", "compliance")

    assert page.is_visible("[data-verdict=verified]")
    assert "Chain verified" in (page.text_content(".chain .verdict") or "")
    assert page.is_visible("text=Latest checkpoint's signature verifies")
    site.shoot(page, "console", "overview")

    page.click("text=Verify the chain now")
    page.wait_for_load_state()
    assert page.url == f"{site.base}/console/", page.text_content("main")
    notice = _main(page)
    assert re.search(r"Chain verified: [\d,]+ entries re-hashed and 1 signed checkpoints checked", notice), (
        notice
    )
    assert page.is_visible("text=Full verification (every entry and checkpoint)")
    assert page.get_attribute("[data-verdict]", "data-verdict") == "verified"
    site.shoot(page, "console", "verified")

    _nav(page, "Audit log")
    page.select_option("#f-action", "profile.read")
    page.select_option("#f-outcome", "denied")
    page.click("form.search button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/audit\?.*action=profile\.read.*"))
    rows = page.locator("table.entries tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):
        assert "profile.read" in (rows.nth(i).text_content() or "")
        assert "denied" in (rows.nth(i).text_content() or "")
    site.shoot(page, "console", "audit-search")

    _nav(page, "Access report")
    page.select_option("#period", "7")
    page.click("text=Show report")
    assert page.is_visible("h2:has-text('support')")
    assert page.locator("tr:has-text('support agent')").count() >= 2
    site.shoot(page, "console", "access-report")

    _nav(page, "Keys")
    assert page.is_visible("text=Every data key is wrapped under the active KEK, v1.")
    assert page.locator("table >> text=ES256").count() == 1
    site.shoot(page, "console", "keys")

    _nav(page, "Requests")
    assert "Not available to your role" in (page.text_content(".unavailable") or "")
    site.shoot(page, "console", "requests-not-for-compliance")

    assert violations == []
    page.close()


def test_dpo_works_the_request_queue_and_places_a_legal_hold(
    browser: Browser, site: LiveSite, people: list[Person]
) -> None:
    customer = _erasure_request(site, people[1])
    _, _, held = people[2]
    page = browser.new_page()
    violations = watch_csp(page)
    browser_sign_in_staff(site, page, "/console", "dpo")
    assert page.is_visible("[data-verdict=verified]")
    assert page.is_visible("text=Awaiting your approval")

    _nav(page, "Requests")
    row = page.locator(f"tr:has-text('{customer}')")
    assert "awaiting approval" in (row.text_content() or "")
    site.shoot(page, "console", "requests")
    row.locator("button:has-text('Approve')").click()
    assert "Request approved" in _main(page), _main(page)
    row = page.locator(f"tr:has-text('{customer}')")
    assert "in progress" in (row.text_content() or "")
    row.locator("button:has-text('Process')").click()
    notice = _main(page)
    assert "Erasure carried out; signed receipt" in notice, notice
    receipt = re.search(r"receipt ([0-9a-f-]{36})", notice)
    assert receipt
    site.shoot(page, "console", "request-processed")

    _nav(page, "Retention")
    assert "verifies" in (
        page.locator(f"table.receipts tr:has-text('{receipt.group(1)}')").text_content() or ""
    )
    page.fill("#hold-customer", str(held))
    page.fill("#hold-reason", "Litigation matter 2024-017")
    page.click("text=Place hold")
    assert "Legal hold placed" in _main(page), _main(page)
    assert page.locator(f"table.holds tr:has-text('{held}')").count() >= 1
    site.shoot(page, "console", "retention")

    assert violations == []
    page.close()
