"""Posting from a page whose login ended (a server restart, Log out in another tab, 12 hours idle),
in headless Chromium: the page keeps the text typed and says to log in again; logged in again in
another tab, the same Send or Save goes through from this page, although the new login's CSRF
token is not the one the page was made with.

The memory editor is posted by the browser (its answer is a page): without a check first, the
refused post leaves an error page the browser cannot go back from (the editor's page is loaded
again, and the text typed is gone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-memory-login-token"
EDIT = "# Helper\n\n- a long, careful edit\n"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN)
    return result


async def log_out_elsewhere(context: Any, api: Api) -> Any:
    """Log out in another tab of the same browser; that tab."""
    other = await context.new_page()
    await other.goto(api.url("/ui/sessions"))
    await other.click("text=Log out")
    await other.wait_for_url("**/ui/login")
    return other


@pytest.mark.slow
async def test_a_message_sent_after_the_login_ended_goes_through_once_logged_in_again(api: Api) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    async with headless_chromium() as browser:
        context = await browser.new_context()
        page: Any = await context.new_page()
        page.set_default_timeout(20_000)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url(f"/ui/sessions/{session_id}"))
        other = await log_out_elsewhere(context, api)

        await page.fill("#content", "still there?")
        await page.click("#send button")
        await expect(page.locator("#send [role=alert]")).to_contain_text("log in again")

        await log_in(other, api.url(""), TOKEN)
        await page.click("#send button")
        # the fake model echoes it: the message went through and was answered
        await expect(page.locator(".msg.assistant .text")).to_have_text("echo: still there?")
        await expect(page.locator("#send [role=alert]")).to_have_count(0)


@pytest.mark.slow
async def test_a_save_after_the_login_ended_keeps_the_text_and_saves_once_logged_in(
    api: Api, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    memory_file = tmp_path / "ws0" / "data" / "memory" / "helper" / "MEMORY.md"
    async with headless_chromium() as browser:
        context = await browser.new_context()
        page: Any = await context.new_page()
        page.set_default_timeout(20_000)
        await log_in(page, api.url(""), TOKEN)
        await page.goto(api.url("/ui/memory/helper/MEMORY.md"))
        other = await log_out_elsewhere(context, api)

        await page.fill("#text", EDIT)
        await page.click("form.editor button")
        problem = page.locator("form.editor [role=alert]")
        await expect(problem).to_contain_text("log in again")
        assert page.url == api.url("/ui/memory/helper/MEMORY.md")
        assert await page.input_value("#text") == EDIT
        assert not memory_file.exists()

        await log_in(other, api.url(""), TOKEN)
        await page.click("form.editor button")
        await expect(page.locator(".notice")).to_contain_text("Saved and committed as")
    assert memory_file.read_text() == EDIT
