"""tmux-like sessions over HTTP: leaving mid-turn, coming back, pausing, background limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from duragent.sessions.stream import Position
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory, SSEEvent, collect_until, read_sse

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def wait_for(api: Api, session_id: str, predicate: Any, within: float = 10) -> dict[str, Any]:
    """Poll GET /sessions/{id} until `predicate(body)`."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        _, body = await api.call("GET", f"/api/v1/sessions/{session_id}")
        if predicate(body):
            return dict(body)
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def stream_a_few(api: Api, session_id: str, count: int) -> list[SSEEvent]:
    """Start a streamed turn, read `count` token events, then hang up."""
    seen: list[SSEEvent] = []
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "go"}
    ) as response:
        async for event in read_sse(response):
            seen.append(event)
            if sum(e.event == "token" for e in seen) >= count:
                break
    return seen


async def test_reattach_with_last_event_id_gets_every_missed_event_once_in_order(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    words = [f"w{i} " for i in range(30)]
    fake_llm.enqueue(text("".join(words), chunks=30, chunk_delay=0.02))
    session_id = await api.new_session()
    seen = await stream_a_few(api, session_id, 3)
    running = await wait_for(api, session_id, lambda s: s["status"] == "running")
    assert running["attached"] == 0
    assert running["busy"]
    await wait_for(api, session_id, lambda s: not s["busy"])
    last_id = seen[-1].id
    async with api.http.get(
        api.url(f"/api/v1/sessions/{session_id}/events"), headers={"Last-Event-ID": str(last_id)}
    ) as response:
        missed = await collect_until(response, "done")
    positions = [Position.parse(e.id) for e in seen + missed]
    assert positions == sorted(set(positions))
    tokens = "".join(e.data["content"] for e in seen + missed if e.event == "token")
    assert tokens == "".join(words)
    assert missed[-1].event == "done"
    assert missed[-1].data["content"] == "".join(words)
    statuses = [(e.data["from"], e.data["to"]) for e in missed if e.event == "status"]
    assert ("active", "running") in statuses


async def test_pause_mode_client_leaving_during_the_last_model_call_pauses_before_the_queued_message(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    reply = " ".join(f"w{i}" for i in range(30))  # three seconds of streaming: time to queue and leave
    fake_llm.enqueue(text(reply, chunks=30, chunk_delay=0.1), text("answer to the second"))
    session_id = await api.new_session("pauser")
    path = f"/api/v1/sessions/{session_id}"
    async with api.http.post(api.url(f"{path}/stream"), json={"content": "first"}) as response:
        async for event in read_sse(response):
            if event.event == "token":
                assert await api.call("POST", f"{path}/messages", {"content": "second"}) == (
                    202,
                    {"status": "queued", "position": 1},
                )
                break  # hang up while the turn's last model call streams: it has no safe point left
    paused = await wait_for(api, session_id, lambda s: s["status"] == "paused" and not s["busy"])
    assert paused["queued"] == 1
    assert len(fake_llm.requests) == 1  # the queued message waits for a client
    status, body = await api.call("POST", f"{path}/resume")
    assert (status, body["status"]) == (202, "active")
    await wait_for(api, session_id, lambda s: not s["busy"] and s["queued"] == 0)
    _, history = await api.call("GET", f"{path}/messages")
    assert [m["content"] for m in history["messages"]] == [
        "first",
        reply,
        "second",
        "answer to the second",
    ]


async def test_pause_mode_pauses_when_the_client_leaves_and_resumes_on_reattach(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo step"})], text="a b c d e f", chunk_delay=0.05),
        text("finished after resume"),
    )
    session_id = await api.new_session("pauser")
    await stream_a_few(api, session_id, 1)
    paused = await wait_for(api, session_id, lambda s: s["status"] == "paused" and not s["busy"])
    assert paused["on_disconnect"] == "pause"
    assert len(fake_llm.requests) == 1  # stopped before asking the model again
    async with api.http.get(api.url(f"/api/v1/sessions/{session_id}/events")) as response:
        events = await collect_until(response, "done")
    assert events[-1].data["content"] == "finished after resume"
    assert events[0].event == "status"
    assert events[0].data["to"] == "active"


async def test_resume_continues_a_paused_session(start_api: ApiFactory, fake_llm: FakeLLMServer) -> None:
    api = await start_api(git=False)
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo step"})], text="x y z", chunk_delay=0.05), text("resumed")
    )
    session_id = await api.new_session("pauser")
    await stream_a_few(api, session_id, 1)
    await wait_for(api, session_id, lambda s: s["status"] == "paused" and not s["busy"])
    status, _body = await api.call("POST", f"/api/v1/sessions/{session_id}/resume")
    assert status == 202
    await wait_for(api, session_id, lambda s: s["status"] == "active" and not s["busy"])
    _, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
    assert history["messages"][-1]["content"] == "resumed"


async def test_max_background_runtime_pauses_an_unattended_session(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False, max_background="1s")
    fake_llm.enqueue(
        *[
            tool_calls([("bash", {"command": f"echo {i}"})], text=f"step {i}", chunk_delay=0.2)
            for i in range(10)
        ]
    )
    session_id = await api.new_session()
    await stream_a_few(api, session_id, 1)
    paused = await wait_for(api, session_id, lambda s: s["status"] == "paused" and not s["busy"], within=8)
    assert paused["status"] == "paused"
    async with api.http.get(api.url(f"/api/v1/sessions/{session_id}/events?after=0")) as response:
        events: list[SSEEvent] = []
        async for event in read_sse(response):
            events.append(event)
            if event.event == "status" and event.data["to"] == "paused":
                break
    assert "max_background_runtime" in events[-1].data["reason"]
    assert len(fake_llm.requests) < 10


async def test_a_running_session_says_how_long_it_was_unattended_and_when_it_will_be_paused(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False, max_background="2h")
    fake_llm.enqueue(text(" ".join(f"w{i}" for i in range(60)), chunks=60, chunk_delay=0.1))
    session_id = await api.new_session()
    _, before = await api.call("GET", f"/api/v1/sessions/{session_id}")
    await stream_a_few(api, session_id, 1)

    running = await wait_for(api, session_id, lambda s: s["status"] == "running")

    assert "unattended" not in before  # no turn yet: nothing runs on its own
    unattended = running["unattended"]
    since = datetime.fromisoformat(unattended["unattended_since"])
    assert abs((datetime.now(UTC) - since).total_seconds()) < 10
    assert 0 <= unattended["unattended_seconds"] < 10
    assert unattended["max_background_runtime_seconds"] == 7200
    assert datetime.fromisoformat(unattended["pauses_at"]) == since + timedelta(hours=2)
    async with api.http.get(api.url(f"/api/v1/sessions/{session_id}/events")) as response:
        await collect_until(response, "status")  # a client is back: the clock stops
        attended = await wait_for(api, session_id, lambda s: s["status"] == "active")
        assert attended["busy"]
        assert "unattended" not in attended
