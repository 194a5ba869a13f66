"""A bash command with a word longer than a file name may be (`echo yyyy…`, 2,000 characters)
failed the whole turn: the path check asked whether the word is a folder, and the operating
system answered "File name too long" as an error. Such a word is no folder: the command runs."""

from __future__ import annotations

from pathlib import Path

from duragent.runtime.events import ToolCallFinished, TurnFinished
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def test_an_allowed_command_with_a_very_long_word_runs(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog
) -> None:
    model = f"name: helper\nmodel:\n  provider: openai\n  name: gpt-test\n  base_url: {fake_llm.url}\n"
    tools = "tools:\n  builtin: [bash]\n  policy: {mode: ask, allow: ['bash:echo *']}\n"
    agent = agent_in(tmp_path, model + tools)
    word = "y" * 2000
    fake_llm.enqueue(tool_calls([("bash", {"command": f"echo {word}"})]), text("Printed it."))

    async with runtime_on(tmp_path, memory=False) as runtime:
        events = await turn_answering(runtime, session, agent, "print a long line")

    [ran] = [event for event in events if isinstance(event, ToolCallFinished)]
    assert ran.ok, ran.content
    assert word in ran.content
    assert isinstance(events[-1], TurnFinished)
