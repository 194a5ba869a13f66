"""The dashboard over HTTP (in-process server): login, cookies, CSRF, and what each page does."""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory, collect_until
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-test-token"
#: Logs in to the pages of what only the admin API shows (Agents, Gateways, Processes).
ADMIN = "ui-test-admin-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    return result


async def log_in(api: Api, http: aiohttp.ClientSession, token: str = TOKEN) -> aiohttp.ClientResponse:
    async with http.get(api.url("/ui/login")) as page:
        form_token = re.search(r'name="form_token" value="([^"]+)"', await page.text())
    assert form_token is not None
    response = await http.post(
        api.url("/ui/login"),
        data={"token": token, "form_token": form_token.group(1), "next": "/ui/sessions"},
        allow_redirects=False,
    )
    response.release()
    return response


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as page:
        assert page.status == 200, await page.text()
        found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found is not None
    return found.group(1)


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies of 127.0.0.1, as browsers do."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def git_log(api_data: Path, *fmt: str) -> str:
    return subprocess.run(
        ["git", "log", "-1", f"--format={''.join(fmt)}"],
        cwd=api_data,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws0" / "data"


async def test_pages_need_a_login_and_the_cookie_is_httponly_strict(api: Api) -> None:
    async with browser() as http:
        async with http.get(api.url("/ui/sessions"), allow_redirects=False) as page:
            assert page.status == 302
            assert page.headers["Location"].startswith("/ui/login?next=")
        refused = await log_in(api, http, token="wrong")
        assert refused.status == 200  # the login page again, saying so
        login_cookie = f"duragent_ui_{api.server.port}="
        assert "Set-Cookie" not in refused.headers or login_cookie not in refused.headers["Set-Cookie"]
        async with http.get(api.url("/ui/sessions"), allow_redirects=False) as page:
            assert page.status == 302
        response = await log_in(api, http)
        assert response.status == 303
        assert response.headers["Location"] == "/ui/sessions"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/ui" in cookie
        async with http.get(api.url("/ui/sessions")) as page:
            assert page.status == 200
            assert "New session with" in await page.text()
            assert page.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_the_servers_address_opened_in_a_browser_leads_to_the_dashboards_login(api: Api) -> None:
    async with browser() as http, http.get(api.url("/")) as page:
        assert page.status == 200
        assert page.url.path == "/ui/login"
        assert "<form" in await page.text()


async def test_a_form_post_without_the_csrf_token_is_refused(api: Api) -> None:
    async with browser() as http:
        await log_in(api, http)
        async with http.post(api.url("/ui/sessions"), data={"agent": "helper"}, allow_redirects=False) as r:
            assert r.status == 403
            assert "CSRF" in await r.text()
        async with http.post(
            api.url("/ui/sessions"), data={"agent": "helper", "csrf": "forged"}, allow_redirects=False
        ) as r:
            assert r.status == 403
        _, listing = await api.call("GET", "/api/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
        assert listing["sessions"] == []


async def test_start_a_session_send_a_message_and_answer_an_approval(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch marker"})]), text("made the file"))
    async with browser() as http:
        await log_in(api, http)
        csrf = await csrf_of(http, api.url("/ui/sessions"))
        async with http.post(
            api.url("/ui/sessions"), data={"agent": "helper", "csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
            session_page = r.headers["Location"]
        session_id = session_page.rsplit("/", 1)[-1]
        async with http.post(
            api.url(f"{session_page}/messages"), data={"content": "make a marker", "csrf": csrf}
        ) as r:
            assert r.status == 200
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(200):
            _, session = await api.call("GET", f"/api/v1/sessions/{session_id}", headers=auth)
            if session["pending_approvals"]:
                break
            await asyncio.sleep(0.05)
        async with http.get(api.url(session_page)) as page:
            html = await page.text()
        assert "make a marker" in html
        assert "touch marker" in html
        call_id = session["pending_approvals"][0]["call_id"]
        async with http.post(
            api.url(f"{session_page}/approve"),
            data={"call_id": call_id, "decision": "allow_once", "csrf": csrf},
        ) as r:
            assert r.status == 200
        for _ in range(200):
            _, messages = await api.call("GET", f"/api/v1/sessions/{session_id}/messages", headers=auth)
            if any(m.get("content") == "made the file" for m in messages["messages"]):
                break
            await asyncio.sleep(0.05)
        async with http.get(api.url(session_page)) as page:
            assert "made the file" in await page.text()


async def test_memory_edit_is_committed_as_the_person_and_can_be_reverted(api: Api, tmp_path: Path) -> None:
    data = data_dir(tmp_path)
    async with browser() as http:
        await log_in(api, http)
        page_url = api.url("/ui/memory/helper/MEMORY.md")
        csrf = await csrf_of(http, page_url)
        async with http.post(page_url, data={"text": "# Helper\n\n- likes tea\n", "csrf": csrf}) as r:
            assert r.status == 200
            html = await r.text()
        assert "Saved and committed as" in html
        assert (data / "memory" / "helper" / "MEMORY.md").read_text() == "# Helper\n\n- likes tea\n"
        assert git_log(data, "%an") == "Test Person"
        sha = git_log(data, "%H")
        assert git_log(data, "%s") == "edit: memory/helper/MEMORY.md (in the dashboard)"
        async with http.get(api.url("/ui/history")) as page:
            assert sha[:7] in await page.text()
        async with http.get(api.url(f"/ui/history/{sha}")) as page:
            html = await page.text()
        assert "<ins>+- likes tea</ins>" in html
        async with http.post(api.url(f"/ui/history/{sha}/revert"), data={"csrf": csrf}) as r:
            assert "Yes, revert this change" in await r.text()  # not confirmed: back to the change
        assert (data / "memory" / "helper" / "MEMORY.md").exists()
        async with http.post(
            api.url(f"/ui/history/{sha}/revert"), data={"csrf": csrf, "confirm": "yes"}
        ) as r:
            assert r.status == 200
            assert "Reverted" in await r.text()
        assert not (data / "memory" / "helper" / "MEMORY.md").exists()
        assert git_log(data, "%an") == "Test Person"


async def test_agents_gateways_and_errors_render_as_pages(api: Api) -> None:
    async with browser() as http:
        await log_in(api, http, ADMIN)
        async with http.get(api.url("/ui/agents")) as page:
            html = await page.text()
        assert "helper" in html
        assert "agent.yaml" in html
        async with http.get(api.url("/ui/gateways")) as page:
            assert "No gateway plugins are configured" in await page.text()
        async with http.get(api.url("/ui/sessions/s_nothere")) as page:
            assert page.status == 404
            assert page.content_type == "text/html"
            assert "not found" in await page.text()
        async with http.get(api.url("/ui/memory/helper/..%2Fsecrets.md")) as page:
            assert page.status == 400


async def test_a_memory_file_of_a_day_that_does_not_exist_is_neither_listed_nor_saved(
    api: Api, tmp_path: Path
) -> None:
    """The agent reads only days that exist: a `2026-13-45.md` saved here would never reach it."""
    folder = data_dir(tmp_path) / "memory" / "helper"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "2026-13-45.md").write_text("- never read\n")
    async with browser() as http:
        await log_in(api, http)
        async with http.get(api.url("/ui/memory")) as page:
            assert "2026-13-45" not in await page.text()
        async with http.get(api.url("/ui/memory/helper/2026-02-30.md")) as page:
            assert page.status == 400
    assert not (folder / "2026-02-30.md").exists()


async def test_an_agent_whose_edit_does_not_load_shows_its_problem_and_what_still_answers(
    api: Api, tmp_path: Path
) -> None:
    agent_yaml = data_dir(tmp_path) / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("kind: Agent\n", "kind: Agentz\n", 1))

    async def page_with_problem() -> str | None:
        async with http.get(api.url("/ui/agents")) as page:
            html = await page.text()
        return html if "kind must be" in html else None

    async with browser() as http:
        await log_in(api, http, ADMIN)
        html = await eventually(page_with_problem)
    assert "answers as its last valid version" in html
    assert "Its files changed and do not load" in html
    assert "<h2>helper <span" in html
    assert ">valid</span></h2>" not in html.split("<h2>helper", 1)[1].split("<h2>", 1)[0]


async def test_duragent_ui_ticket_logs_a_browser_in_once(api: Api) -> None:
    status, ticket = await api.call(
        "POST", "/api/v1/dashboard/login-ticket", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    async with browser() as http:
        async with http.get(api.url(ticket["path"]), allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(api.url("/ui/agents"), allow_redirects=False) as r:
            assert r.status == 200
    async with browser() as http, http.get(api.url(ticket["path"])) as r:
        assert "used already or has expired" in await r.text()
    async with api.anonymous() as http, http.post(api.url("/api/v1/dashboard/login-ticket"), json={}) as r:
        assert r.status == 401


async def test_a_used_login_link_opened_again_by_the_browser_it_logged_in_goes_on_in(api: Api) -> None:
    """The link `duragent ui` printed, clicked again (or opened twice): that browser is logged in,
    and is not told to run `duragent ui` again."""
    status, ticket = await api.call(
        "POST", "/api/v1/dashboard/login-ticket", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    async with browser() as http:
        async with http.get(api.url(ticket["path"]), allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(api.url(ticket["path"] + "&next=/ui/agents"), allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/ui/agents"


async def test_log_out_needs_the_csrf_token_and_ends_the_login(api: Api) -> None:
    async with browser() as http:
        await log_in(api, http)
        async with http.post(api.url("/ui/logout"), data={}, allow_redirects=False) as r:
            assert r.status == 403
        csrf = await csrf_of(http, api.url("/ui/sessions"))
        async with http.post(api.url("/ui/logout"), data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(api.url("/ui/sessions"), allow_redirects=False) as page:
            assert page.status == 302


async def test_the_session_page_says_how_long_a_running_session_was_unattended(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text(" ".join(f"w{i}" for i in range(60)), chunks=60, chunk_delay=0.1))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    session_id = await api.new_session()
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "go"}, headers=auth
    ) as response:
        await collect_until(response, "token")  # then hang up: the turn goes on unattended
    for _ in range(200):
        _, session = await api.call("GET", f"/api/v1/sessions/{session_id}", headers=auth)
        if session["status"] == "running":
            break
        await asyncio.sleep(0.05)

    async with browser() as http:
        await log_in(api, http)
        async with http.get(api.url(f"/ui/sessions/{session_id}")) as page:
            html = await page.text()

    found = re.search(r'<p class="meta" id="unattended">Running unattended (.*?)</p>', html)
    assert found is not None, html
    pauses_at = datetime.fromisoformat(session["unattended"]["pauses_at"]).strftime("%Y-%m-%d %H:%M:%S")
    assert f"will be paused at {pauses_at} (max_background_runtime 30m)" in found.group(1)


async def test_the_dashboard_shows_and_answers_a_call_a_stopped_turn_left_waiting(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The turn stopped (the unattended limit) after asking: the session page lists the call, and
    its form takes the turn up again and answers, as the API's /approve does."""
    from tests.integration.test_stopped_turns import stopped_over_http

    api = await start_api(git=False, api_token=TOKEN, max_background="1s")
    session_id, waiting = await stopped_over_http(api, fake_llm)
    session_page = f"/ui/sessions/{session_id}"
    async with browser() as http:
        await log_in(api, http)
        async with http.get(api.url("/ui/sessions")) as page:
            assert "1 approval waiting" in await page.text()
        csrf = await csrf_of(http, api.url(session_page))
        async with http.get(api.url(session_page)) as page:
            assert f'value="{waiting["call_id"]}"' in await page.text()
        async with http.post(
            api.url(f"{session_page}/approve"),
            data={"call_id": waiting["call_id"], "decision": "allow_once", "csrf": csrf},
        ) as r:
            assert r.status == 200

    async def finished() -> bool | None:
        _, messages = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
        return any(m.get("content") == "Touched it." for m in messages["messages"]) or None

    await eventually(finished)  # the turn finishes after the dashboard's answer
    assert (tmp_path / "ws0" / "data" / "work" / "helper" / "asked.txt").exists()
