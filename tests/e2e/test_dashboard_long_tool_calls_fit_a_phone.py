"""A tool call with a long command, on a phone (375 px wide), in headless Chromium: its line in
the transcript and the approval asking for it wrap inside the screen, whether the page's script
added them live or the server rendered them when the page loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-long-call-token"
PHONE = {"width": 375, "height": 740}
#: A command without a space for far longer than the screen (not allowed: the agent asks first).
LONG_COMMAND = "cat " + "/a/very/long/path" * 30


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


@pytest.fixture
async def phone() -> AsyncIterator[Any]:
    """A page of headless Chromium as wide as a phone's screen."""
    async with headless_chromium() as browser:
        yield await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)


async def page_width(page: Any) -> int:
    return int(await page.evaluate("() => document.documentElement.scrollWidth"))


@pytest.mark.slow
async def test_a_long_tool_call_and_its_approval_wrap_on_a_phone(
    api: Api, fake_llm: FakeLLMServer, phone: Any
) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(tool_calls([("bash", {"command": LONG_COMMAND})]), text("done"))
    await log_in(phone, api.url(""), TOKEN)
    await phone.goto(api.url(f"/ui/sessions/{session_id}"))
    await phone.fill("#content", "read it")
    await phone.click("#send button")
    await phone.locator("#approvals form.approval").wait_for()
    await phone.locator("#transcript li.tool.asked").wait_for()
    live = await page_width(phone)

    await phone.reload()
    await phone.locator("#approvals form.approval").wait_for()
    rendered = await page_width(phone)

    assert (live, rendered) == (PHONE["width"], PHONE["width"])
