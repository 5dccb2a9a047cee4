"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright; never a downloaded browser.

Without Chromium the browser cases are skipped, and say so — unless ``CI`` is set, where that is a
failure (``scripts/test.sh`` installs it with apt when it can)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

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
