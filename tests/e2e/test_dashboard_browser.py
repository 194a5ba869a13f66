"""The dashboard in a real browser: headless Chromium (the distribution's) driven by Playwright
through a real `duragent serve`. (docs/dashboard.md's screenshots: `python -m duragent.testing.screenshots`.)
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.browser import CHROMIUM_FLAGS, chromium
from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "browser-test-token"
ADMIN = "browser-test-admin-token"


def git_log_line(repo: Path) -> str:
    return subprocess.run(
        ["git", "log", "-1", "--format=%an %s"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def make_schedule(server: ServeProcess) -> None:
    """A reminder every hour, made over the API as `duragent schedule add` would."""
    import json
    import urllib.request

    body = json.dumps({"agent": "helper", "every": "1h", "message": "stretch", "label": "stretch"}).encode()
    request = urllib.request.Request(
        server.url + "/api/v1/schedules",
        data=body,
        headers={**server.headers, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 201


@pytest.fixture
async def server(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[ServeProcess]:
    config = write_workspace(tmp_path, fake_llm.url, api_token=TOKEN, admin_token=ADMIN, git=True)
    process = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    yield process
    assert await asyncio.to_thread(process.terminate) == 0, process.log()


@pytest.mark.slow
async def test_log_in_chat_edit_memory_and_revert_it_in_a_browser(
    server: ServeProcess, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = chromium()
    fake_llm.enqueue(text("Hello from the agent, streamed to your browser.", chunks=8, chunk_delay=0.05))
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 640})
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            page.set_default_timeout(20_000)

            # log in
            await page.goto(server.url + "/ui/")
            await expect(page.locator("h1")).to_have_text("Log in")
            await page.fill("#token", "wrong")
            await page.click("button[type=submit]")
            await expect(page.locator(".problem")).to_contain_text("not valid")
            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Sessions")

            # open a session, send a message, watch the reply stream in
            await page.select_option("#agent", "helper")
            await page.click("text=Start")
            await expect(page.locator("h1")).to_contain_text("Session")
            session_url = page.url
            await page.fill("#content", "Say hello")
            await page.click("#send button")
            reply = page.locator(".msg.assistant .text").last
            await expect(reply).to_have_text("Hello from the agent, streamed to your browser.")
            await expect(page.locator(".msg.user .text").last).to_have_text("Say hello")
            assert page.url == session_url  # it arrived over the page's event stream, not a reload
            await page.goto(server.url + "/ui/sessions")
            await expect(page.locator("tbody tr")).to_have_count(1)

            # edit a memory file; the commit shows in history with its diff
            await page.click("nav >> text=Memory")
            await page.click("a[href='/ui/memory/helper/MEMORY.md']")
            await page.fill("#text", "# Long-term memory of helper\n\n## Preferences\n- tea, not coffee\n")
            await page.click("form.editor button")
            await expect(page.locator(".notice")).to_contain_text("Saved and committed as")
            await expect(page.locator(".notice")).to_contain_text("Test Person")
            memory_file = Path(server.config).parent / "data" / "memory" / "helper" / "MEMORY.md"
            assert "tea, not coffee" in memory_file.read_text()
            await page.click("nav >> text=History")
            first_row = page.locator("table.timeline tbody tr").first
            await expect(first_row).to_contain_text("edit: memory/helper/MEMORY.md")
            await expect(first_row).to_contain_text("Test Person")
            await first_row.locator("a").click()
            await expect(page.locator("ins", has_text="tea, not coffee")).to_have_text("+- tea, not coffee")

            # revert it, confirming twice (the checkbox and the browser's dialog)
            await page.check("input[name=confirm]")
            await page.click("form.revert button")
            await expect(page.locator(".notice")).to_contain_text("Reverted")
            assert not memory_file.exists()
            log = await asyncio.to_thread(git_log_line, memory_file.parents[2])
            assert log.startswith("Test Person ")
            assert "revert" in log.lower()

            # the agents' pages are the admin API's: this login, made with the API token, is told so
            assert await page.locator("nav >> text=Agents").count() == 0
            answer = await page.goto(server.url + "/ui/agents")
            assert answer is not None
            assert answer.status == 403
            await expect(page.locator("h1")).to_have_text("403 Admin token needed")
            await page.click("text=Log out")
            await page.fill("#token", ADMIN)
            await page.click("button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Sessions")
            await page.click("nav >> text=Agents")
            await expect(page.locator("section.agent h2").first).to_contain_text("helper")
            await page.click("nav >> text=Gateways")

            # a schedule: listed with its next run; pause it and run it now from its page
            await asyncio.to_thread(make_schedule, server)
            await page.click("nav >> text=Schedules")
            row = page.locator("table.schedules tbody tr").first
            await expect(row).to_contain_text("every 1h")
            await expect(row).to_contain_text("active")
            await row.locator("a").first.click()
            await page.click("text=Pause")
            await expect(page.locator(".notice")).to_contain_text("Paused")
            await page.click("text=Run now")
            await expect(page.locator(".notice")).to_contain_text("Ran now: ok.")
            await expect(page.locator(".run-ok").first).to_have_text("ok")
        finally:
            await browser.close()
