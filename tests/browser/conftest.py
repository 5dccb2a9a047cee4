"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright; never a downloaded browser.

Without Chromium the browser cases are skipped, and say so — unless ``CI`` is set, where that is a
failure (``scripts/test.sh`` installs it with apt when it can)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from cdp.platform import Platform
from tests.web.harness import PASSWORD, WebWorld, build_world

CHROMIUM = os.environ.get("CDP_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing but CI is set: browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): browser case skipped")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


# -- the web apps on a live server --------------------------------------------------------------------

SCREENSHOTS = Path(
    os.environ.get("CDP_SCREENSHOTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts")
)
"""Where browser journeys save a screenshot of every page they visit (``<app>/<nn>-<page>.png``);
``test-artifacts/`` at the repository root unless ``CDP_SCREENSHOTS_DIR`` says otherwise."""


@dataclass
class LiveSite:
    """A seeded world (:func:`tests.web.harness.build_world`) served on a real socket."""

    base: str
    world: WebWorld
    shots: int = 0

    def shoot(self, page: Page, app: str, name: str) -> Path:
        """Save a full-page screenshot as a test artifact and return its path."""
        self.shots += 1
        path = SCREENSHOTS / app / f"{self.shots:02d}-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """One seeded world per test module, served by werkzeug on 127.0.0.1 with the issuer set to the
    served origin (so the OAuth redirects and ``iss`` checks are the real ones)."""
    tmp_path = tmp_path_factory.mktemp("web")
    world = build_world(tmp_path)
    server = make_server("127.0.0.1", 0, world.app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    platform = world.platform
    served = Platform(replace(platform.settings, issuer=base), platform.db, platform.vault)
    world.app.extensions["cdp"] = served
    world.platform = served
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveSite(base, world)
    finally:
        server.shutdown()
        platform.close()


def watch_csp(page: Page) -> list[str]:
    """Collect Content-Security-Policy violations the page reports on its console."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def browser_sign_in_staff(site: LiveSite, page: Page, prefix: str, kind: str) -> str:
    """Sign in to ``/staff`` or ``/console`` in the browser as a new account of ``kind``."""
    username = site.world.account(kind)
    page.goto(f"{site.base}{prefix}/")
    page.get_by_role("link", name="Sign in", exact=True).click()
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    if username in site.world.totp_secrets:
        page.fill("input[name=totp]", site.world.totp(username))
    page.click("button.primary")
    page.wait_for_url(f"{site.base}{prefix}/")
    return username
