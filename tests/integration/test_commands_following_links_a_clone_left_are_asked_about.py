"""A repository the agent cloned (or an archive it unpacked) can hold a symlink out of the work
folder (`leak -> ../../run`). No command line names it, yet `grep -R token .` reads the server's
tokens through it: a command that follows the links of the folders it walks is asked about when
one of them leads where an auto-allowed command must not go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from duragent.agents.loader import Agent
from duragent.runtime.events import ApprovalRequired, ToolCallFinished
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
  builtin: [bash]
  policy:
    mode: ask
    allow:
      - "bash:grep *"
      - "bash:tar *"
      - "bash:cp *"
      - "bash:find *"
      - "bash:zip *"
      - "bash:diff *"
      - "bash:cd * && grep *"
"""
TOKEN = "a-secret-admin-token"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    (data / "run").mkdir(parents=True)
    (data / "run" / "tokens.json").write_text(f'{{"admin_token": "{TOKEN}"}}\n')
    repo = data / "work" / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("admin_token is documented here\n")
    (data / "work" / "empty").mkdir()
    # (as `git clone` leaves a repository's symlink: its text as the repository has it)
    os.symlink("../../run", repo / "leak")
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url))


@pytest.mark.parametrize(
    "command",
    [
        "grep -R admin_token .",
        "grep -Rn admin_token repo",
        "cd repo && grep -R admin_token",
        "tar -chf out.tar repo",
        "tar chf out.tar .",
        "cp -rL repo copy",
        "zip -qr out.zip .",
        "find -L . -type f",
        "diff -rN repo empty",
    ],
)
async def test_a_command_following_a_link_out_of_the_work_folder_is_asked_about(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, data: Path, command: str
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))

    async with runtime_on(data, memory=False) as runtime:
        events = await turn_answering(runtime, session, agent, "look")

    assert [e.command for e in events if isinstance(e, ApprovalRequired)] == [command]
    assert TOKEN not in str(fake_llm.requests[-1].messages)
    assert not (data / "work" / "copy").exists()


async def test_a_walk_that_leaves_links_alone_still_runs_unasked(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, data: Path
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "grep -rn admin_token ."})]), text("done"))

    async with runtime_on(data, memory=False) as runtime:
        events = [event async for event in runtime.run_turn(session, agent, "look")]

    assert not [e for e in events if isinstance(e, ApprovalRequired)]
    [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert "admin_token is documented here" in finished.content
    assert TOKEN not in finished.content
