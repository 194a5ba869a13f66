"""The memory editor of an agent that does not exist (a mistyped address, a stale bookmark), in
headless Chromium: a "not found" page naming the agents there are, and a save writes nothing;
the memory of an agent whose definition was removed stays readable."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-memory-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN)
    return result


@pytest.fixture
async def page(api: Api) -> AsyncIterator[Any]:
    """A logged-in page of headless Chromium."""
    async with headless_chromium() as browser:
        opened = await new_page(browser)
        await log_in(opened, api.url(""), TOKEN)
        yield opened


def memory_root(tmp_path: Path) -> Path:
    return tmp_path / "ws0" / "data" / "memory"


async def post_memory(page: Any, path: str, text: str) -> int:
    """Save `text` to `path` as the editor's form would (with this login's CSRF token); the status
    (303: saved, and sent on to the file's page)."""
    script = """async ([path, text]) => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const body = new URLSearchParams({csrf, text});
        const response = await fetch(path, {method: "POST", body, redirect: "manual"});
        return response.type === "opaqueredirect" ? 303 : response.status;
    }"""
    status: int = await page.evaluate(script, [path, text])
    return status


@pytest.mark.slow
async def test_the_memory_of_an_unknown_agent_is_not_found_and_a_save_writes_nothing(
    api: Api, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    response = await page.goto(api.url("/ui/memory/helpr/MEMORY.md"))
    assert response.status == 404
    await expect(page.locator("h1")).to_have_text("404 Not Found")
    await expect(page.locator(".problem")).to_contain_text("no agent named 'helpr'")
    await expect(page.locator(".problem")).to_contain_text("helper")
    await expect(page.locator("form.editor")).to_have_count(0)

    await page.goto(api.url("/ui/memory"))
    assert await post_memory(page, "/ui/memory/helpr/MEMORY.md", "- tea\n") == 404
    assert not (memory_root(tmp_path) / "helpr").exists()


@pytest.mark.slow
async def test_the_memory_of_a_removed_agent_stays_readable(api: Api, page: Any, tmp_path: Path) -> None:
    from playwright.async_api import expect

    assert await post_memory(page, "/ui/memory/pauser/MEMORY.md", "- kept after removal\n") == 303
    shutil.rmtree(tmp_path / "ws0" / "data" / "agents" / "pauser")
    await page.goto(api.url("/ui/memory/pauser/MEMORY.md"))
    await expect(page.locator("#text")).to_have_value("- kept after removal\n")
