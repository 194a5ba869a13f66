"""An agents folder holding a folder whose name no agent may have (`helper.old`, a copy kept
aside), in headless Chromium: the Agents page lists it as invalid with its problem, as
`duragent agent list` does, and the Memory page lists the other agents' memory; neither page is
a 400 about the name."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-odd-folder-token"
#: Logs in to the Agents page (the admin API's to show).
ADMIN = "ui-odd-folder-admin-token"


@pytest.mark.slow
async def test_agents_and_memory_pages_list_around_a_folder_no_agent_may_be_named(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    from playwright.async_api import expect

    config = write_workspace(tmp_path, fake_llm.url, api_token=TOKEN, admin_token=ADMIN, git=False)
    agents = tmp_path / "data" / "agents"
    shutil.copytree(agents / "helper", agents / "helper.old")
    server = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    try:
        async with headless_chromium() as browser:
            page = await new_page(browser)
            await log_in(page, server.url, ADMIN)

            answer = await page.goto(server.url + "/ui/agents")
            assert answer is not None
            assert answer.status == 200, await page.inner_text("main")
            odd = page.locator("section.agent", has_text="helper.old")
            await expect(odd.locator("h2")).to_contain_text("invalid")
            await expect(odd.locator(".problem")).to_contain_text("helper.old")
            await expect(page.locator("section.agent h2", has_text="pauser")).to_contain_text("valid")

            answer = await page.goto(server.url + "/ui/memory")
            assert answer is not None
            assert answer.status == 200, await page.inner_text("main")
            await expect(page.locator("a[href='/ui/memory/helper/MEMORY.md']")).to_be_visible()
            await expect(page.locator("main")).not_to_contain_text("helper.old")
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()
