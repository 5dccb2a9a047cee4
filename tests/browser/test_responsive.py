"""The staff apps on a phone-sized screen: no page scrolls sideways (wide tables scroll inside their
card), every visible field is labelled, and nothing breaks the CSP. Screenshots: ``test-artifacts/phone/``."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import LiveSite, browser_sign_in_staff, watch_csp
from tests.browser.test_privacy_center import _OVERFLOW, _UNLABELLED
from tests.web.test_staff import customer_with

pytestmark = pytest.mark.browser


def _check(site: LiveSite, page: Page, name: str) -> None:
    assert page.evaluate(_OVERFLOW) <= 0, name
    assert page.evaluate(_UNLABELLED) == [], name
    site.shoot(page, "phone", name)


def test_department_view_and_console_fit_a_phone_screen(browser: Browser, live_site: LiveSite) -> None:
    site = live_site
    email, _, entity = customer_with(site.world, "date_of_birth")
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    violations = watch_csp(page)

    browser_sign_in_staff(site, page, "/staff", "support")
    _check(site, page, "staff-search")
    page.fill("#search-email", email)
    page.click("button:has-text('Search')")
    page.wait_for_selector(f"a[href='/staff/customers/{entity}?purpose=support']")
    _check(site, page, "staff-results")
    page.goto(f"{site.base}/staff/customers/{entity}?purpose=support")
    _check(site, page, "staff-profile")

    browser_sign_in_staff(site, page, "/console", "compliance")
    _check(site, page, "console-overview")
    for path in ("audit", "access", "keys"):
        page.goto(f"{site.base}/console/{path}")
        _check(site, page, f"console-{path}")
    assert violations == []
    context.close()
