"""POST /approve answers with the turn's outcome (docs/api.md: 200 with the reply, or 202 with the
next call waiting) also when the answer comes as the question is being asked: the session's pause
for that very question is not the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from duragent.server.state import STATE
from duragent.stores.base import SessionEvent
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_an_approval_answered_before_its_question_is_stored_answers_with_the_reply(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answered `202 {"status": "paused", "reason": "awaiting approval"}`: the pause for the
    question it had just answered (as after a crash, where a worker asks again a question a
    client answers at once)."""
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed"))
    state = api.server.app[STATE]
    session_id = await api.new_session()
    path = f"/api/v1/sessions/{session_id}"
    # The question is asked (listed under pending_approvals) a moment before it is stored and the
    # session paused for it: the answer comes in between.
    store = state.workspace.stores.sessions
    storing, store_it = asyncio.Event(), asyncio.Event()
    append = store.append

    async def held_append(session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        batch = [events] if isinstance(events, SessionEvent) else list(events)
        if any(event.type == "approval_required" for event in batch):
            storing.set()
            await store_it.wait()
        await append(session_id, events)

    monkeypatch.setattr(store, "append", held_append)
    sending = asyncio.ensure_future(api.call("POST", f"{path}/messages", {"content": "look around"}))
    await asyncio.wait_for(storing.wait(), 10)
    (asked,) = state.approvals.pending(session_id)
    approving = asyncio.ensure_future(
        api.call("POST", f"{path}/approve", {"call_id": asked.call_id, "decision": "allow_once"})
    )
    await until(lambda: not state.approvals.pending(session_id))  # decided
    store_it.set()

    status, answer = await asyncio.wait_for(approving, 10)
    assert (status, answer) == (
        200,
        {"status": "complete", "message_id": answer.get("message_id"), "content": "listed"},
    ), answer
    status, _sent = await asyncio.wait_for(sending, 10)
    assert status in (200, 202)
