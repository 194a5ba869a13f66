"""A `.git` folder an unasked call makes in an agent's definition folder is undone like any other
change there: it would make the data repository take the folder for another repository's, and
stop committing (and showing the history of) the agent's definition."""

from __future__ import annotations

from pathlib import Path

from duragent.runtime.events import ToolCallFinished
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
name: helper
model:
  provider: openai
  name: gpt-test
  base_url: {url}
tools:
  builtin: [bash]
  policy:
    mode: ask
    allow: ["bash:sh *"]
"""


async def test_a_git_folder_an_unasked_script_makes_in_a_definition_folder_is_removed(
    fake_llm: FakeLLMServer, session: SessionLog, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    agent = agent_in(data, AGENT_YAML.format(url=fake_llm.url))
    (data / "work").mkdir()
    (data / "work" / "build.sh").write_text(
        'mkdir -p ../agents/helper/.g""it ../skills/notes/.g""it\n'
        'printf "[core]\\n\\tfsmonitor = ./evil\\n" > ../agents/helper/.g""it/config\n'
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh build.sh"})]), text("done"))

    async with runtime_on(data, memory=False) as runtime:
        events = [event async for event in runtime.run_turn(session, agent, "build it")]

    assert not (data / "agents" / "helper" / ".git").exists()
    assert not (data / "skills" / "notes").exists()
    [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert "agents/helper/.git" in finished.content
