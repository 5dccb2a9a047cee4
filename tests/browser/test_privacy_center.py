"""The customer's journey through the privacy center in real Chromium: sign in with an emailed one-time code,
see their data, withdraw a consent, see who accessed their profile, request a copy and download it, and
request erasure. Every page is screenshotted (``test-artifacts/privacy/``) and none violates the CSP."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import LiveSite, watch_csp

pytestmark = pytest.mark.browser


def test_customer_signs_in_withdraws_a_consent_downloads_a_copy_and_asks_for_erasure(
    browser: Browser, live_site: LiveSite, tmp_path: Path
) -> None:
    site = live_site
    email, _, _ = site.world.customer(0)
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    violations = watch_csp(page)

    page.goto(f"{site.base}/privacy/")
    site.shoot(page, "privacy", "front-page")
    page.get_by_role("link", name="Sign in", exact=True).click()
    page.fill("input[name=email]", email)
    site.shoot(page, "privacy", "sign-in-email")
    page.click("button.primary")
    page.wait_for_selector("input[name=code]")
    site.shoot(page, "privacy", "sign-in-code")
    page.fill("input[name=code]", site.world.latest_code())
    page.click("button.primary")
    page.wait_for_url(f"{site.base}/privacy/")
    assert "code=" not in page.url
    expect(page.locator("h1")).to_have_text("Your data")
    expect(page.locator("dl.fields dt").nth(3)).to_be_visible()
    site.shoot(page, "privacy", "your-data")

    page.click("nav >> text=Contact history")
    expect(page.locator("h1")).to_have_text("Contact history")
    expect(page.locator("ol.timeline li").first).to_be_visible()
    site.shoot(page, "privacy", "contact-history")

    page.click("nav >> text=Consents")
    expect(page.locator("h1")).to_have_text("Consents")
    row = page.locator('tr[data-purpose="marketing_email"][data-channel="email"]')
    if row.locator("button[value=grant]").count():
        row.locator("button[value=grant]").click()
        page.wait_for_selector(".notice.ok")
    row.locator("button[value=withdraw]").click()
    assert "Consent withdrawn" in (page.text_content(".notice.ok") or "")
    assert "withdrawn" in (row.locator(".badge").text_content() or "")
    site.shoot(page, "privacy", "consent-withdrawn")

    page.click("nav >> text=Who saw your data")
    expect(page.locator("h1")).to_have_text("Who saw your data")
    site.shoot(page, "privacy", "access-log")

    page.click("nav >> text=Copy or erase")
    expect(page.locator("h1")).to_have_text("Copy or erase your data")
    page.click("text=Request a copy of my data")
    page.wait_for_selector("text=Your copy is ready")
    site.shoot(page, "privacy", "copy-ready")
    with page.expect_download() as pending:
        page.click("text=Download your copy")
    download = pending.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
        assert "manifest.json" in archive.namelist()
    page.reload()
    assert page.locator("text=Your copy is ready").count() == 0

    # Without the confirmation box ticked the browser refuses to submit the form (it is required).
    page.get_by_role("button", name="Erase my data").click()
    assert page.locator("h1").text_content() == "Copy or erase your data"
    page.check("#confirm-erasure")
    page.get_by_role("button", name="Erase my data").click()
    page.wait_for_selector(".notice.ok")
    assert "approves it first" in (page.text_content(".notice.ok") or "")
    assert page.locator("text=awaiting approval").count() >= 1
    site.shoot(page, "privacy", "erasure-requested")

    page.click("text=Sign out")
    page.wait_for_selector("text=You are signed out.")
    site.shoot(page, "privacy", "signed-out")
    page.goto(f"{site.base}/privacy/consents")
    assert page.url == f"{site.base}/privacy/"
    assert violations == []
    context.close()


_UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, textarea'))
    .filter(e => e.type !== 'hidden' && !e.labels.length && !e.getAttribute('aria-label'))
    .map(e => e.name)"""
_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_privacy_pages_fit_a_phone_screen_and_label_every_field(
    browser: Browser, live_site: LiveSite
) -> None:
    """Responsive and accessible: at 375 px wide no page scrolls sideways (wide tables scroll inside
    their card), every visible field has a label, and a keyboard user reaches the content first."""
    site = live_site
    email, _, _ = site.world.customer(1)
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    violations = watch_csp(page)
    page.goto(f"{site.base}/privacy/")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.get_by_role("link", name="Sign in", exact=True).click()
    page.fill("input[name=email]", email)
    page.click("button.primary")
    page.fill("input[name=code]", site.world.latest_code())
    page.click("button.primary")
    page.wait_for_url(f"{site.base}/privacy/")
    for path, name in [
        ("/privacy/", "phone-your-data"),
        ("/privacy/consents", "phone-consents"),
        ("/privacy/requests", "phone-requests"),
    ]:
        page.goto(f"{site.base}{path}")
        assert page.evaluate(_OVERFLOW) <= 0, path
        assert page.evaluate(_UNLABELLED) == [], path
        site.shoot(page, "privacy", name)
    assert violations == []
    context.close()
