"""Headless Chromium for the web chat page's tests: Debian's `chromium` package driven by
Playwright (no browser download: `playwright install` is never run).

A missing browser FAILS the test with what to install: a skipped browser test in CI
looks exactly like a passing one. Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            "(apt-get install chromium; `make test` does it when run as root)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_of(browser: Browser, url: str) -> Iterator[Page]:
    """A page at `url` that fails the test on any script error it reports."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
    page.set_default_timeout(20_000)
    page.goto(url)
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"the page reported errors: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/ and print where it is."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
