"""The session page's turn count follows the session live, in headless Chromium: a message sent
(here or from anywhere else) makes it `1 turn`, then `2 turns`, as a reload would show."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-turns-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


@pytest.mark.slow
async def test_the_turn_count_follows_the_messages_sent(api: Api) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    async with headless_chromium() as browser:
        page: Any = await new_page(browser)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        turns = page.locator("#session-turns")
        await expect(turns).to_have_text("0 turns")

        for sent, shown in [("one", "1 turn"), ("two", "2 turns")]:
            await page.fill("#content", sent)
            await page.click("#send button")
            await expect(page.locator(".msg.assistant .text").last).to_have_text(f"echo: {sent}")
            await expect(turns).to_have_text(shown)

        await page.reload()
        await expect(turns).to_have_text("2 turns")
