"""A session whose turn waits for a tool call's approval reads as awaiting approval, with the
approval's buttons and no Resume, on its page (opened before or after the call was asked) and in
the sessions list; in headless Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_agent_cannot_escape_its_policy import send

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-awaiting-token"
expect = pytest.importorskip("playwright.async_api").expect


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def shows_awaiting_approval(page: Any) -> None:
    """The page says the session awaits an approval, offers its buttons and no Resume."""
    await expect(page.locator("#session-status")).to_have_text("awaiting approval")
    await expect(page.locator("#approvals form.approval button[value=allow_once]")).to_be_visible()
    await expect(page.locator("#resume")).to_be_hidden()
    await expect(page.locator("#cancel")).to_be_hidden()


@pytest.mark.slow
async def test_a_session_awaiting_approval_is_not_shown_as_paused(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("removed"))
    session_id = await api.new_session()
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        await log_in(page, api.url(""), TOKEN)
        async with page.expect_response(lambda response: "/events?after=" in response.url):
            await page.goto(api.url(f"/ui/sessions/{session_id}"))
        status, _ = await send(api, session_id)
        assert status == 202
        await shows_awaiting_approval(page)  # live

        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        await shows_awaiting_approval(page)  # as the page opens
        # paused for another reason meanwhile (as max_background_runtime pauses a turn): the
        # answer still takes the turn up, Resume would not
        live = api.server.app[STATE].sessions.live[session_id]
        reason = "ran unattended for 1s (max_background_runtime)"
        await live.log.append("status_change", {"from": "paused", "to": "paused", "reason": reason})
        await live.log.append("notification", {"message": "after the pause"})  # (seen: the pause was)
        await expect(page.locator("#transcript")).to_contain_text("after the pause")
        await shows_awaiting_approval(page)
        await page.screenshot(path="/tmp/review_dash/awaiting-approval.png")

        await page.goto(api.url("/ui/sessions"))
        row = page.locator("tr", has_text=session_id)
        await expect(row.locator(".state")).to_have_text("awaiting approval")

        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        await page.locator("#approvals button[value=allow_once]").click()
        await expect(page.locator(".msg.assistant .text").last).to_have_text("removed")
        await expect(page.locator("#session-status")).to_have_text("active")
