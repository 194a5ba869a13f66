"""The HTTP API in-process (aiohttp TestServer on 127.0.0.1) against the fake LLM server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.server.app import create_app
from duragent.server.state import STATE
from duragent.sessions.live import Ticket
from duragent.sessions.log import run_until_it_waits
from duragent.sessions.stream import Position
from duragent.stores.base import SessionEvent
from duragent.testing.fake_llm import FakeLLMServer, echo, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory, SSEEvent, collect_until, read_sse, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_health_routes_answer_with_rust_shapes(api: Api) -> None:
    assert await api.call("GET", "/livez") == (200, "ok")
    status, ready = await api.call("GET", "/readyz")
    assert status == 200
    assert ready["status"] == "ok"
    assert len(ready["workspace_hash"]) == 64
    status, version = await api.call("GET", "/version")
    assert status == 200
    assert version["version"]
    status, metrics = await api.call("GET", "/metrics")
    assert status == 200
    assert "duragent_" in metrics


async def test_agents_are_listed_and_described(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/agents")
    assert status == 200
    assert {"name": "helper", "description": "A test agent", "version": "1.2"} in body["agents"]
    status, agent = await api.call("GET", "/api/v1/agents/helper")
    assert status == 200
    assert agent["metadata"]["name"] == "helper"
    assert agent["spec"]["model"]["provider"] == "openai"
    assert agent["spec"]["system_prompt"] == "You are a test agent."
    status, problem = await api.call("GET", "/api/v1/agents/nobody")
    assert status == 404
    assert "nobody" in problem["detail"]
    assert problem["status"] == 404


async def test_sessions_are_created_listed_read_and_deleted(api: Api) -> None:
    status, created = await api.call(
        "POST", "/api/v1/sessions", {"agent": "helper", "metadata": {"k": "v", "name": "try-b"}}
    )
    assert status == 201
    assert created["status"] == "active"
    assert created["agent"] == "helper"
    session_id = created["session_id"]
    second = await api.new_session("pauser")
    status, listing = await api.call("GET", "/api/v1/sessions")
    assert status == 200
    assert {s["session_id"] for s in listing["sessions"]} == {session_id, second}
    # the list shows a session's name (what `attach NAME` resolves), not the rest of its metadata
    assert {s["session_id"]: s.get("metadata") for s in listing["sessions"]} == {
        session_id: {"name": "try-b"},
        second: None,
    }
    # nobody has written to either yet: no first message to tell them apart by
    assert all("first_message" not in s for s in listing["sessions"])
    status, only = await api.call("GET", "/api/v1/sessions?agent=pauser")
    assert [s["session_id"] for s in only["sessions"]] == [second]
    status, one = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert status == 200
    assert one["metadata"] == {"k": "v", "name": "try-b"}
    assert one["on_disconnect"] == "continue"
    assert (await api.call("DELETE", f"/api/v1/sessions/{session_id}"))[0] == 204
    assert (await api.call("GET", f"/api/v1/sessions/{session_id}"))[0] == 404
    assert (await api.call("DELETE", f"/api/v1/sessions/{session_id}"))[0] == 404


async def test_session_list_pages_with_a_cursor_without_gaps_or_repeats(api: Api) -> None:
    created = {await api.new_session() for _ in range(5)}
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await api.call("GET", "/api/v1/sessions" + query)
        assert status == 200
        assert len(page["sessions"]) <= 2
        seen += [s["session_id"] for s in page["sessions"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert sorted(seen) == sorted(created)


async def test_a_filtered_session_list_pages_full_pages_newest_first(api: Api) -> None:
    helpers = [await api.new_session("helper") for _ in range(3)]
    await api.new_session("pauser")
    helpers += [await api.new_session("helper") for _ in range(2)]
    _, everything = await api.call("GET", "/api/v1/sessions?agent=helper")
    newest_first = [s["session_id"] for s in everything["sessions"]]
    assert sorted(newest_first) == sorted(helpers)

    pages: list[list[str]] = []
    cursor = None
    while True:
        query = "?agent=helper&limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await api.call("GET", "/api/v1/sessions" + query)
        assert status == 200
        pages.append([s["session_id"] for s in page["sessions"]])
        cursor = page.get("next_cursor")
        if cursor is None:
            break

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [session_id for page in pages for session_id in page] == newest_first


async def test_sync_message_returns_the_reply_and_history_has_it(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("Hello there", chunks=3, usage=(5, 2)))
    session_id = await api.new_session()
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200, reply
    assert reply["role"] == "assistant"
    assert reply["content"] == "Hello there"
    assert reply["message_id"].startswith("msg_")
    assert reply["usage"] == {
        "input_tokens": 5,
        "output_tokens": 2,
    }
    status, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "hi"),
        ("assistant", "Hello there"),
    ]
    _, listing = await api.call("GET", "/api/v1/sessions")
    assert [(s["session_id"], s["first_message"]) for s in listing["sessions"]] == [(session_id, "hi")]


async def test_history_pages_forward_with_after(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    for word in ("one", "two", "three"):
        fake_llm.enqueue(text(f"re {word}"))
        await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": word})
    _, newest = await api.call("GET", f"/api/v1/sessions/{session_id}/messages?limit=2")
    assert [m["content"] for m in newest["messages"]] == ["three", "re three"]
    contents: list[str] = []
    after = 0
    while after is not None:
        _status, page = await api.call("GET", f"/api/v1/sessions/{session_id}/messages?after={after}&limit=4")
        contents += [m["content"] for m in page["messages"]]
        after = page.get("next_after")
    assert contents == ["one", "re one", "two", "re two", "three", "re three"]


async def test_sync_turn_runs_allowed_tools(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo tool-ran"})]), text("it printed tool-ran"))
    session_id = await api.new_session()
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "run it"})
    assert status == 200
    assert reply["content"] == "it printed tool-ran"
    status, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
    types = [m["type"] for m in history["messages"]]
    assert types == ["user_message", "assistant_message", "tool_call", "tool_result", "assistant_message"]
    assert "tool-ran" in history["messages"][3]["content"]


async def test_approval_round_trip_over_sync_messages(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed"))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "list"})
    assert status == 202, pending
    assert pending["status"] == "pending_approval"
    assert pending["tool"] == "bash"
    assert pending["command"] == "ls /"
    assert pending["session_id"] == session_id
    status, session = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert session["status"] == "paused"
    assert session["pending_approvals"][0]["call_id"] == pending["call_id"]
    status, wrong = await api.call(
        "POST", f"/api/v1/sessions/{session_id}/approve", {"call_id": "nope", "decision": "allow_once"}
    )
    assert status == 400
    assert pending["call_id"] in wrong["detail"]
    status, done = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200
    assert done == {
        "status": "complete",
        "message_id": done["message_id"],
        "content": "listed",
    }
    status, _again = await api.call(
        "POST", f"/api/v1/sessions/{session_id}/approve", {"call_id": pending["call_id"], "decision": "deny"}
    )
    assert status == 404


async def test_streamed_turn_sends_rust_event_names_with_positions(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo streamed"})]), text("a b c d", chunks=4))
    session_id = await api.new_session()
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "go"}
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        events = [e async for e in read_sse(response)]
    names = [e.event for e in events]
    assert names[0] == "start"
    assert names[-1] == "done"
    assert {"tool_call", "tool_result", "token"} <= set(names)
    assert set(names) <= {"start", "token", "tool_call", "tool_result", "status", "done"}
    assert "".join(e.data["content"] for e in events if e.event == "token") == "a b c d"
    assert all(e.id for e in events)
    assert events[-1].data["content"] == "a b c d"


async def test_stream_approval_then_approve_finishes_the_turn(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "uname"})]), text("done it"))
    session_id = await api.new_session()
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "go"}
    ) as response:
        events = [e async for e in read_sse(response)]
    assert events[-2].event == "approval_required"
    assert events[-1].event == "status"
    assert events[-1].data["to"] == "paused"
    call_id = events[-2].data["call_id"]
    status, done = await api.call(
        "POST", f"/api/v1/sessions/{session_id}/approve", {"call_id": call_id, "decision": "deny"}
    )
    assert status == 200
    assert done["content"] == "done it"


async def test_message_sent_during_a_turn_is_queued_and_runs_next(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("slow reply", chunks=5, chunk_delay=0.1), text("second reply"))
    session_id = await api.new_session()
    first = asyncio.create_task(
        api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "first"})
    )
    await asyncio.sleep(0.2)
    status, queued = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "second"})
    assert status == 202
    assert queued == {"status": "queued", "position": 1}
    assert (await first)[1]["content"] == "slow reply"
    for _ in range(50):
        status, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
        if len(history["messages"]) == 4:
            break
        await asyncio.sleep(0.05)
    assert [m["content"] for m in history["messages"]] == ["first", "slow reply", "second", "second reply"]


async def test_a_message_sent_once_the_reply_is_stored_is_next_and_recorded(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("first reply"), text("second reply"))
    session_id = await api.new_session()
    live = await api.server.app[STATE].sessions.get(session_id)
    sent: list[tuple[bool, Ticket]] = []

    async def send_next() -> None:
        busy = live.busy  # the first turn has stored its reply and not ended yet
        sent.append((busy, await live.queue("second")))

    def on_reply(events: list[SessionEvent]) -> None:
        if any(e.type == "assistant_message" and e.payload["content"] == "first reply" for e in events):
            # sent at once, as the reply is stored: the turn that replied has not ended yet
            rest = run_until_it_waits(send_next())
            if rest is not None:
                tasks.add(rest)

    tasks: set[asyncio.Task[None]] = set()
    live.log.listeners.append(on_reply)
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "first"})
    assert (status, reply["content"]) == (200, "first reply")
    await asyncio.gather(*tasks)
    [(busy, ticket)] = sent
    assert (busy, ticket.ahead) == (True, 0)
    await asyncio.wait_for(ticket.started, 10)
    await asyncio.wait_for(live.turn_finished.wait(), 10)
    assert live.log.state.conversation[-1]["content"] == "second reply"
    # recorded before queue() returned: a caller that answers at once (the web UI) loses nothing
    assert "message_queued" in [e.type for e in await live.log.store.read(session_id)]


async def test_a_queued_stream_gets_only_its_own_turn(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("first answer", chunks=4, chunk_delay=0.05), text("second answer", chunks=2))
    session_id = await api.new_session()
    first = asyncio.create_task(api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "1"}))
    await asyncio.sleep(0.05)
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "2"}
    ) as response:
        events = [e async for e in read_sse(response)]
    await first
    assert events[0].event == "start"
    assert events[0].data["content"] == "2"
    assert "".join(e.data["content"] for e in events if e.event == "token") == "second answer"


async def test_two_sessions_stream_at_once(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(
        text("x " * 20, chunks=20, chunk_delay=0.01), text("y " * 20, chunks=20, chunk_delay=0.01)
    )
    sessions = [await api.new_session(), await api.new_session()]

    async def stream(session_id: str) -> list[SSEEvent]:
        async with api.http.post(
            api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "go"}
        ) as r:
            return [e async for e in read_sse(r)]

    results = await asyncio.gather(*(stream(s) for s in sessions))
    texts = sorted("".join(e.data["content"] for e in r if e.event == "token") for r in results)
    assert texts == ["x " * 20, "y " * 20]
    assert all(r[-1].event == "done" for r in results)


async def test_many_clients_sending_at_once_each_get_their_own_reply(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    # Requests are accepted a few at a time and turns start a few at a time: 30 at once, some
    # streamed, some waiting for the whole reply, a bad one among them, all come back right.
    fake_llm.default = echo()
    sessions = [await api.new_session() for _ in range(30)]

    async def streamed(session_id: str, n: int) -> str:
        async with api.http.post(
            api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": f"message {n}"}
        ) as r:
            return "".join([e.data["content"] async for e in read_sse(r) if e.event == "token"])

    async def waited(session_id: str, n: int) -> str:
        status, reply = await api.call(
            "POST", f"/api/v1/sessions/{session_id}/messages", {"content": f"message {n}"}
        )
        assert status == 200, reply
        return str(reply["content"])

    async def bad() -> int:
        status, _ = await api.call("POST", f"/api/v1/sessions/{sessions[0]}/messages", {"text": "no content"})
        return status

    calls = [(streamed if n % 2 else waited)(session_id, n) for n, session_id in enumerate(sessions)]
    *replies, bad_status = await asyncio.wait_for(asyncio.gather(*calls, bad()), 30)
    assert replies == [f"echo: message {n}" for n in range(30)]
    assert bad_status == 400


async def test_events_replay_everything_after_a_position_without_duplicates(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("one two", chunks=2))
    session_id = await api.new_session()
    await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    async with api.http.get(api.url(f"/api/v1/sessions/{session_id}/events?after=0")) as response:
        everything = await collect_until(response, "done")
    seqs = [int(e.id or 0) for e in everything]
    assert seqs == sorted(set(seqs))
    assert seqs[0] == 1
    assert everything[0].event == "session_start"
    middle = everything[1].id
    async with api.http.get(
        api.url(f"/api/v1/sessions/{session_id}/events"), headers={"Last-Event-ID": str(middle)}
    ) as response:
        rest = await collect_until(response, "done")
    stored_after = [e.id for e in everything[2:] if "." not in (e.id or "")]
    assert [e.id for e in rest if "." not in (e.id or "")] == stored_after
    positions = [Position.parse(e.id) for e in rest]
    assert positions == sorted(set(positions))
    assert positions[0] > Position.parse(middle)


async def test_cancel_stops_a_running_turn(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("never " * 50, chunks=50, chunk_delay=0.05))
    session_id = await api.new_session()
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "go"}
    ) as response:
        events = []
        async for event in read_sse(response):
            events.append(event)
            if event.event == "token" and len(events) == 3:
                status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/cancel")
                assert status == 200
                assert body["status"] == "cancelled"
    assert events[-1].event == "cancelled"


async def test_errors_are_problem_json_with_field_paths(api: Api) -> None:
    status, problem = await api.call("POST", "/api/v1/sessions", {"agnt": "helper"})
    assert status == 400
    fields = {e["field"] for e in problem["errors"]}
    assert {"body.agent", "body.agnt"} <= fields
    assert problem["type"].startswith("urn:duragent:problem:")
    assert problem["instance"] == "/api/v1/sessions"
    async with api.http.post(
        api.url("/api/v1/sessions"), data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
    async with api.http.get(api.url("/nowhere")) as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
    async with api.http.put(api.url("/api/v1/sessions")) as response:
        assert response.status == 405
        assert response.content_type == "application/problem+json"
    async with api.http.post(
        api.url("/api/v1/sessions"),
        data=b"x" * (3 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert response.content_type == "application/problem+json"
        assert (await response.json())["detail"] == "the request body is too large (at most 2 MiB)"
    status, problem = await api.call("GET", "/api/v1/sessions?limit=0")
    assert status == 400
    assert problem["errors"][0]["field"] == "query.limit"
    status, problem = await api.call(
        "GET", "/api/v1/sessions/s_nope/events", headers={"Last-Event-ID": "x.y"}
    )
    assert status == 400


async def test_openapi_lists_every_route_with_body_schemas(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/livez",
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}/stream",
        "/api/v1/agents/{name}",
    ):
        assert path in paths
    body = paths["/api/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["required"] == ["agent"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/agents/helper"),
        ("GET", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions"),
        ("GET", "/api/v1/sessions/s_x"),
        ("DELETE", "/api/v1/sessions/s_x"),
        ("GET", "/api/v1/sessions/s_x/messages"),
        ("POST", "/api/v1/sessions/s_x/messages"),
        ("POST", "/api/v1/sessions/s_x/stream"),
        ("GET", "/api/v1/sessions/s_x/events"),
        ("POST", "/api/v1/sessions/s_x/approve"),
        ("POST", "/api/v1/sessions/s_x/cancel"),
        ("POST", "/api/v1/sessions/s_x/resume"),
    ],
)
async def test_api_routes_need_the_api_token(start_api: ApiFactory, method: str, path: str) -> None:
    api = await start_api(git=False, api_token="api-secret", admin_token="admin-secret")
    async with api.anonymous() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer admin-secret"}):
            async with http.request(method, api.url(path), headers=headers) as response:
                assert response.status == 401, (headers, await response.text())
                assert response.content_type == "application/problem+json"
    async with api.http.request(
        method, api.url(path), headers={"Authorization": "Bearer api-secret"}
    ) as response:
        assert response.status != 401


async def test_admin_routes_need_the_admin_token(start_api: ApiFactory) -> None:
    api = await start_api(git=False, api_token="api-secret", admin_token="admin-secret")
    async with api.anonymous() as http:
        for headers in ({}, {"Authorization": "Bearer api-secret"}):
            async with http.post(api.url("/api/admin/v1/reload-agents"), headers=headers) as response:
                assert response.status == 403
                assert response.content_type == "application/problem+json"
    async with api.http.post(
        api.url("/api/admin/v1/reload-agents"), headers={"Authorization": "Bearer admin-secret"}
    ) as response:
        assert response.status == 200
    assert (await api.call("GET", "/livez"))[0] == 200


def test_non_loopback_bind_without_tokens_is_refused(tmp_path: Path) -> None:
    from duragent.server.auth import InsecureBind

    config = load_config(write_workspace(tmp_path, "http://127.0.0.1:9"))
    with pytest.raises(InsecureBind, match=r"server\.api_token and admin\.token"):
        create_app(config, host="0.0.0.0")
    create_app(config, host="0.0.0.0", insecure=True)


async def test_streaming_to_an_ended_session_is_a_documented_409(api: Api) -> None:
    """The stream route refuses an ended session as the sync route does, and says so in its OpenAPI."""
    session_id = await api.new_session("helper")
    assert (await api.call("POST", f"/api/v1/sessions/{session_id}/end"))[0] == 200
    status, problem = await api.call("POST", f"/api/v1/sessions/{session_id}/stream", {"content": "hi"})
    assert status == 409
    assert "ended" in problem["detail"]
    _, document = await api.call("GET", "/openapi.json")
    assert "409" in document["paths"]["/api/v1/sessions/{session_id}/stream"]["post"]["responses"]
