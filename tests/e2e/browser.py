"""Headless Chromium for the dashboard's tests: the distribution's, driven by Playwright (which
never downloads one here)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The distribution's Chromium; without it the test is skipped, except in CI where it fails."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "no chromium on PATH (Debian: apt-get install chromium); the browser tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Any]:
    """A headless Chromium browser (the test is skipped without Playwright, see `chromium`)."""
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = chromium()
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, **options: Any) -> Any:
    """A page of `browser` (`options` as Playwright's `new_page` takes them) whose waits give up
    after 20 s."""
    page = await browser.new_page(**options)
    page.set_default_timeout(20_000)
    return page


async def log_in(page: Any, server_url: str, token: str) -> None:
    """Log `page` in to the dashboard of the server at `server_url` with `token`."""
    await page.goto(server_url + "/ui/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/ui/")
