"""The Sessions page shows the newest page of sessions, and "Older sessions" pages on with the same
cursor as GET /api/v1/sessions (in-process server, aiohttp client)."""

from __future__ import annotations

import html
import re

import aiohttp
import pytest

from duragent.web import sessions as sessions_page
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_dashboard import browser, log_in

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-test-token"
PAGE = 2


@pytest.fixture
async def api(start_api: ApiFactory, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setattr(sessions_page, "LIST_PAGE", PAGE)  # (a page of 2: five sessions make three)
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def listed(http: aiohttp.ClientSession, url: str) -> tuple[list[str], str | None]:
    """The session ids a Sessions page lists, in order, and where its "Older sessions" link goes."""
    async with http.get(url) as page:
        assert page.status == 200, await page.text()
        body = await page.text()
    ids = re.findall(r'<td><a href="/ui/sessions/([^"]+)">', body)
    older = re.search(r'<a href="([^"]+)"[^>]*>Older sessions', body)
    return ids, html.unescape(older.group(1)) if older else None


async def test_the_sessions_list_shows_the_newest_page_and_older_ones_by_the_apis_cursor(api: Api) -> None:
    for _ in range(5):
        await api.new_session()
    status, first = await api.call("GET", f"/api/v1/sessions?limit={PAGE}")
    assert status == 200, first
    status, everything = await api.call("GET", "/api/v1/sessions")
    newest_first = [s["session_id"] for s in everything["sessions"]]
    async with browser() as http:
        await log_in(api, http)
        ids, older = await listed(http, api.url("/ui/sessions"))
        assert ids == newest_first[:PAGE]
        assert older == f"/ui/sessions?cursor={first['next_cursor']}"

        # a session started while someone reads an older page does not push that page along
        await api.new_session()
        ids, older = await listed(http, api.url(older))
        assert ids == newest_first[PAGE : 2 * PAGE]
        assert older is not None
        ids, older = await listed(http, api.url(older))
        assert (ids, older) == (newest_first[2 * PAGE :], None)


async def test_an_older_page_links_back_to_the_newest_sessions(api: Api) -> None:
    for _ in range(PAGE + 1):
        await api.new_session()
    async with browser() as http:
        await log_in(api, http)
        _, older = await listed(http, api.url("/ui/sessions"))
        assert older is not None
        async with http.get(api.url(older)) as page:
            body = await page.text()
        assert re.search(r'<a href="/ui/sessions">Newest sessions</a>', body), body
        async with http.get(api.url("/ui/sessions")) as page:
            assert "Newest sessions" not in await page.text()


async def test_a_sessions_page_with_a_bad_cursor_says_what_to_pass(api: Api) -> None:
    async with browser() as http:
        await log_in(api, http)
        async with http.get(api.url("/ui/sessions?cursor=not-a-cursor")) as page:
            assert page.status == 400
            assert "invalid cursor" in await page.text()
