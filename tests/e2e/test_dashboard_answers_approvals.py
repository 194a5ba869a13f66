"""A call waiting for approval is answered from the dashboard in a browser: the button pressed is
the answer the server gets, whether the form came with the page or arrived live."""

from __future__ import annotations

import re
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_agent_cannot_escape_its_policy import send

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-test-token"
expect = pytest.importorskip("playwright.async_api").expect


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def answered_in_the_browser(page: Any, decision: str) -> None:
    """Press `decision`'s button of the one approval form; the form goes, with no refusal."""
    form = page.locator("#approvals form.approval")
    await expect(form).to_have_count(1)
    await form.locator(f"button[value={decision}]").click()
    await expect(form).to_have_count(0)
    assert await page.locator("#approvals .problem").count() == 0


@pytest.mark.slow
async def test_allowing_a_call_waiting_when_the_page_opened_runs_it(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("removed"))
    session_id = await api.new_session()
    status, _ = await send(api, session_id)
    assert status == 202
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))

        await answered_in_the_browser(page, "allow_once")
        reply = page.locator(".msg.assistant .text").last
        await expect(reply).to_have_text("removed")
        await expect(page.locator("#transcript li.tool", has_text="!").last).to_have_text("! allow_once")


@pytest.mark.slow
async def test_denying_a_call_that_arrived_live_denies_it(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        fake_llm.enqueue(tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("not removed"))
        status, _ = await send(api, session_id)
        assert status == 202

        await answered_in_the_browser(page, "deny")
        await expect(page.locator("#transcript li.tool", has_text="!").last).to_have_text("! deny")
        await expect(page.locator(".msg.assistant .text").last).to_have_text("not removed")


@pytest.mark.slow
async def test_a_call_asked_while_the_page_loaded_gets_one_form(api: Api, fake_llm: FakeLLMServer) -> None:
    """The server registers a call as waiting before its `approval_required` event is stored: a page
    rendered in between has the call's form, and its stream (from the last stored event) brings the
    event too. Here the page is made to follow from the session's start, as such a page does."""
    fake_llm.enqueue(tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("removed"))
    session_id = await api.new_session()
    status, _ = await send(api, session_id)
    assert status == 202
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        await log_in(page, api.url(""), TOKEN)

        async def from_the_start(route: Any) -> None:
            answer = await route.fetch()
            html = re.sub(r'data-after="\d+"', 'data-after="0"', await answer.text())
            await route.fulfill(response=answer, body=html)

        await page.route(f"**/ui/sessions/{session_id}", from_the_start)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        # the replayed events are shown (the question twice over: once from the page, once live)
        await expect(page.locator("#transcript li.asked")).to_have_count(2)

        await answered_in_the_browser(page, "allow_once")
        await expect(page.locator(".msg.assistant .text").last).to_have_text("removed")
