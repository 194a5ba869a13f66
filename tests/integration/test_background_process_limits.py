"""An agent has at most `max_running` processes at a time, also when one turn asks for many at
once (the runtime runs a reply's tool calls together)."""

from __future__ import annotations

from collections.abc import Callable

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.test_process_completion import Server, contents, start
from tests.waiting import until

__all__ = ["start"]  # the fixtures

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def test_spawns_asked_for_together_stop_at_the_limit(
    start: Callable[[str], Server], fake_llm: FakeLLMServer
) -> None:
    server = start("continue")
    limit = server.processes.settings.max_running
    spawns = [("background_process", {"action": "spawn", "command": "sleep 600"})] * (limit + 3)
    fake_llm.enqueue(tool_calls(spawns), text("Started what I could."))
    live = await server.manager.create("helper")

    await live.submit("start the workers")
    await until(lambda: contents(server, live.session_id, "assistant")[-1:] == ["Started what I could."])

    results = [str(e.get("content")) for e in live.log.state.conversation if e.get("role") == "tool"]
    assert sum(r.startswith("started proc_") for r in results) == limit
    refused = [r for r in results if not r.startswith("started proc_")]
    assert len(refused) == 3
    assert all(f"(the limit is {limit})" in r for r in refused), refused
    assert len([p for p in server.processes.list("helper") if not p.ended]) == limit
