"""A session many times longer than the model's window keeps working: every request the model
gets holds the whole system prompt and the newest user message, never a tool result without
the call it answers, and stays within the window however long the session grows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from duragent.runtime.events import TurnFinished
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]

SYSTEM_PROMPT = "You are the long-session test agent. Keep every answer short."


def check_request(messages: list[dict[str, Any]], newest: str) -> None:
    """What the model must be sent, whatever was left out."""
    system, *history = messages
    assert system["role"] == "system"
    assert system["content"].endswith(SYSTEM_PROMPT)
    assert history[0]["role"] == "user"
    assert history[-1]["role"] != "user" or history[-1]["content"] == newest
    assert any(m["role"] == "user" and m["content"] == newest for m in history)
    unanswered: set[str] = set()
    for message in history:
        if message["role"] == "tool":
            assert message["tool_call_id"] in unanswered, "a result follows the call it answers"
            unanswered.discard(message["tool_call_id"])
        else:
            assert not unanswered, "every call kept has its result"
            unanswered = {call["id"] for call in message.get("tool_calls") or ()}


async def test_thirty_turns_of_large_tool_results_in_a_2k_window(tmp_path: Path, session: SessionLog) -> None:
    data = tmp_path / "data"
    async with FakeLLMServer() as server:
        agent = agent_in(
            data,
            f"""\
name: helper
model: {{provider: openai, name: gpt-test, base_url: "{server.url}", max_output_tokens: 200}}
system_prompt: {SYSTEM_PROMPT}
context: {{max_tokens: 2000}}
tools: [read_file, bash]
""",
            policy="mode: allow\n",
        )
        (data / "work").mkdir(parents=True)
        (data / "work" / "big.txt").write_text("x" * 30_000)
        async with runtime_on(data) as runtime:
            for turn in range(30):
                newest = f"turn {turn}: " + "u" * 300
                server.enqueue(
                    tool_calls(
                        [("read_file", {"path": "big.txt"}), ("bash", {"command": "head -c 9000 big.txt"})]
                    ),
                    text(f"answer {turn}"),
                )
                events = await turn_answering(runtime, session, agent, newest, decision="allow")
                assert isinstance(events[-1], TurnFinished), events[-1]
                for request in server.requests[-2:]:
                    check_request(request.body["messages"], newest)

    sizes = [len(json.dumps(request.body["messages"])) for request in server.requests]
    # the budget is 2000 - 200 - 10 % = 1600 tokens (about 6,400 characters, JSON aside)
    assert max(sizes) < 8_000
    for late, early in zip(sizes[-2:], sizes[2:4], strict=True):
        assert abs(late - early) < 20, "the 30th turn costs what the 2nd did"
