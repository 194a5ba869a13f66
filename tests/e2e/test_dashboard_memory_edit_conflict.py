"""Saving a memory file that changed since its editor opened (the agent remembered something,
`duragent memory edit` in a terminal, another tab), in headless Chromium: nothing is overwritten;
the page says so and shows the file's new text next to the person's, and a second save, made
knowing it, goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-memory-conflict-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN)
    return result


@pytest.fixture
async def page(api: Api) -> AsyncIterator[Any]:
    """A logged-in page of headless Chromium."""
    async with headless_chromium() as browser:
        opened = await new_page(browser)
        await log_in(opened, api.url(""), TOKEN)
        yield opened


@pytest.mark.slow
async def test_a_save_over_a_file_changed_since_the_editor_opened_overwrites_nothing(
    api: Api, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    memory_file = tmp_path / "ws0" / "data" / "memory" / "helper" / "MEMORY.md"
    memory_file.parent.mkdir(parents=True, exist_ok=True)
    memory_file.write_text("# Helper\n\n- likes tea\n")
    await page.goto(api.url("/ui/memory/helper/MEMORY.md"))
    await expect(page.locator("#text")).to_have_value("# Helper\n\n- likes tea\n")

    # meanwhile the agent remembers something
    memory_file.write_text("# Helper\n\n- likes tea\n- birthday: 3 May\n")
    await page.fill("#text", "# Helper\n\n- likes green tea\n")
    await page.click("form.editor button")

    await expect(page.locator(".problem")).to_contain_text("MEMORY.md changed since you opened it")
    assert memory_file.read_text() == "# Helper\n\n- likes tea\n- birthday: 3 May\n"
    await expect(page.locator("#text")).to_have_value("# Helper\n\n- likes green tea\n")
    await expect(page.locator("#current")).to_have_text("# Helper\n\n- likes tea\n- birthday: 3 May\n")

    # merged by the person, it saves
    await page.fill("#text", "# Helper\n\n- likes green tea\n- birthday: 3 May\n")
    await page.click("form.editor button")
    await expect(page.locator(".notice")).to_contain_text("Saved and committed as")
    assert memory_file.read_text() == "# Helper\n\n- likes green tea\n- birthday: 3 May\n"
