"""Every dashboard page loads in headless Chromium without an error in the browser's console: no
script error, no request for something the server does not have (the browser's icon)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-console-token"
#: Logs in to every page (Agents, Processes and Gateways are for the admin token's logins).
ADMIN = "ui-console-admin-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    return result


@pytest.mark.slow
async def test_pages_load_without_console_errors(api: Api) -> None:
    session_id = await api.new_session()
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text} {message.location.get('url', '')}")

    async with headless_chromium() as browser:
        page = await new_page(browser)
        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        await page.goto(api.url("/ui/login"))
        # the page names its icon, so the browser asks for it instead of a /favicon.ico
        # the server does not have (a 404 in the console of every page)
        icon = await page.evaluate("() => document.querySelector('link[rel=icon]')?.getAttribute('href')")
        assert icon is not None
        answer = await page.request.get(api.url(icon))
        assert answer.ok, answer.status
        assert answer.headers["content-type"].startswith("image/")
        await page.fill("#token", ADMIN)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/ui/")
        for path in [
            "/ui/sessions",
            f"/ui/sessions/{session_id}",
            "/ui/memory",
            "/ui/memory/helper/MEMORY.md",
            "/ui/history",
            "/ui/agents",
            "/ui/schedules",
            "/ui/processes",
            "/ui/gateways",
        ]:
            await page.goto(api.url(path))
    assert errors == []
