"""The dashboard's Processes page lists every agent's background processes (running ones first),
a process's page shows its output's end as text (markup and control characters written out), and
Kill stops a running one; in headless Chromium against the app with the fake model and real bash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from duragent.server.auth import ADMIN_TOKEN_HEADER, REQUIRED_TOKENS
from duragent.server.state import STATE
from duragent.stores.base import SessionReadOptions
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.browser import headless_chromium, log_in, new_page
from tests.e2e.server_harness import Api, serving_background_processes
from tests.e2e.test_dashboard import browser, csrf_of
from tests.e2e.test_dashboard import log_in as log_in_over_http
from tests.waiting import eventually, until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

#: Writes markup, an escape sequence and a bidirectional isolate, then runs for an hour.
NOISY = "printf 'ready <b>bold</b> \\033[31mred\\n\\u2067 turned\\n'; sleep 3600"


@pytest.fixture
async def api(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[Api]:
    """The app serving a workspace whose agent `helper` may start background processes."""
    async with serving_background_processes(tmp_path / "ws", fake_llm.url, git=False) as (served, _data):
        yield served


def token_of(api: Api) -> str:
    """The workspace's API token (the server made one), to log in with."""
    return api.http.headers["Authorization"].removeprefix("Bearer ")


def admin_token_of(api: Api) -> str:
    """The workspace's admin token (the server made one)."""
    token = api.server.app[REQUIRED_TOKENS].admin
    assert token
    return token


async def spawn(api: Api, fake_llm: FakeLLMServer, session_id: str, command: str, label: str) -> str:
    """Have the session's agent start `command` in the background; its handle."""
    spawn = {"action": "spawn", "command": command, "label": label}
    fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("It runs."))
    path = f"/api/v1/sessions/{session_id}"
    status, done = await api.call("POST", f"{path}/messages", {"content": "start it"})
    if status == 202:  # (the policy asks before running most commands)
        decision = {"call_id": done["call_id"], "decision": "allow_once"}
        status, done = await api.call("POST", f"{path}/approve", decision)
    assert (status, done["content"]) == (200, "It runs."), done
    processes = api.server.app[STATE].processes
    [record] = [r for r in processes.list() if r.label == label]
    return record.handle


async def told_of_its_end(api: Api, session_id: str, handle: str) -> None:
    """Once the session has answered the `[process finished]` message about `handle` (a turn of its
    own, which would otherwise take the reply scripted for the next message)."""
    state = api.server.app[STATE]
    live = state.sessions.live[session_id]
    kinds = SessionReadOptions(types=["user_message", "assistant_message"])

    async def answered() -> bool | None:
        events = await state.workspace.stores.sessions.read(session_id, kinds)
        told = any(
            "[process finished]" in str(e.payload.get("content")) and handle in str(e.payload.get("content"))
            for e in events
        )
        return True if told and events[-1].type == "assistant_message" and not live.busy else None

    await eventually(answered)


@pytest.mark.slow
async def test_processes_are_listed_running_first_and_one_is_killed_from_its_page(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    from playwright.async_api import expect

    processes = api.server.app[STATE].processes
    session_id = await api.new_session()
    quick = await spawn(api, fake_llm, session_id, "echo finished", "quick")
    await until(lambda: processes.get(quick).ended)
    await told_of_its_end(api, session_id, quick)
    noisy = await spawn(api, fake_llm, session_id, NOISY, "noisy")
    await until(lambda: processes.get(noisy).output_bytes > 0)

    async with headless_chromium() as chromium:
        page: Any = await new_page(chromium)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())
        await log_in(page, api.url(""), admin_token_of(api))
        await page.click("nav >> text=Processes")
        rows = page.locator("table.processes tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_contain_text(noisy)
        await expect(rows.nth(0)).to_contain_text("running")
        await expect(rows.nth(0)).to_contain_text("helper")
        await expect(rows.nth(1)).to_contain_text(quick)
        await expect(rows.nth(1)).to_contain_text("exited with code 0")
        assert await rows.nth(0).locator(f'a[href="/ui/sessions/{session_id}"]').count() == 1

        await rows.nth(0).locator(f"text={noisy}").click()
        output = page.locator("#output")
        # the markup as text; the escape and the isolate written out, as `duragent process show` does
        await expect(output).to_contain_text("ready <b>bold</b> \\x1b[31mred")
        await expect(output).to_contain_text("\\u2067 turned")
        assert await output.locator("b").count() == 0
        await page.locator("#kill button").click()
        await expect(page.locator(".notice")).to_contain_text("Killed")
        await expect(page.locator("#process-status")).to_contain_text("killed from the dashboard")
        await expect(page.locator("#kill")).to_have_count(0)
        assert processes.get(noisy).status == "killed"

        # an ended process offers no Kill
        await page.goto(api.url(f"/ui/processes/{quick}"))
        await expect(page.locator("#output")).to_contain_text("finished")
        await expect(page.locator("#kill")).to_have_count(0)
    assert errors == []


async def test_kill_refuses_a_post_without_the_csrf_token_and_an_ended_process(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    processes = api.server.app[STATE].processes
    session_id = await api.new_session()
    handle = await spawn(api, fake_llm, session_id, "sleep 3600", "sleeper")
    process_page = api.url(f"/ui/processes/{handle}")
    async with browser() as http:
        await log_in_over_http(api, http, admin_token_of(api))
        for forged in ({}, {"csrf": "forged"}):
            async with http.post(f"{process_page}/kill", data=forged, allow_redirects=False) as r:
                assert r.status == 403
        assert processes.get(handle).status == "running"

        csrf = await csrf_of(http, process_page)
        async with http.post(f"{process_page}/kill", data={"csrf": csrf}, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, f"/ui/processes/{handle}?done=killed")
        assert processes.get(handle).status == "killed"
        async with http.post(f"{process_page}/kill", data={"csrf": csrf}) as r:
            assert r.status == 400
            assert "is not running" in await r.text()
        async with http.get(api.url("/ui/processes/proc_nosuch")) as r:
            assert r.status == 404
            assert "no background process" in await r.text()


@pytest.mark.slow
async def test_the_processes_pages_show_a_process_ending_without_a_reload(
    api: Api, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    live = 15_000  # longer than the pages' refresh period, with room for a loaded machine
    processes = api.server.app[STATE].processes
    session_id = await api.new_session()
    go = tmp_path / "go"
    waits = f"echo waiting; while [ ! -e {go} ]; do sleep 0.05; done; echo done"
    waiter = await spawn(api, fake_llm, session_id, waits, "waiter")
    sleeper = await spawn(api, fake_llm, session_id, "sleep 3600", "sleeper")
    await until(lambda: processes.get(waiter).output_bytes > 0)

    async with headless_chromium() as chromium:
        page: Any = await new_page(chromium)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await log_in(page, api.url(""), admin_token_of(api))
        await page.goto(api.url(f"/ui/processes/{waiter}"))
        await expect(page.locator("#process-status")).to_have_text("running")
        await expect(page.locator("#kill")).to_have_count(1)

        go.touch()  # it finishes: its state, its last output, and no more Kill
        await expect(page.locator("#process-status")).to_have_text("exited with code 0", timeout=live)
        await expect(page.locator("#output")).to_contain_text("done")
        await expect(page.locator("#kill")).to_have_count(0)

        await page.goto(api.url("/ui/processes"))
        row = page.locator("table.processes tbody tr", has_text=sleeper)
        await expect(row).to_contain_text("running")
        await processes.kill(sleeper, reason="killed from the terminal")  # (as `duragent process kill`)
        await expect(row).to_contain_text("killed from the terminal", timeout=live)
    assert errors == []


async def test_only_a_login_made_with_the_admin_token_may_kill(api: Api, fake_llm: FakeLLMServer) -> None:
    """Killing a process needs the admin token in the API (`/api/admin/v1`): the dashboard asks the
    same of the login, whether made with the token or by `duragent ui`'s link."""
    processes = api.server.app[STATE].processes
    session_id = await api.new_session()
    handle = await spawn(api, fake_llm, session_id, "sleep 3600", "sleeper")
    process_page = api.url(f"/ui/processes/{handle}")
    async with browser() as http:
        await log_in_over_http(api, http, token_of(api))
        async with http.get(process_page) as page:
            assert page.status == 403  # (the page itself is the admin API's, `GET .../processes/{handle}`)
            shown = await page.text()
        assert 'id="kill"' not in shown
        assert "admin token" in shown  # (it says why)
        csrf = await csrf_of(http, api.url("/ui/sessions"))
        async with http.post(f"{process_page}/kill", data={"csrf": csrf}) as r:
            assert r.status == 403
            assert "admin token" in await r.text()
        assert processes.get(handle).status == "running"

    # neither may a login by a link asked for with the API token alone
    ticket_url = api.url("/api/v1/dashboard/login-ticket")
    async with api.anonymous() as client:
        bearer = {"Authorization": f"Bearer {token_of(api)}"}
        async with client.post(ticket_url, json={}, headers=bearer) as answer:
            assert answer.status == 200
            ticket = await answer.json()
    async with browser() as http, http.get(api.url(ticket["path"] + f"&next=/ui/processes/{handle}")) as r:
        assert r.status == 403
        assert "admin token" in await r.text()

    # `duragent ui` sends the admin token along when it has it: its link logs in as admin
    headers = {"Authorization": f"Bearer {token_of(api)}", ADMIN_TOKEN_HEADER: admin_token_of(api)}
    status, ticket = await api.call("POST", "/api/v1/dashboard/login-ticket", headers=headers)
    assert status == 200
    async with browser() as http:
        async with http.get(api.url(ticket["path"])) as r:
            assert r.status == 200
        csrf = await csrf_of(http, process_page)
        async with http.post(f"{process_page}/kill", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        assert processes.get(handle).status == "killed"
