"""A request waiting alone behind the turns of a pause-mode session (they run because it is
attached) answers `queued` once one of them asks a person: waiting on, it would be silent until
the approval times out, minutes later, for an answer nobody gives from there."""

from __future__ import annotations

import asyncio

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_a_lone_request_answers_queued_once_a_turn_ahead_asks_for_an_approval(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api: Api = await start_api(git=False)
    session_id = await api.new_session("pauser")
    live = api.server.app[STATE].sessions.live[session_id]
    # a message waiting for a client (a background process's report, say): its turn asks a person
    fake_llm.enqueue(tool_calls([("bash", {"command": "rm -f nothing.txt"})]), text("removed"), text("later"))
    assert await live.queue_for_client("[process finished] tidy up") is None
    assert live.status == "paused"

    status, body = await asyncio.wait_for(
        api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "and then?"}), timeout=30
    )

    assert (status, body["status"]) == (202, "queued"), body
    _, shown = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert [approval["command"] for approval in shown["pending_approvals"]] == ["rm -f nothing.txt"]
