"""Tool definitions take part of the model's window: an agent offered many large tools (MCP
servers, cli tools) sends a request that fits the window, older turns left out to make room,
never one the model refuses turn after turn; tools that leave no room at all fail the turn
with an error naming them, before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

from duragent.runtime.events import TurnFailed, TurnFinished
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, RecordedRequest, ScriptedResponse, error, text
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]

WINDOW = 4000
OUTPUT = 200


def agent_yaml(url: str, tools: int, provider: str = "openai") -> str:
    cli = "\n".join(
        f"  - {{name: tool_{i}, command: 'true', description: '{f'what tool {i} does, at length. ' * 30}'}}"
        for i in range(tools)
    )
    return f"""\
name: helper
model: {{provider: {provider}, name: gpt-test, base_url: "{url}", max_output_tokens: {OUTPUT}}}
context: {{max_tokens: {WINDOW}}}
tools:
  cli:
{cli}
"""


def request_tokens(body: dict[str, object]) -> int:
    """The request as the documented estimate counts it: characters / 4."""
    return (len(json.dumps(body["messages"])) + len(json.dumps(body.get("tools", [])))) // 4


async def test_large_tool_definitions_trim_the_conversation_to_fit_the_window(
    tmp_path: Path, session: SessionLog
) -> None:
    data = tmp_path / "data"
    async with FakeLLMServer() as server:
        agent = agent_in(data, agent_yaml(server.url, tools=9))
        async with runtime_on(data) as runtime:
            for turn in range(6):
                server.enqueue(text(f"answer {turn}"))
                events = await turn_answering(runtime, session, agent, f"turn {turn}: " + "u" * 1200)
                assert isinstance(events[-1], TurnFinished), events[-1]

    last = server.requests[-1].body
    assert len(json.dumps(last["tools"])) > 8_000, "the tools take over half the window"
    assert request_tokens(last) <= WINDOW - OUTPUT
    sent = [m["content"] for m in last["messages"][1:]]
    assert sent[-1].startswith("turn 5: "), "the newest message is kept"
    assert not any(content.startswith("turn 0: ") for content in sent), "older turns make room"


async def test_tools_larger_than_the_window_fail_the_turn_naming_them(
    tmp_path: Path, session: SessionLog
) -> None:
    data = tmp_path / "data"
    async with FakeLLMServer() as server:
        agent = agent_in(data, agent_yaml(server.url, tools=16, provider="anthropic"))
        async with runtime_on(data) as runtime:
            events = await turn_answering(runtime, session, agent, "hello")

    assert server.requests == [], "nothing the model must refuse is sent"
    failed = events[-1]
    assert isinstance(failed, TurnFailed), failed
    assert failed.code == "context_too_long"
    assert "16 tool definitions" in failed.message
    assert "spec.context.max_tokens" in failed.message


async def test_a_refusal_that_names_no_window_shrinks_the_conversation_not_the_tools(
    tmp_path: Path, session: SessionLog
) -> None:
    # (the tools are most of the request: shrinking the whole request by a quarter would leave
    # less than the tools, and the turn would fail without asking again)
    data = tmp_path / "data"
    refused: list[int] = []

    def refuse_long_histories(request: RecordedRequest) -> ScriptedResponse:
        if len(request.messages) > 3:
            refused.append(len(request.messages))
            message = "the prompt exceeds the context window of this model"  # (no size named)
            return error(400, {"error": {"message": message, "code": "context_length_exceeded"}})
        return text("short answer")

    async with FakeLLMServer() as server:
        agent = agent_in(
            data, agent_yaml(server.url, tools=9).replace(f"max_tokens: {WINDOW}", "max_tokens: 9000")
        )
        async with runtime_on(data) as runtime:
            server.responder = refuse_long_histories
            first = await turn_answering(runtime, session, agent, "turn 0: " + "u" * 600)
            assert isinstance(first[-1], TurnFinished), first[-1]
            events = await turn_answering(runtime, session, agent, "turn 1: " + "u" * 600)

    assert isinstance(events[-1], TurnFinished), events[-1]
    assert refused == [4]
    sent = [m["content"] for m in server.requests[-1].body["messages"][1:]]
    assert sent == ["turn 1: " + "u" * 600]
