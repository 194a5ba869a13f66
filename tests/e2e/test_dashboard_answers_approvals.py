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


@pytest.mark.slow
async def test_the_tool_lines_of_a_turn_read_the_same_live_and_after_a_reload(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        # (5.0: a whole number the model wrote as a float reads "5" live, as JSON.parse makes it)
        arguments = {"command": "rm -f nothing.txt", "timeout_seconds": 5.0}
        fake_llm.enqueue(tool_calls([("bash", arguments)]), text("listed"))
        status, body = await send(api, session_id)
        assert status == 202, body
        await answered_in_the_browser(page, "allow_once")
        await expect(page.locator(".msg.assistant .text").last).to_have_text("listed")
        tools = page.locator("#transcript li.tool")
        live = [await tools.nth(i).inner_html() for i in range(await tools.count())]

        await page.reload()
        await expect(page.locator(".msg.assistant .text").last).to_have_text("listed")
        reloaded = [await tools.nth(i).inner_html() for i in range(await tools.count())]

    assert [_tags_and_text(item) for item in live] == [_tags_and_text(item) for item in reloaded]
    assert '<code class="args">{"command": "rm -f nothing.txt", "timeout_seconds": 5}</code>' in live[0]


def _tags_and_text(html: str) -> str:
    """The markup a person sees, white space between elements aside (the template's line breaks)."""
    return re.sub(r">\s+<", "><", re.sub(r"\s+", " ", html)).strip()


@pytest.mark.slow
async def test_a_message_sent_while_a_call_waits_for_an_answer_says_it_waits_behind_that_answer(
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
        await expect(page.locator("#approvals form.approval")).to_have_count(1)

        await page.fill("#send textarea", "and then?")
        await page.locator("#send button[type=submit]").click()

        note = page.locator("#send .queued")
        await expect(note).to_contain_text("after the turn waiting for your answer above")
        await expect(note).not_to_contain_text("running now")
