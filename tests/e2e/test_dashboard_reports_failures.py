"""The dashboard says what went wrong, in words, in headless Chromium.

A form the page's script sends in place (a message, an approval) that the server refuses shows
the server's reason next to the form, not the error page's HTML in a dialog; the text typed is
kept. A session page whose event stream drops (the server stopped, restarted, the login ended
with it) says the live view stopped, instead of looking live while nothing arrives, and throws
no script errors.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory, ServeProcess, start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-failures-token"
#: Larger than the dashboard's largest form body (duragent.web.login.MAX_FORM_BYTES).
TOO_LONG = "x" * (1024 * 1024 + 10)


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


@contextmanager
def watched(page: Any) -> Iterator[list[str]]:
    """What the page shows in dialogs and the script errors it throws, as they happen."""
    seen: list[str] = []
    page.on("pageerror", lambda error: seen.append(f"script error: {error}"))
    page.on(
        "dialog",
        lambda dialog: (seen.append(f"dialog: {dialog.message}"), asyncio.ensure_future(dialog.dismiss())),
    )
    yield seen


@pytest.fixture
async def chrome() -> AsyncIterator[Any]:
    async with headless_chromium() as browser:
        yield browser


@pytest.mark.slow
async def test_a_refused_message_shows_the_servers_reason_and_keeps_the_text(api: Api, chrome: Any) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    page = await new_page(chrome)
    with watched(page) as seen:
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        await page.fill("#content", TOO_LONG)
        await page.click("#send button")
        problem = page.locator("#send [role=alert]")
        await expect(problem).to_contain_text("Not sent: the request body is too large (at most 2 MiB)")
        assert "<" not in await problem.inner_text()
        assert await page.input_value("#content") == TOO_LONG

        await page.fill("#content", "   \n ")
        await page.click("#send button")
        await expect(problem).to_contain_text("Not sent: the message is empty")
    assert seen == []


@pytest.mark.slow
async def test_a_send_after_the_login_ended_says_to_log_in_again(api: Api, chrome: Any) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    context = await chrome.new_context()
    page = await new_page(context)
    with watched(page) as seen:
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        other_tab = await context.new_page()
        await other_tab.goto(api.url("/ui/sessions"))
        await other_tab.click("text=Log out")
        await other_tab.wait_for_url("**/ui/login")

        await page.fill("#content", "still there?")
        await page.click("#send button")
        problem = page.locator("#send [role=alert]")
        await expect(problem).to_contain_text("log in again")
        await expect(problem.locator("a")).to_have_attribute(
            "href", f"/ui/login?next=%2Fui%2Fsessions%2F{session_id}"
        )
        assert await page.input_value("#content") == "still there?"
    assert seen == []


def serve_again(server: ServeProcess, log: Path) -> subprocess.Popen[str]:
    """`duragent serve` for the same workspace on the same port as `server`, which has stopped."""
    port = server.url.rsplit(":", 1)[1]
    command = [sys.executable, "-m", "duragent", "-c", str(server.config), "serve", "--port", port]
    return subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=server.env
    )


@pytest.mark.slow
async def test_a_server_restart_under_an_open_session_page_says_the_live_view_stopped(
    tmp_path: Path, fake_llm: FakeLLMServer, chrome: Any
) -> None:
    from playwright.async_api import expect

    config = write_workspace(tmp_path, fake_llm.url, api_token=TOKEN, git=False)
    server = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    restarted: subprocess.Popen[str] | None = None
    try:
        fake_llm.enqueue(text("before the restart"))
        page = await new_page(chrome)
        with watched(page) as seen:
            await log_in(page, server.url, TOKEN)
            await page.select_option("#agent", "helper")
            await page.click("text=Start")
            await page.fill("#content", "hello")
            await page.click("#send button")
            await expect(page.locator(".msg.assistant .text")).to_have_text("before the restart")
            live = page.locator("#live-status")
            await expect(live).to_be_hidden()

            assert await asyncio.to_thread(server.terminate) == 0, server.log()
            await expect(live).to_contain_text("reconnecting")
            await page.fill("#content", "anyone there?")
            await page.click("#send button")
            await expect(page.locator("#send [role=alert]")).to_have_text(
                "Not sent: the server did not answer (is it running?)."
            )
            assert await page.input_value("#content") == "anyone there?"
            restarted = serve_again(server, tmp_path / "serve-again.log")
            # the new server knows no login: the stream is refused and the page says so
            await expect(live).to_contain_text("Live updates stopped", timeout=60_000)
            await expect(live.locator("a")).to_have_text("reload the page")
        assert seen == []
    finally:
        if restarted is not None:
            restarted.terminate()
            await asyncio.to_thread(restarted.wait, 20)
        elif server.process.poll() is None:
            await asyncio.to_thread(server.terminate)


@pytest.mark.slow
async def test_a_session_that_ends_says_so_and_an_ended_ones_page_does_not_claim_a_failure(
    api: Api, chrome: Any, fake_llm: FakeLLMServer
) -> None:
    from playwright.async_api import expect

    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = await new_page(chrome)
    with watched(page) as seen:
        await log_in(page, api.url(""), TOKEN)
        await page.select_option("#agent", "helper")
        await page.click("text=Start")
        await expect(page.locator("#session-status")).to_have_text("active")
        session_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/end", {}, headers=auth)
        assert status in (200, 204)

        live = page.locator("#live-status")
        await expect(page.locator("#session-status")).to_have_text("ended")
        await expect(live).to_contain_text(
            f"This session has ended: fork it (duragent session fork {session_id})"
        )
        # nothing can be sent to it any more: its page offers no form, as when opened later
        await expect(page.locator("#send")).to_be_hidden()
        await expect(page.locator("#retry")).to_be_hidden()
        await page.reload()  # its stream has nothing more to send: a 204, not a lost connection
        await expect(page.locator("#ended-note")).to_contain_text(f"duragent session fork {session_id}")
        await expect(page.locator("#session-status")).to_have_text("ended")
        assert (await page.locator("main").inner_text()).count("This session has ended") == 1  # (said once)
        await expect(live).not_to_contain_text("Live updates stopped")
    assert seen == []


@pytest.mark.slow
async def test_logging_out_in_another_tab_stops_an_open_sessions_live_view(
    api: Api, chrome: Any, fake_llm: FakeLLMServer
) -> None:
    """After Log out, what the session says next is not shown to that browser's open pages: their
    stream ends with the login, and they say so."""
    from playwright.async_api import expect

    session_id = await api.new_session()
    context = await chrome.new_context()
    page = await new_page(context)
    with watched(page) as seen:
        await log_in(page, api.url(""), TOKEN)
        async with page.expect_response(lambda response: "/events?after=" in response.url) as stream:
            await page.goto(api.url(f"/ui/sessions/{session_id}"))
        assert (await stream.value).status == 200
        other_tab = await context.new_page()
        await other_tab.goto(api.url("/ui/sessions"))
        await other_tab.click("text=Log out")
        await other_tab.wait_for_url("**/ui/login")

        await expect(page.locator("#live-status")).to_contain_text("Live updates stopped")
        fake_llm.enqueue(text("not for a logged-out browser"))
        status, body = await api.call(
            "POST", f"/api/v1/sessions/{session_id}/messages", {"content": "private"}
        )
        assert status == 200, body
        assert await page.locator("#transcript").inner_text() == ""
    assert seen == []
