"""A workspace none of whose agents loads (its one agent.yaml broken), in headless Chromium: the
Sessions page says no agent can start a session and where to see why, instead of a Start button
with nothing to choose that answers `invalid agent name ''`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-no-valid-agent-token"
#: Logs in to the Agents page (the admin API's to show).
ADMIN = "ui-no-valid-agent-admin-token"


@pytest.mark.slow
async def test_the_sessions_page_says_no_agent_can_start_a_session(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    from playwright.async_api import expect

    config = write_workspace(
        tmp_path, fake_llm.url, api_token=TOKEN, admin_token=ADMIN, git=False, agents={"helper": "continue"}
    )
    definition = tmp_path / "data" / "agents" / "helper" / "agent.yaml"
    definition.write_text(definition.read_text().replace("kind: Agent", "kind: Agnet"))
    server = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    try:
        async with headless_chromium() as browser:
            page = await new_page(browser)
            await log_in(page, server.url, ADMIN)

            await expect(page.locator("main")).to_contain_text("No agent can start a session")
            assert await page.locator("button", has_text="Start").count() == 0
            await page.click("main >> text=Agents page")
            await expect(page.locator("section.agent h2", has_text="helper")).to_contain_text("invalid")
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()
