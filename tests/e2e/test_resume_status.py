"""POST /resume answers the status the session has once resumed, as docs/api.md shows: also when it
comes as a paused turn ends, or twice at once; a session waiting for an approval says to answer it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from duragent.server.state import STATE
from duragent.stores.base import SessionEvent, SessionSnapshot
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, read_sse
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_resume_of_a_paused_session_with_a_queued_message_answers_active(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session("pauser")
    live = await api.server.app[STATE].sessions.get(session_id)
    await live.log.append(
        "status_change", {"from": "active", "to": "paused", "reason": "client disconnected"}
    )
    await live.log.append("message_queued", {"queue_id": "q_1", "content": "later"})
    live.requeue_stored()
    fake_llm.enqueue(text("answered after the resume"))

    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/resume")
    assert (status, body) == (202, {"status": "active", "session_id": session_id})
    await asyncio.wait_for(live.turn_finished.wait(), 10)
    assert live.log.state.conversation[-1]["content"] == "answered after the resume"


async def test_resume_as_a_paused_turn_winds_down_takes_it_up_and_answers_active(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that resumed the session as soon as it saw it pause (its `status` event comes a
    moment before the paused turn has ended) got `202 {"status": "paused"}`, and nothing resumed."""
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo step"})], text="a b c d e f", chunk_delay=0.05),
        text("finished after resume"),
    )
    state = api.server.app[STATE]
    session_id = await api.new_session("pauser")
    path = f"/api/v1/sessions/{session_id}"
    # The paused turn ends once the session's snapshot at the pause is written: held here.
    store = state.workspace.stores.sessions
    snapshotting, snapshot_it = asyncio.Event(), asyncio.Event()
    save_snapshot = store.save_snapshot

    async def held_save_snapshot(snapshot: SessionSnapshot) -> None:
        if snapshot.status == "paused" and not snapshot_it.is_set():
            snapshotting.set()
            await snapshot_it.wait()
        await save_snapshot(snapshot)

    monkeypatch.setattr(store, "save_snapshot", held_save_snapshot)
    async with api.http.post(api.url(f"{path}/stream"), json={"content": "go"}) as response:
        async for event in read_sse(response):
            if event.event == "token":
                break  # the only client leaves: the turn pauses at its next safe point
    await asyncio.wait_for(snapshotting.wait(), 10)
    live = state.sessions.live[session_id]
    assert (live.status, live.busy) == ("paused", True)
    resume = live.resume
    resuming = asyncio.Event()

    async def resume_seen() -> None:
        resuming.set()
        await resume()

    monkeypatch.setattr(live, "resume", resume_seen)
    answer = asyncio.ensure_future(api.call("POST", f"{path}/resume"))
    await asyncio.wait_for(resuming.wait(), 10)
    snapshot_it.set()

    status, body = await asyncio.wait_for(answer, 10)
    assert (status, body) == (202, {"status": "active", "session_id": session_id})
    await until(lambda: live.log.state.conversation[-1]["content"] == "finished after resume")


async def test_two_resumes_at_once_take_the_turn_up_once(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both found the session paused and no turn running: each started the stopped turn."""
    fake_llm.enqueue(text("answered once", chunks=5, chunk_delay=0.05), text("answered twice"))
    state = api.server.app[STATE]
    session_id = await api.new_session("pauser")
    live = await state.sessions.get(session_id)
    await live.log.append("user_message", {"content": "stopped midway", "turn": 1})
    await live.log.append("status_change", {"from": "active", "to": "paused", "reason": "ran unattended"})
    store = state.workspace.stores.sessions
    storing, store_it = asyncio.Event(), asyncio.Event()
    append = store.append

    async def held_append(session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        batch = [events] if isinstance(events, SessionEvent) else list(events)
        if any(event.payload.get("reason") == "resumed" for event in batch):
            storing.set()
            await store_it.wait()
        await append(session_id, events)

    monkeypatch.setattr(store, "append", held_append)
    path = f"/api/v1/sessions/{session_id}/resume"
    first = asyncio.ensure_future(api.call("POST", path))
    await asyncio.wait_for(storing.wait(), 10)
    resume = live.resume
    second_resuming = asyncio.Event()

    async def resume_seen() -> None:
        second_resuming.set()
        await resume()

    monkeypatch.setattr(live, "resume", resume_seen)
    second = asyncio.ensure_future(api.call("POST", path))
    await asyncio.wait_for(second_resuming.wait(), 10)
    store_it.set()

    assert [(await first)[0], (await second)[0]] == [202, 202]
    await until(lambda: not live.busy)
    assert len(fake_llm.requests) == 1
    assert [m["content"] for m in live.log.state.conversation] == ["stopped midway", "answered once"]


async def test_resume_of_a_session_waiting_for_an_approval_says_to_answer_it(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    """It answered `202 {"status": "paused"}`, which docs/api.md does not list, and resumed nothing."""
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]))
    session_id = await api.new_session()
    path = f"/api/v1/sessions/{session_id}"
    status, asked = await api.call("POST", f"{path}/messages", {"content": "look around"})
    assert (status, asked["status"]) == (202, "pending_approval"), asked

    status, problem = await api.call("POST", f"{path}/resume")
    assert (status, problem["detail"]) == (
        409,
        f"session {session_id} waits for a person's approval of call {asked['call_id']} (bash: ls /), "
        f"not for a resume: answer it (POST {path}/approve)",
    ), problem
