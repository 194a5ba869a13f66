"""Reverting a memory edit whose lines were edited again since, in headless Chromium: the revert
is refused and nothing is written, and the page says why as a conflict (409), not as a failure
of the server (500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-revert-refused-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN)
    return result


async def save_memory(page: Any, api: Api, text: str) -> str:
    """Save MEMORY.md of `helper` in the dashboard's editor; the commit it made."""
    await page.goto(api.url("/ui/memory/helper/MEMORY.md"))
    await page.fill("#text", text)
    await page.click("form.editor button")
    await page.wait_for_url("**saved=*")
    return str(await page.locator(".notice a").get_attribute("href"))


@pytest.mark.slow
async def test_a_revert_over_later_edits_of_the_same_lines_is_a_conflict(api: Api, tmp_path: Path) -> None:
    from playwright.async_api import expect

    memory_file = tmp_path / "ws0" / "data" / "memory" / "helper" / "MEMORY.md"
    async with headless_chromium() as browser:
        page = await new_page(browser)
        page.on("dialog", lambda dialog: dialog.accept())
        await log_in(page, api.url(""), TOKEN)
        first = await save_memory(page, api, "- likes tea\n")
        await save_memory(page, api, "- likes coffee\n")

        await page.goto(api.url(first))
        await page.check("input[name=confirm]")
        async with page.expect_navigation() as navigation:
            await page.click("form.revert button")
        assert (await navigation.value).status == 409
        await expect(page.locator("h1")).to_have_text("409 Conflict")
        await expect(page.locator(".problem")).to_contain_text("touch the same lines")
    assert memory_file.read_text() == "- likes coffee\n"
