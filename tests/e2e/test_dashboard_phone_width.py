"""The dashboard on a phone (375 px wide), in headless Chromium: every page fits the screen's
width, its menu and log-out button are on screen, wide tables scroll inside themselves, and a
long word in a message wraps instead of widening the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory, collect_until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-phone-token"
#: Logs in to every page, with the menu's every entry (Agents, Processes, Gateways are the admin's).
ADMIN = "ui-phone-admin-token"
PHONE = {"width": 375, "height": 740}
#: A word too long for the screen (a URL, a hash) in a message.
LONG_WORD = "https://example.com/" + "a" * 160


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    return result


@pytest.fixture
async def phone() -> AsyncIterator[Any]:
    """A page of headless Chromium as wide as a phone's screen."""
    async with headless_chromium() as browser:
        yield await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)


async def a_session_with_a_long_word(api: Api, fake_llm: FakeLLMServer) -> str:
    fake_llm.enqueue(text(f"See {LONG_WORD} for more."))
    session_id = await api.new_session()
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/messages"),
        json={"content": f"What is {LONG_WORD}?"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        await collect_until(response)
    return session_id


async def make_schedule(api: Api) -> str:
    status, body = await api.call(
        "POST",
        "/api/v1/schedules",
        {"agent": "helper", "every": "1h", "message": "stretch", "label": "stretch"},
    )
    assert status == 201, body
    return str(body["schedule"]["id"])


@pytest.mark.slow
async def test_every_page_fits_a_phone_screen_with_its_menu_on_screen(
    api: Api, fake_llm: FakeLLMServer, phone: Any
) -> None:
    session_id = await a_session_with_a_long_word(api, fake_llm)
    schedule_id = await make_schedule(api)
    await log_in(phone, api.url(""), ADMIN)

    pages = [
        "/ui/sessions",
        f"/ui/sessions/{session_id}",
        "/ui/memory",
        "/ui/memory/helper/MEMORY.md",
        "/ui/history",
        "/ui/agents",
        "/ui/schedules",
        f"/ui/schedules/{schedule_id}",
        "/ui/processes",
        "/ui/gateways",
    ]
    too_wide = {}
    off_screen = {}
    for path in pages:
        await phone.goto(api.url(path))
        width = await phone.evaluate("() => document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[path] = width
        controls = phone.locator("header a, header button")
        for n in range(await controls.count()):
            box = await controls.nth(n).bounding_box()
            assert box is not None
            if box["x"] < 0 or box["x"] + box["width"] > PHONE["width"]:
                off_screen.setdefault(path, []).append(await controls.nth(n).inner_text())
    assert too_wide == {}
    assert off_screen == {}

    # the menu's last entry is reachable with a tap
    await phone.tap("nav >> text=Gateways")
    await phone.wait_for_url("**/ui/gateways")
