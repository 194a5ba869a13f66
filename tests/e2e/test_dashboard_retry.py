"""A failed turn in the dashboard, in headless Chromium: the page offers to run it again, the
button does (the model answers the same message once, nothing typed again), and it goes away."""

from __future__ import annotations

from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, broken_stream, error, text
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-retry-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


@pytest.mark.slow
async def test_a_failed_turn_runs_again_from_its_page(api: Api, fake_llm: FakeLLMServer) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    fake_llm.enqueue(error(404, "The model `gpt-test` does not exist"), text("answered the second time"))
    async with headless_chromium() as browser:
        page: Any = await new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await log_in(page, api.url(""), TOKEN)
        async with page.expect_response(lambda response: "/events?after=" in response.url):
            await page.goto(api.url(f"/ui/sessions/{session_id}"))
        retry = page.locator("#retry")
        await expect(retry).to_be_hidden()

        await page.fill("#content", "what is the plan?")
        await page.click("#send button")
        await expect(page.locator("#transcript")).to_contain_text("does not exist")
        await expect(retry).to_be_visible()
        await retry.locator("button").click()

        await expect(page.locator("#transcript")).to_contain_text("answered the second time")
        await expect(page.locator("#transcript")).to_contain_text("↻ the turn runs again")
        await expect(retry).to_be_hidden()
        users = [m for m in fake_llm.requests[-1].messages if m["role"] == "user"]
        assert [m["content"] for m in users] == ["what is the plan?"]

        # the page loaded anew keeps the transcript and offers nothing more to retry
        await page.reload()
        await expect(page.locator("#transcript")).to_contain_text("↻ the turn runs again")
        await expect(retry).to_be_hidden()
    assert errors == []


@pytest.mark.slow
async def test_a_turn_whose_reply_was_cut_off_is_offered_again_and_answered_whole(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    """The half reply stays on the page, marked cut off (as the log marks it partial); the model
    is asked anew."""
    from playwright.async_api import expect

    session_id = await api.new_session()
    fake_llm.enqueue(broken_stream(2, "one two three four", chunks=4), text("one two three four five"))
    async with headless_chromium() as browser:
        page: Any = await new_page(browser)
        await log_in(page, api.url(""), TOKEN)
        async with page.expect_response(lambda response: "/events?after=" in response.url):
            await page.goto(api.url(f"/ui/sessions/{session_id}"))

        await page.fill("#content", "count to five")
        await page.click("#send button")
        await expect(page.locator("#transcript")).to_contain_text("error")
        await expect(page.locator("#transcript")).to_contain_text("(cut off)")
        retry = page.locator("#retry")
        await expect(retry).to_be_visible()
        await page.reload()
        await expect(page.locator("#transcript")).to_contain_text("(cut off)")
        await expect(retry).to_be_visible()
        await retry.locator("button").click()

        await expect(page.locator("#transcript")).to_contain_text("one two three four five")
        await expect(retry).to_be_hidden()
