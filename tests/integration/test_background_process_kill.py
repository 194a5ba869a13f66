"""The agent's own `kill` is answered by its result: no `[process finished]` message (and no
turn for it) follows, as after a `wait` that saw the end. An operator's kill is still told."""

from __future__ import annotations

from collections.abc import Callable

from duragent.processes.completion import FINISHED_MARKER
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.test_process_completion import Server, contents, spawn, start
from tests.waiting import until

__all__ = ["start"]  # the fixtures

pytest_plugins = ["duragent.testing.pytest_plugin"]


def told(server: Server, session_id: str) -> list[str]:
    """`[process finished]` messages of the session, queued or taken up."""
    state = server.manager.live[session_id].log.state
    messages = contents(server, session_id, "user") + [str(q.get("content")) for q in state.queued]
    return [m for m in messages if m.startswith(FINISHED_MARKER)]


async def test_a_process_the_agent_kills_is_not_reported_again_in_a_new_turn(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("continue")
    fake_llm.enqueue(spawn("sleep 600"), text("Started."))
    live = await server.manager.create("helper")
    await live.submit("start it")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Started."])
    handle = server.processes.list("helper")[0].handle
    fake_llm.enqueue(
        tool_calls([("background_process", {"action": "kill", "handle": handle})]),
        text("Killed it."),
        text("a second turn about the end it already knew"),
    )

    await live.submit("kill it")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Killed it."])
    await until(lambda: server.processes.get(handle).reported)

    result = [e for e in live.log.state.conversation if e.get("role") == "tool"][-1]
    assert "killed (exit code -15): killed by the agent" in str(result.get("content"))
    assert told(server, live.session_id) == []


async def test_a_process_an_operator_kills_is_reported_to_its_session(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("continue")
    fake_llm.enqueue(spawn("sleep 600"), text("Started."), text("It was stopped."))
    live = await server.manager.create("helper")
    await live.submit("start it")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Started."])
    handle = server.processes.list("helper")[0].handle

    await server.processes.kill(handle, reason="killed by an operator")

    await until(lambda: told(server, live.session_id))
    assert "killed by an operator" in told(server, live.session_id)[0]
