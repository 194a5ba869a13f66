"""A dashboard tab left open refreshes its lists every few seconds: that is not someone using
the login, and must not keep it alive past the idle limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from duragent.web import login as login_module
from duragent.web.login import LOGINS, REFRESH_HEADER, Logins, require_login
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
IDLE_LIMIT = 0.5


@web.middleware
async def logged_in(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    require_login(request)
    return await handler(request)


async def sessions_page(request: web.Request) -> web.Response:
    return web.Response(text="sessions")


@pytest_asyncio.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setattr(login_module, "IDLE_LIMIT", IDLE_LIMIT)
    app = web.Application(middlewares=[logged_in])
    app[LOGINS] = Logins(api_token="api-token", admin_token=None)
    app.router.add_get("/ui/sessions", sessions_page)
    async with TestClient(TestServer(app)) as test_client:
        login_id, _ = app[LOGINS].start(admin=False)
        test_client.session.cookie_jar.update_cookies({f"duragent_ui_{test_client.port}": login_id})
        yield test_client


async def status_of(client: Client, headers: dict[str, str]) -> int:
    async with client.get("/ui/sessions", headers=headers, allow_redirects=False) as response:
        return response.status


async def test_a_tab_refreshing_by_itself_does_not_keep_its_login_past_the_idle_limit(client: Client) -> None:
    assert await status_of(client, {REFRESH_HEADER: "1"}) == 200

    async def ended() -> bool | None:
        return True if await status_of(client, {REFRESH_HEADER: "1"}) == 302 else None

    # (was: each refresh counted as use, and a visible tab kept its login for ever)
    assert await eventually(ended, within=10, every=0.05)
    assert await status_of(client, {}) == 302  # to the login page
