"""What a person asks the server for over HTTP (`duragent session delete` beside a running
server, a schedule made, paused or removed, a turn cancelled, a session resumed, a tool call
approved) is committed with their git identity, its kind trailers kept, so `duragent history`
says who did it; what the agent's turn does after it stays the agent's."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, delay, text, tool_calls
from duragent.vcs.history import read_history
from tests.e2e.server_harness import Api, ApiFactory, collect_until
from tests.waiting import eventually, until

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


def events_as_committed(data: Path, session_id: str) -> list[tuple[str, str]]:
    """Each event of the session's log as git holds it, in order: (what it is, whose commit added
    it: "person" or "agent"). A status change reads `status_change (<reason>)`."""
    path = f"sessions/{session_id}/events.jsonl"
    commits = git(
        data,
        "log",
        "--reverse",
        "--format=%H|%an <%ae>|%(trailers:key=Duragent-By,valueonly,separator=%x2c)",
        "--",
        path,
    )
    events: list[tuple[str, str]] = []
    for commit in commits.splitlines():
        sha, author, by = commit.split("|")
        whose = "person" if by.strip() == "person" else "agent"
        assert (author == PERSON) == (whose == "person"), commit
        lines = git(data, "show", f"{sha}:{path}").splitlines()
        for line in lines[len(events) :]:
            event = json.loads(line)
            reason = event["payload"].get("reason") if event["type"] == "status_change" else None
            events.append((event["type"] if reason is None else f"status_change ({reason})", whose))
    return events


async def all_committed(api: Api, data: Path, session_id: str) -> None:
    """Wait until the session's turn has ended (its status settled) and git holds every event
    its log has."""
    live = api.server.app[STATE].sessions.live[session_id]
    log_file = data / "sessions" / session_id / "events.jsonl"
    show = ["git", "-C", str(data), "show", f"HEAD:sessions/{session_id}/events.jsonl"]

    def done() -> bool:
        # (git fails to show the log before its first commit: nothing committed yet)
        return (
            live.turn_finished.is_set()
            and not live.busy
            and subprocess.run(show, capture_output=True, text=True).stdout == log_file.read_text()
        )

    await until(done, within=30)


async def approve_over_the_api(api: Api, session_id: str, call_id: str) -> None:
    body = {"call_id": call_id, "decision": "allow_once"}
    status, answer = await api.call("POST", f"/api/v1/sessions/{session_id}/approve", body)
    assert status == 200, answer


async def approve_over_the_dashboard(api: Api, session_id: str, call_id: str) -> None:
    from tests.e2e.test_dashboard import browser, csrf_of, log_in

    session_page = api.url(f"/ui/sessions/{session_id}")
    async with browser() as http:
        await log_in(api, http, DASHBOARD_TOKEN)
        form = {"csrf": await csrf_of(http, session_page), "call_id": call_id, "decision": "allow_once"}
        async with http.post(f"{session_page}/approve", data=form, allow_redirects=False) as response:
            assert response.status == 303


@pytest.mark.parametrize(
    "approve", [approve_over_the_api, approve_over_the_dashboard], ids=["api", "dashboard"]
)
async def test_an_approval_a_person_answers_is_theirs_and_the_turn_it_lets_go_on_the_agents(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    approve: Callable[[Api, str, str], Awaitable[None]],
) -> None:
    api = await start_api(git=True, api_token=DASHBOARD_TOKEN)
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch marker"})]), text("made the file"))
    status, asked = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "touch it"})
    assert status == 202, asked

    # answered at once: the question, the answer and what the turn does next are likely committed
    # in one batch (test_committer.py pins that case down)
    await approve(api, session_id, asked["call_id"])
    await all_committed(api, data, session_id)

    events = events_as_committed(data, session_id)
    assert [event for event in events if event[1] == "person"] == [
        ("approval_decision", "person"),
        ("status_change (approval allow_once)", "person"),
    ]
    answered = events.index(("approval_decision", "person"))
    assert events[answered - 2 : answered + 4] == [
        ("approval_required", "agent"),
        ("status_change (awaiting approval)", "agent"),
        ("approval_decision", "person"),
        ("status_change (approval allow_once)", "person"),
        # the turn the answer lets go on: the command's result and the reply
        ("tool_result", "agent"),
        ("assistant_message", "agent"),
    ]
    history = read_history(data, session=session_id)
    assert [entry.author_kind for entry in history].count("human") == 1


async def test_a_turn_a_person_cancels_is_cancelled_as_theirs_and_the_next_turn_is_the_agents(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    fake_llm.enqueue(delay(60, text("too late")), text("the next answer"))
    path = f"/api/v1/sessions/{session_id}/messages"
    sending = asyncio.ensure_future(api.call("POST", path, {"content": "think for a long time"}))
    await until(lambda: len(fake_llm.requests) == 1)

    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/cancel")
    assert (status, body["status"]) == (200, "cancelled"), body
    await sending
    status, body = await api.call("POST", path, {"content": "then answer quickly"})
    assert (status, body["content"]) == (200, "the next answer"), body
    await all_committed(api, data, session_id)

    events = events_as_committed(data, session_id)
    assert [event for event in events if event[1] == "person"] == [("cancelled", "person")]
    assert events[1:3] == [("user_message", "agent"), ("cancelled", "person")]
    # the next turn is the agent's
    assert events[-2:] == [("user_message", "agent"), ("assistant_message", "agent")]


async def resume_then_approve(api: Api, session_id: str, call_id: str) -> None:
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/resume")
    assert status == 202, body

    async def asked_again() -> str | None:
        _, info = await api.call("GET", f"/api/v1/sessions/{session_id}")
        return (
            str(info["pending_approvals"][0]["call_id"])
            if info["busy"] and info["pending_approvals"]
            else None
        )

    await approve_over_the_api(api, session_id, await eventually(asked_again))


@pytest.mark.parametrize(
    "go_on", [resume_then_approve, approve_over_the_api], ids=["resumed-then-approved", "approved"]
)
async def test_a_stopped_turn_a_person_takes_up_is_resumed_as_theirs_and_runs_on_as_the_agents(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    go_on: Callable[[Api, str, str], Awaitable[None]],
) -> None:
    from tests.integration.test_stopped_turns import stopped_over_http

    api = await start_api(git=True, max_background="1s")
    data = tmp_path / "ws0" / "data"
    session_id, waiting = await stopped_over_http(api, fake_llm)

    await go_on(api, session_id, waiting["call_id"])
    await all_committed(api, data, session_id)

    events = events_as_committed(data, session_id)
    assert [event for event in events if event[1] == "person"] == [
        ("status_change (resumed)", "person"),
        ("approval_decision", "person"),
        ("status_change (approval allow_once)", "person"),
    ]
    assert events.count(("approval_required", "agent")) == 2  # asked, and asked again once resumed
    assert events[-2:] == [("tool_result", "agent"), ("assistant_message", "agent")]


async def attach_over_the_events_stream(api: Api, session_id: str) -> None:
    """`duragent attach`: the stream follows the turn attaching resumed to its end."""
    async with api.http.get(api.url(f"/api/v1/sessions/{session_id}/events")) as response:
        events = await collect_until(response, "done")
    assert events[-1].data["content"] == "finished after resume"


async def attach_with_a_message(api: Api, session_id: str) -> None:
    """A client posting a message attaches: the resumed turn finishes first, then the message's."""
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "and now?"})
    assert (status, body["content"]) == (200, "the message's answer"), body


@pytest.mark.parametrize(
    "attach", [attach_over_the_events_stream, attach_with_a_message], ids=["events", "message"]
)
async def test_a_paused_session_a_person_attaches_to_is_resumed_as_theirs_and_runs_on_as_the_agents(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    attach: Callable[[Api, str], Awaitable[None]],
) -> None:
    from tests.e2e.test_server_detach import stream_a_few, wait_for

    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo step"})], text="a b c d e f", chunk_delay=0.05),
        text("finished after resume"),
        text("the message's answer"),
    )
    session_id = await api.new_session("pauser")  # on_disconnect: pause
    await stream_a_few(api, session_id, 1)  # the client hangs up mid-turn
    await wait_for(api, session_id, lambda s: s["status"] == "paused" and not s["busy"])

    await attach(api, session_id)
    await all_committed(api, data, session_id)

    committed = events_as_committed(data, session_id)
    assert [event for event in committed if event[1] == "person"] == [("status_change (resumed)", "person")]
    resumed = committed.index(("status_change (resumed)", "person"))
    assert committed[resumed - 1] == ("status_change (client disconnected (on_disconnect: pause))", "agent")
    # the turn the attach let go on (and the message's, after it) are the agent's
    assert ("attempt_restarted", "agent") in committed[resumed + 1 :]
    assert committed[-1] == ("assistant_message", "agent")
