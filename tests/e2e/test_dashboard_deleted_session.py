"""A session deleted (`DELETE /api/v1/sessions/{id}`, `duragent session rm`) while its page is
open, in headless Chromium: the page says it was deleted, not that it ended and can be forked
(a deleted session's files are gone: there is nothing to fork)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-deleted-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


@pytest.mark.slow
async def test_a_session_deleted_under_its_open_page_says_it_was_deleted(api: Api) -> None:
    from playwright.async_api import expect

    session_id = await api.new_session()
    async with headless_chromium() as browser:
        page: Any = await new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await log_in(page, api.url(""), TOKEN)
        async with page.expect_response(lambda response: "/events?after=" in response.url) as stream:
            await page.goto(api.url(f"/ui/sessions/{session_id}"))
        assert (await stream.value).status == 200  # the page follows the session

        status, body = await api.call("DELETE", f"/api/v1/sessions/{session_id}")
        assert status == 204, body

        live = page.locator("#live-status")
        await expect(live).to_contain_text("This session was deleted")
        assert "fork" not in await live.inner_text()
        await expect(page.locator("#session-status")).to_have_text("deleted")
    assert errors == []
