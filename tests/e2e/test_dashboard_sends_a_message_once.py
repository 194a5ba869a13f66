"""A message sent from a session page goes once, however often Ctrl+Enter (or Send) is pressed
while it is on its way, in headless Chromium: each extra copy would be a turn of its own,
paid for and answered again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, echo, text, tool_calls
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-send-once-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def user_messages(api: Api, session_id: str) -> list[str]:
    status, body = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
    assert status == 200, body
    return [m["content"] for m in body["messages"] if m["type"] == "user_message"]


async def held_messages(page: Any) -> tuple[asyncio.Event, list[str]]:
    """The page's message posts held on their way until the event is set; their bodies, as sent."""
    release = asyncio.Event()
    posts: list[str] = []

    async def hold(route: Any) -> None:
        posts.append(route.request.post_data or "")
        await release.wait()
        await route.continue_()

    await page.route("**/messages", hold)
    return release, posts


@pytest.mark.slow
async def test_pressing_ctrl_enter_again_while_sending_sends_the_message_once(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    fake_llm.default = echo()  # each turn answers with its (last) message
    async with headless_chromium() as browser:
        expect = pytest.importorskip("playwright.async_api").expect
        page = await new_page(browser)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))

        # the posts are held on their way (a slow network, a busy server) while the keys are pressed
        release, posts = await held_messages(page)
        await page.fill("#content", "only once")
        await page.focus("#content")
        for _ in range(3):
            await page.keyboard.press("Control+Enter")
        await page.click("#send button", force=True)
        await until(lambda: posts)
        release.set()
        await expect(page.locator("#content")).to_have_value("")
        await page.unroute("**/messages")
        # a later message, answered after anything the presses above sent
        await page.fill("#content", "and then this")
        await page.click("#send button")
        await expect(page.locator(".msg.assistant .text").last).to_have_text("echo: and then this")
    assert await user_messages(api, session_id) == ["only once", "and then this"]


@pytest.mark.slow
async def test_a_message_sent_while_a_turn_runs_says_it_waits_for_its_turn(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    """Its text leaves the form at once, and it shows in the transcript only when its turn starts:
    without a word meanwhile, it would look lost (and be sent again, a turn of its own)."""
    session_id = await api.new_session()
    # the first turn waits for an approval: it runs until the test answers
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("removed"), text("the second")
    )
    async with headless_chromium() as browser:
        expect = pytest.importorskip("playwright.async_api").expect
        page = await new_page(browser)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        await page.fill("#content", "first")
        await page.click("#send button")
        await expect(page.locator("#approvals form.approval")).to_have_count(1)

        await page.fill("#content", "second")
        await page.click("#send button")
        queued = page.locator("#send .queued")
        await expect(queued).to_contain_text("Sent: it shows above when its turn starts")
        await expect(page.locator("#content")).to_have_value("")
        await page.click("#approvals button[value=allow_once]")
        await expect(page.locator(".msg.user .text").last).to_have_text("second")
        await expect(queued).to_have_count(0)
        await expect(page.locator(".msg.assistant .text").last).to_have_text("the second")


@pytest.mark.slow
async def test_what_is_typed_while_a_message_is_on_its_way_stays_in_the_box(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    """The next message, begun while the first was sent: clearing the box once the first arrived
    would wipe it (and a quick Send would then send nothing)."""
    session_id = await api.new_session()
    fake_llm.default = echo()
    async with headless_chromium() as browser:
        expect = pytest.importorskip("playwright.async_api").expect
        page = await new_page(browser)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        release, posts = await held_messages(page)
        await page.fill("#content", "first")
        await page.click("#send button")
        await until(lambda: posts)
        await page.fill("#content", "second, begun meanwhile")
        release.set()

        await expect(page.locator(".msg.assistant .text").last).to_have_text("echo: first")
        await expect(page.locator("#send button")).to_be_enabled()
        await expect(page.locator("#content")).to_have_value("second, begun meanwhile")
