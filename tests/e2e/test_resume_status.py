"""POST /resume answers the status the session has once resumed, as docs/api.md shows."""

from __future__ import annotations

import asyncio

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api

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
