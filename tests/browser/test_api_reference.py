"""The API reference at /docs/ in Chromium: Swagger UI renders every operation from /openapi.json with
no CSP violation and no script from anywhere but this server; "Authorize" signs a support agent in
through the real authorization server in a popup (authorization code + PKCE), and "Try it out" then
reads a customer with that person's token — and the read lands in the audit log under their name."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request
from sqlalchemy import select

from cdp.access.users import UserRepository
from cdp.db.models import AuditEntry
from tests.browser.conftest import LiveSite, watch_csp
from tests.web.harness import PASSWORD
from web.apps import DOCS

pytestmark = pytest.mark.browser


def test_the_reference_lists_every_operation_and_loads_nothing_from_elsewhere(
    browser: Browser, live_site: LiveSite
) -> None:
    page = browser.new_page()
    violations = watch_csp(page)
    origins: set[str] = set()

    def remember(request: Request) -> None:
        if not request.url.startswith(("data:", "blob:")):
            origins.add(f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}")

    page.on("request", remember)
    page.goto(f"{live_site.base}/docs/")
    page.wait_for_selector(".opblock")
    spec = json.loads(live_site.world.app.test_client().get("/openapi.json").get_data(as_text=True))
    operations = sum(
        1 for item in spec["paths"].values() for method in item if method in {"get", "post", "put", "delete"}
    )
    # Swagger UI collapses nothing by default: one block per operation of the spec.
    assert page.locator(".opblock").count() == operations
    assert page.locator(".opblock-summary-path[data-path='/v1/customers/{customer_id}']").count() >= 1
    live_site.shoot(page, "docs", "reference")
    assert violations == []
    assert origins == {live_site.base}
    page.close()


def test_authorize_signs_a_person_in_and_try_it_out_reads_with_their_token(
    browser: Browser, live_site: LiveSite
) -> None:
    world = live_site.world
    _, _, entity = world.customer(0)
    username = world.account("support")
    page = browser.new_page()
    violations = watch_csp(page)
    page.goto(f"{live_site.base}/docs/#/profiles")
    page.wait_for_selector(".opblock")

    page.click("button.authorize")
    dialog = page.locator(".auth-container").filter(has_text="authorizationCode")
    # Every scope of the reference's client is ticked (initOAuth); the server grants only the person's own.
    assert dialog.locator("input[type=checkbox]:checked").count() == len(DOCS.scopes)
    live_site.shoot(page, "docs", "authorize-dialog")
    with page.expect_popup() as opened:
        dialog.locator("button.authorize").click()
    popup = opened.value
    popup.wait_for_selector("input[name=username]")
    popup.fill("input[name=username]", username)
    popup.fill("input[name=password]", PASSWORD)
    if username in world.totp_secrets:
        popup.fill("input[name=totp]", world.totp(username))
    popup.click("button.primary")
    popup.wait_for_event("close")
    # Swagger UI redeemed the code (PKCE) and holds a token: the flow now offers to log out.
    dialog.get_by_role("button", name="Remove authorization").wait_for(
        timeout=10_000
    )  # Swagger UI redeemed the code: it holds a token
    live_site.shoot(page, "docs", "authorized")
    page.locator(".btn-done").first.click()

    block = page.locator(".opblock-get").filter(
        has=page.locator(".opblock-summary-path[data-path='/v1/customers/{customer_id}']")
    )
    block.first.locator(".opblock-summary").click()
    block.first.locator("button.try-out__btn").click()
    block.first.locator("tr[data-param-name=customer_id] input").fill(str(entity))
    block.first.locator("tr[data-param-name=purpose] select").select_option("support")
    with page.expect_response(lambda r: f"/v1/customers/{entity}" in r.url) as answered:
        block.first.locator("button.execute").click()
    assert answered.value.status == 200
    assert answered.value.request.headers["authorization"].startswith("Bearer ")
    block.first.locator(".live-responses-table .response-col_status").first.wait_for()
    live_site.shoot(page, "docs", "tried")

    with world.platform.db.read() as session:
        user = UserRepository(session, world.platform.vault, world.platform.settings).by_username(username)
        assert user is not None
        reads = session.execute(
            select(AuditEntry.purpose, AuditEntry.outcome).where(
                AuditEntry.action == "profile.read", AuditEntry.actor == f"user:{user.id}"
            )
        ).all()
    assert [tuple(read) for read in reads] == [("support", "success")]
    assert violations == []
    page.close()
