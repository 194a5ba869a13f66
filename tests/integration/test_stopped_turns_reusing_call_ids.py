"""Models that number their tool calls anew in every reply (local servers' `call_0`, as here): a
call is known by its id within its own batch, so an earlier turn's result for the same id neither
answers a later call nor hides it from what closes or resumes open calls."""

from __future__ import annotations

import asyncio

from duragent.sessions.live import LiveSession
from duragent.sessions.manager import SessionManager
from duragent.testing.fake_llm import FakeLLMServer, ScriptedCall, text, tool_calls
from tests.integration.test_stopped_turns import manager, roles
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]
__all__ = ["manager"]  # the fixture (the harness's agent, unattended for 1 s at most)


async def stopped_at_an_approval_after_a_call_of_the_same_id(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> LiveSession:
    """A first turn runs `echo one` as `call_0`; the second turn's `call_0` (`printf two`)
    is recorded as asked after the unattended limit paused the turn, and nobody is asked."""
    fake_llm.enqueue(
        tool_calls([ScriptedCall("bash", {"command": "echo one"}, "call_0")]),
        text("first turn done"),
        tool_calls([ScriptedCall("bash", {"command": "printf two"}, "call_0")], delay=1.5),
    )
    live = await manager.create("helper")
    await live.submit("run echo one")
    await until(lambda: not live.busy and live.log.state.turns == 1)
    await live.submit("run printf two")
    await until(lambda: live.status == "paused" and not live.busy and live.log.state.pending_approvals)
    calls = [m["tool_calls"][0]["id"] for m in live.log.state.conversation if m.get("tool_calls")]
    assert calls == ["call_0", "call_0"]
    return live


async def test_a_call_reusing_an_answered_id_is_open_and_answered_before_the_next_message(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    live = await stopped_at_an_approval_after_a_call_of_the_same_id(manager, fake_llm)
    assert [c["arguments"] for c in live.log.state.open_tool_calls()] == [{"command": "printf two"}]
    fake_llm.enqueue(text("fine"))

    async with asyncio.timeout(10):  # (were the call asked again, the turn would wait for a person)
        async for _event in manager.runtime.run_turn(live.log, live.agent, "never mind that"):
            pass

    sent = fake_llm.requests[-1]
    first_turn = ["system", "user", "assistant", "tool", "assistant"]
    assert roles(sent) == [*first_turn, "user", "assistant", "tool", "user"]
    assert sent.messages[3]["content"].strip() == "one"  # the first turn's result, untouched
    assert sent.messages[7]["content"].startswith("interrupted")
    assert live.log.state.open_tool_calls() == []
    assert live.log.state.pending_approvals == []


async def test_a_stopped_call_reusing_an_answered_id_is_asked_again_and_runs(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    live = await stopped_at_an_approval_after_a_call_of_the_same_id(manager, fake_llm)
    assert live.unfinished_turn
    fake_llm.enqueue(text("ran printf two"))

    await live.resume()
    broker = manager.runtime.approvals
    await until(lambda: bool(broker.pending(live.session_id)))
    (request,) = broker.pending(live.session_id)
    assert (request.call_id, request.invocation) == ("call_0", "printf two")
    live.decide(request.call_id, "allow_once")
    await until(lambda: not live.busy and live.log.state.conversation[-1]["content"] == "ran printf two")

    sent = fake_llm.requests[-1]
    assert roles(sent)[-2:] == ["assistant", "tool"]
    assert sent.messages[-1]["content"].strip() == "two"
    assert live.status == "active"
