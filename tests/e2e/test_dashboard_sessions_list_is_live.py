"""The Sessions page keeps itself up to date: a session started elsewhere, a turn waiting for an
approval and a turn that finished show without a reload (and, without JavaScript, on reload); an
older page refreshes as itself; in headless Chromium."""

from __future__ import annotations

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.web import sessions as sessions_page
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_agent_cannot_escape_its_policy import send

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-live-list-token"
expect = pytest.importorskip("playwright.async_api").expect
#: Longer than the page's refresh period, with room for a loaded machine.
LIVE = 15_000


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


@pytest.mark.slow
async def test_the_sessions_list_shows_new_sessions_and_their_states_without_a_reload(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await log_in(page, api.url(""), TOKEN)
        await expect(page.locator("main")).to_contain_text("No sessions yet")

        session_id = await api.new_session()  # started elsewhere (the API, a gateway, the terminal)
        row = page.locator("tr", has_text=session_id)
        await expect(row.locator(".state")).to_have_text("active", timeout=LIVE)

        fake_llm.enqueue(tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("removed"))
        status, asked = await send(api, session_id, "tidy up\n   the scratch files")
        assert status == 202
        await expect(row.locator(".state")).to_have_text("awaiting approval", timeout=LIVE)
        # what tells this session from the next: the start of its first message
        await expect(row.locator(".first-message")).to_have_text("tidy up the scratch files")
        await expect(row).to_contain_text("1 approval waiting")

        decision = {"call_id": asked["call_id"], "decision": "allow_once"}
        status, done = await api.call("POST", f"/api/v1/sessions/{session_id}/approve", decision)
        assert (status, done["content"]) == (200, "removed")
        await expect(row.locator(".state")).to_have_text("active", timeout=LIVE)
        await expect(row).not_to_contain_text("approval waiting")
    assert errors == []


@pytest.mark.slow
async def test_without_javascript_the_sessions_list_is_current_on_reload(api: Api) -> None:
    async with headless_chromium() as chrome:
        page = await new_page(chrome, java_script_enabled=False)
        await log_in(page, api.url(""), TOKEN)
        session_id = await api.new_session()
        await page.reload()
        await expect(page.locator("tr", has_text=session_id)).to_be_visible()


@pytest.mark.slow
async def test_an_older_page_of_the_sessions_list_stays_that_page_as_it_refreshes(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions_page, "LIST_PAGE", 1)
    oldest = await api.new_session()
    await api.new_session()
    async with headless_chromium() as chrome:
        page = await new_page(chrome)
        await log_in(page, api.url(""), TOKEN)
        await page.get_by_role("link", name="Older sessions").click()
        await expect(page.locator("tr", has_text=oldest)).to_be_visible()

        newer = await api.new_session()  # (the first page's news, not this page's)
        status, _ = await api.call("DELETE", f"/api/v1/sessions/{oldest}")
        assert status == 204
        await expect(page.locator("#sessions-list")).to_contain_text("No older sessions", timeout=LIVE)
        await expect(page.locator("#sessions-list")).not_to_contain_text(newer)
        await page.get_by_role("link", name="Newest sessions").click()
        await expect(page.locator("tr", has_text=newer)).to_be_visible()
