"""A local model with a small window (`context.max_tokens: 4096`, no `max_output_tokens`) still
sees the conversation: the reply's reserve is at most a quarter of the window, not 4,096 tokens
that leave nothing for the history."""

from __future__ import annotations

from pathlib import Path

from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def test_a_4k_window_keeps_the_earlier_turns_in_the_request(
    tmp_path: Path, session: SessionLog
) -> None:
    data = tmp_path / "data"
    async with FakeLLMServer() as server:
        agent = agent_in(
            data,
            f"""\
name: helper
model: {{provider: ollama, name: llama-small, base_url: "{server.url}"}}
context: {{max_tokens: 4096}}
system_prompt: {"You answer briefly and kindly. " * 20}
""",
        )
        async with runtime_on(data) as runtime:
            for said in ("My name is Bob.", "I live in Lyon.", "What is my name?"):
                server.enqueue(text("Noted."))
                await turn_answering(runtime, session, agent, said)

    sent = server.requests[-1].body["messages"]
    assert sent[0]["role"] == "system"
    assert "answer briefly" in sent[0]["content"]
    assert [m["content"] for m in sent[1:]] == [
        "My name is Bob.",
        "Noted.",
        "I live in Lyon.",
        "Noted.",
        "What is my name?",
    ]
