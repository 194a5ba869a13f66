"""A command-line tool or a tool folder allowed by a pattern (`show:*`) is asked about before its
arguments reach the data directory outside the work folder: the server's tokens live there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.agents.loader import Agent
from duragent.runtime.events import ApprovalRequired, ToolCallFinished
from duragent.runtime.loop import Runtime
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
name: helper
model:
  provider: openai
  name: gpt-test
  base_url: {url}
tools:
  builtin: []
  cli:
    - name: show
      command: cat
      description: Show a file.
  policy:
    mode: ask
    allow: ["show:*"]
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    (data / "run").mkdir(parents=True)
    (data / "run" / "tokens.json").write_text('{"api_token": "a-secret-api-token"}\n')
    (data / "work" / "helper").mkdir(parents=True)
    (data / "work" / "helper" / "notes.txt").write_text("my notes\n")
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url))


@pytest.fixture
async def runtime(data: Path) -> AsyncIterator[Runtime]:
    async with runtime_on(data, memory=False, workdir=False) as made:
        yield made


async def test_an_allowed_command_line_tool_asks_before_reading_the_servers_tokens(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    fake_llm.enqueue(
        tool_calls([("show", {"args": "notes.txt"})]),
        tool_calls([("show", {"args": "../../run/tokens.json"})]),
        text("done"),
    )
    events = await turn_answering(runtime, session, agent, "show me")

    [shown, refused] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert (shown.ok, shown.content) == (True, "my notes")
    asked = [e for e in events if isinstance(e, ApprovalRequired)]
    assert [e.command for e in asked] == ["../../run/tokens.json"]
    assert not refused.ok
    assert "a-secret-api-token" not in str(fake_llm.requests[-1].messages)


async def test_an_allowed_glob_matching_more_files_than_are_checked_is_asked_about(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    """Past the first thousand matches, one of the others could be a symlink to the tokens (a
    cloned repository holding one, say): the glob is not let through unchecked."""
    many = data / "work" / "helper" / "many"
    for n in range(1001):
        (many / f"d{n}").mkdir(parents=True)
    fake_llm.enqueue(
        tool_calls([("show", {"args": "many/*/../../notes.txt"})]),
        tool_calls([("show", {"args": "no*s.txt"})]),
        text("done"),
    )
    events = await turn_answering(runtime, session, agent, "show me")

    asked = [e for e in events if isinstance(e, ApprovalRequired)]
    assert [e.command for e in asked] == ["many/*/../../notes.txt"]  # (a glob of a few: not asked)
    [refused, ran] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert "denied" in refused.content
    assert "denied" not in ran.content
