"""Two servers on one machine (two workspaces, two ports), one browser, in headless Chromium.

A browser shares a host's cookies between all its ports: logging in to one server's dashboard,
or opening its login page, must not end the login, or spoil the login form, of the other's.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKENS = ("ui-first-token", "ui-second-token")


@pytest.fixture
async def servers(start_api: ApiFactory) -> tuple[Api, Api]:
    first: Api = await start_api(git=False, api_token=TOKENS[0])
    second: Api = await start_api(git=False, api_token=TOKENS[1])
    return first, second


@pytest.mark.slow
async def test_logging_in_to_another_servers_dashboard_keeps_this_login(servers: tuple[Api, Api]) -> None:
    first, second = servers
    async with headless_chromium() as browser:
        context = await browser.new_context()
        page: Any = await context.new_page()
        page.set_default_timeout(20_000)
        await log_in(page, first.url(""), TOKENS[0])
        await log_in(page, second.url(""), TOKENS[1])

        await page.goto(first.url("/ui/sessions"))
        assert page.url == first.url("/ui/sessions")
        await page.goto(second.url("/ui/sessions"))
        assert page.url == second.url("/ui/sessions")


@pytest.mark.slow
async def test_a_login_form_still_works_after_another_servers_login_page_opened(
    servers: tuple[Api, Api],
) -> None:
    first, second = servers
    async with headless_chromium() as browser:
        context = await browser.new_context()
        page: Any = await context.new_page()
        page.set_default_timeout(20_000)
        await page.goto(first.url("/ui/login"))
        other: Any = await context.new_page()
        await other.goto(second.url("/ui/login"))

        await page.fill("#token", TOKENS[0])
        await page.click("button[type=submit]")
        await page.wait_for_load_state()
        assert page.url == first.url("/ui/"), await page.inner_text("main")
