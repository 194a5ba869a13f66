"""A failed tool's long output, cut to fit a small context window, still reaches the model as a
failure (Anthropic's `tool_result` `is_error`), not as a successful result."""

from __future__ import annotations

from pathlib import Path

from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def test_a_failed_tool_result_cut_to_fit_the_window_is_still_an_error(
    tmp_path: Path, session: SessionLog
) -> None:
    data = tmp_path / "data"
    async with FakeLLMServer() as server:
        agent = agent_in(
            data,
            f"""\
name: helper
model:
  provider: anthropic
  name: claude-test
  base_url: {server.url}
  api_key_env: OPENAI_API_KEY
  max_output_tokens: 200
context: {{max_tokens: 2000}}
tools: [bash]
""",
            policy="mode: allow\n",
        )
        (data / "work").mkdir()
        # ~4,000 tokens of output, then a failure: twice what the window leaves for the turn
        failing = "python3 -c \"print('x' * 16000); raise SystemExit(3)\""
        server.enqueue(tool_calls([("bash", {"command": failing})]), text("it failed"))
        async with runtime_on(data) as runtime:
            await turn_answering(runtime, session, agent, "run it", decision="allow")

    second = server.requests[1].body["messages"]
    blocks = [block for message in second for block in message["content"]]
    results = [block for block in blocks if block.get("type") == "tool_result"]
    assert len(results) == 1
    sent = results[0]["content"]
    sent_text = sent if isinstance(sent, str) else "".join(part.get("text", "") for part in sent)
    assert "characters cut" in sent_text, "the result was cut to fit the window"
    assert results[0].get("is_error") is True
