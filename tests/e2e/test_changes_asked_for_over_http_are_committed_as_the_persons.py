"""What a person asks the server for over HTTP (`duragent session delete` beside a running
server, a schedule made, paused or removed) is committed with their git identity, its kind
trailers kept, so `duragent history` says who did it."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.vcs.history import read_history
from tests.e2e.server_harness import Api, ApiFactory
from tests.waiting import until

PERSON = "Test Person <person@example.test>"
DASHBOARD_TOKEN = "attribution-token"


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(data), *args], capture_output=True, text=True, check=True).stdout


def authors_and_trailers(data: Path, path: str) -> list[str]:
    return git(data, "log", "--format=%an <%ae>|%(trailers:separator=%x2c )", "--", path).splitlines()


async def test_a_session_deleted_and_a_schedule_changed_over_http_are_the_persons(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    fake_llm.enqueue(text("hello"))
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200, body
    await until(lambda: bool(git(data, "log", "--format=%H", "--", f"sessions/{session_id}")), within=30)

    status, body = await api.call("DELETE", f"/api/v1/sessions/{session_id}")
    assert status == 204, body
    await until(lambda: not git(data, "ls-tree", "-r", "HEAD", f"sessions/{session_id}"), within=30)
    status, made = await api.call(
        "POST", "/api/v1/schedules", {"agent": "helper", "every": "1h", "message": "x"}
    )
    assert status == 201, made
    schedule_id = made["schedule"]["id"]
    schedule_file = f"schedules/{schedule_id}.yaml"
    # each change committed before the next (in one batch, a file made and removed is no change)
    await until(lambda: len(authors_and_trailers(data, schedule_file)) == 1, within=30)
    status, body = await api.call("POST", f"/api/v1/schedules/{schedule_id}/pause")
    assert status == 200, body
    await until(lambda: len(authors_and_trailers(data, schedule_file)) == 2, within=30)
    status, body = await api.call("DELETE", f"/api/v1/schedules/{schedule_id}")
    assert status == 204, body
    await until(lambda: len(authors_and_trailers(data, schedule_file)) == 3, within=30)

    author, trailers = authors_and_trailers(data, f"sessions/{session_id}")[0].split("|")
    assert author == PERSON
    for trailer in ("Duragent-Kind: session", f"Duragent-Session: {session_id}", "Duragent-By: person"):
        assert trailer in trailers.split(", ")
    assert (
        authors_and_trailers(data, schedule_file)
        == [f"{PERSON}|Duragent-Kind: schedule, Duragent-By: person"] * 3
    )
    deleted, *turns = read_history(data, session=session_id)
    assert (deleted.author, deleted.author_kind) == (PERSON, "human")
    # the agent's own turn stays the agent's
    assert turns
    assert all(entry.author_kind == "agent" for entry in turns)


async def end_over_the_dashboard(api: Api, session_id: str) -> None:
    from tests.e2e.test_dashboard import browser, csrf_of, log_in

    session_page = api.url(f"/ui/sessions/{session_id}")
    async with browser() as http:
        await log_in(api, http, DASHBOARD_TOKEN)
        data = {"csrf": await csrf_of(http, session_page), "confirm": "yes"}
        async with http.post(f"{session_page}/end", data=data, allow_redirects=False) as response:
            assert response.status == 303


async def end_over_the_api(api: Api, session_id: str) -> None:
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/end")
    assert status == 200, body


async def end_for_another_worker(api: Api, session_id: str) -> None:
    """As the worker that runs the session serves an end another worker got (scaling out)."""
    from duragent.server.routes.sessions import serve_for_another_worker
    from duragent.server.state import STATE

    answer = await serve_for_another_worker(api.server.app[STATE], session_id, "end", {})
    assert answer["status"] == 200, answer


@pytest.mark.parametrize(
    "end",
    [end_over_the_api, end_over_the_dashboard, end_for_another_worker],
    ids=["api", "dashboard", "served-for-another-worker"],
)
async def test_a_session_a_person_ends_is_committed_as_theirs(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    end: Callable[[Api, str], Awaitable[None]],
) -> None:
    api = await start_api(git=True, api_token=DASHBOARD_TOKEN)
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    fake_llm.enqueue(text("hello"))
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200, body
    await until(lambda: bool(git(data, "log", "--format=%H", "--", f"sessions/{session_id}")), within=30)

    await end(api, session_id)
    last_subject = ("log", "-1", "--format=%s", "--", f"sessions/{session_id}")
    await until(lambda: "ended" in git(data, *last_subject), within=30)

    author, trailers = authors_and_trailers(data, f"sessions/{session_id}")[0].split("|")
    assert author == PERSON
    for trailer in ("Duragent-Kind: session", f"Duragent-Session: {session_id}", "Duragent-By: person"):
        assert trailer in trailers.split(", ")
    ended, *turns = read_history(data, session=session_id)
    assert (ended.author, ended.author_kind) == (PERSON, "human")
    assert turns
    assert all(entry.author_kind == "agent" for entry in turns)
