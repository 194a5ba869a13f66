"""A session's page cancels its running turn, resumes it when paused and ends it (after a
confirmation: its background processes stop too), each button shown only while it applies and
following the session live; in headless Chromium, with and without JavaScript."""

from __future__ import annotations

from typing import Any

import pytest

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, delay, text
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_dashboard import browser, csrf_of
from tests.e2e.test_dashboard import log_in as log_in_over_http
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-controls-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def open_session_page(page: Any, api: Api, session_id: str) -> None:
    """The session's page, once it follows the session's events."""
    async with page.expect_response(lambda response: "/events?after=" in response.url):
        await page.goto(api.url(f"/ui/sessions/{session_id}"))


@pytest.mark.slow
async def test_cancel_shows_while_a_turn_runs_and_stops_it(api: Api, fake_llm: FakeLLMServer) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    fake_llm.enqueue(delay(60, text("too late")), text("the next answer"))
    async with headless_chromium() as chromium:
        page: Any = await new_page(chromium)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await log_in(page, api.url(""), TOKEN)
        await open_session_page(page, api, session_id)
        cancel = page.locator("#cancel")
        await expect(cancel).to_be_hidden()
        await expect(page.locator("#resume")).to_be_hidden()

        await page.fill("#content", "think for a long time")
        await page.click("#send button")
        await expect(cancel).to_be_visible()
        live = api.server.app[STATE].sessions.live[session_id]
        assert live.busy
        # a page opened while the turn runs offers it too
        await open_session_page(page, api, session_id)
        await expect(cancel).to_be_visible()

        await cancel.locator("button").click()
        await expect(page.locator("#transcript")).to_contain_text("cancelled")
        await expect(cancel).to_be_hidden()
        assert not live.busy
        await expect(page.locator("#retry")).to_be_visible()

        # the next turn runs as usual, and Cancel goes when it ends
        await page.fill("#content", "then answer quickly")
        await page.click("#send button")
        await expect(page.locator("#transcript")).to_contain_text("the next answer")
        await expect(cancel).to_be_hidden()
    assert errors == []


@pytest.mark.slow
async def test_resume_shows_once_the_session_pauses_and_continues_it(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    live = await api.server.app[STATE].sessions.get(session_id)
    fake_llm.enqueue(text("answered after the resume"))
    async with headless_chromium() as chromium:
        page: Any = await new_page(chromium)
        await log_in(page, api.url(""), TOKEN)
        await open_session_page(page, api, session_id)
        resume = page.locator("#resume")
        await expect(resume).to_be_hidden()

        # paused as max_background_runtime pauses a turn, with a message waiting behind it
        await live.log.append(
            "status_change",
            {"from": "active", "to": "paused", "reason": "ran unattended for 1s (max_background_runtime)"},
        )
        await live.log.append("message_queued", {"queue_id": "q_1", "content": "later"})
        live.requeue_stored()
        await expect(page.locator("#session-status")).to_have_text("paused")
        await expect(resume).to_be_visible()
        # a page opened now offers it too
        await open_session_page(page, api, session_id)
        await expect(resume).to_be_visible()

        await resume.locator("button").click()
        await expect(page.locator("#transcript")).to_contain_text("answered after the resume")
        await expect(page.locator("#session-status")).to_have_text("active")
        await expect(resume).to_be_hidden()
        await expect(page.locator("#cancel")).to_be_hidden()


@pytest.mark.slow
async def test_end_asks_first_and_works_without_javascript(api: Api, fake_llm: FakeLLMServer) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    async with headless_chromium() as chromium:
        page: Any = await new_page(chromium, java_script_enabled=False)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        end = page.locator("#end")
        await expect(end).to_be_visible()
        # not ticked, the browser does not send it
        await end.locator("button").click()
        await expect(page.locator("#session-status")).to_have_text("active")
        assert api.server.app[STATE].sessions.live[session_id].status == "active"

        await end.get_by_label("Yes, end this session").check()
        await end.locator("button").click()
        await expect(page.locator("#session-status")).to_have_text("ended")
        await expect(page.locator("main")).to_contain_text("This session has ended: fork it")
        assert (await page.locator("main").inner_text()).count("This session has ended") == 1
        for control in ("#end", "#send", "#cancel", "#resume"):
            await expect(page.locator(control)).to_have_count(0)
    status, body = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert (status, body["status"]) == (200, "ended")


@pytest.mark.slow
async def test_end_with_javascript_asks_once_more_and_the_page_follows(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    async with headless_chromium() as chromium:
        page: Any = await new_page(chromium)
        asked: list[str] = []

        async def answer(dialog: Any) -> None:
            asked.append(dialog.message)
            await dialog.dismiss() if len(asked) == 1 else await dialog.accept()

        page.on("dialog", answer)
        await log_in(page, api.url(""), TOKEN)
        await open_session_page(page, api, session_id)
        end = page.locator("#end")
        await end.get_by_label("Yes, end this session").check()
        await end.locator("button").click()  # dismissed: nothing happens
        await until(lambda: len(asked) == 1)
        assert "background processes are stopped" in asked[0]
        assert api.server.app[STATE].sessions.live[session_id].status == "active"

        await end.locator("button").click()
        await expect(page.locator("#session-status")).to_have_text("ended")
        await expect(page.locator("#send")).to_have_count(0)
        await expect(page.locator("#end")).to_have_count(0)


async def test_the_controls_refuse_a_post_without_the_csrf_token(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    session_page = api.url(f"/ui/sessions/{session_id}")
    async with browser() as http:
        await log_in_over_http(api, http, TOKEN)
        csrf = await csrf_of(http, session_page)
        for action in ("cancel", "resume", "end"):
            for forged in ({}, {"csrf": "forged"}):
                data = {"confirm": "yes", **forged}
                async with http.post(f"{session_page}/{action}", data=data, allow_redirects=False) as r:
                    assert r.status == 403, action
        assert api.server.app[STATE].sessions.live[session_id].status == "active"
        # unticked, End does nothing; ticked, it ends the session
        async with http.post(f"{session_page}/end", data={"csrf": csrf}, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, f"/ui/sessions/{session_id}")
        assert api.server.app[STATE].sessions.live[session_id].status == "active"
        data = {"csrf": csrf, "confirm": "yes"}
        async with http.post(f"{session_page}/end", data=data, allow_redirects=False) as r:
            assert r.status == 303
        # an ended session resumes no more: a page saying why
        async with http.post(f"{session_page}/resume", data={"csrf": csrf}) as r:
            assert r.status == 409
            assert "ended" in await r.text()
    status, body = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert (status, body["status"]) == (200, "ended")
