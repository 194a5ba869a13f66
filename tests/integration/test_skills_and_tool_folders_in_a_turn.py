"""Skills and tool folders in a turn: the skills index, the `skill` tool, readable skill folders,
allowed-tools; tool folders offered as tools, and `reload_tools` picking up one made mid-turn."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.agents.loader import Agent
from duragent.mcp.hub import McpHub
from duragent.runtime.events import ApprovalRequired, ToolCallFinished, TurnFinished
from duragent.runtime.loop import Runtime, drain
from duragent.sessions.log import SessionLog
from duragent.sessions.state import resume
from duragent.skills.active import refusal, restricting_skills
from duragent.skills.discovery import discover_skills
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.testing.mcp_server import server_entry
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering
from tests.unit.test_skills import write_skill
from tests.unit.test_tool_folders import tool_folder

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
name: helper
model:
  provider: openai
  name: gpt-test
  base_url: {url}
tools:
  builtin: [bash, read_file]
  policy:
    mode: ask
    allow: ["bash:echo *", read_file, skill, reload_tools, shout, greet]
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url))


@pytest.fixture
async def runtime(data: Path) -> AsyncIterator[Runtime]:
    async with runtime_on(data, memory=False) as made:
        yield made


def results(events: list[object]) -> list[ToolCallFinished]:
    return [event for event in events if isinstance(event, ToolCallFinished)]


async def test_the_model_sees_the_index_loads_a_skill_and_reads_its_files(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    folder = write_skill(
        data / "skills",
        "release-notes",
        "name: release-notes\ndescription: Write release notes from the git log.\n",
        "# Release notes\n\nStart from reference/format.md.\n",
    )
    (folder / "reference").mkdir()
    (folder / "reference" / "format.md").write_text("## Added\n## Fixed\n")
    fake_llm.enqueue(
        tool_calls([("skill", {"name": "release-notes"})]),
        tool_calls([("read_file", {"path": str(folder / "reference" / "format.md")})]),
        text("Here are the notes."),
    )

    events = await drain(runtime.run_turn(session, agent, "write the release notes"))

    assert isinstance(events[-1], TurnFinished)
    loaded, read = results(events)
    assert loaded.ok
    assert "Start from reference/format.md." in loaded.content
    assert "- reference/format.md" in loaded.content
    assert read.ok
    assert "## Fixed" in read.content
    first = fake_llm.requests[0].body
    system = first["messages"][0]["content"]
    assert "# Skills" in system
    assert "- release-notes: Write release notes from the git log." in system
    assert "Start from reference/format.md." not in system  # the body only comes through the tool
    assert "skill" in [tool["function"]["name"] for tool in first["tools"]]


async def test_a_skills_allowed_tools_refuse_other_calls_for_the_rest_of_the_turn(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    write_skill(
        data / "skills", "reader", "name: reader\ndescription: Only reads.\nallowed-tools: read_file\n"
    )
    fake_llm.enqueue(
        tool_calls([("skill", {"name": "reader"})]),
        tool_calls([("bash", {"command": "echo ran > marker.txt"})]),
        text("I could not run it."),
        tool_calls([("bash", {"command": "echo next turn"})]),
        text("done"),
    )

    first = await drain(runtime.run_turn(session, agent, "use the reader skill"))
    second = await drain(runtime.run_turn(session, agent, "now echo"))

    refused = results(first)[1]
    assert not refused.ok
    assert refused.content.startswith(
        "refused: skill 'reader' is active and allows only these tools: read_file"
    )
    assert not (data / "work" / "marker.txt").exists()
    [echoed] = results(second)
    assert echoed.ok
    assert echoed.content == "next turn"


async def test_a_skills_restriction_is_kept_as_loaded_for_a_turn_resumed_after_a_restart(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    folder = write_skill(
        data / "skills", "reader", "name: reader\ndescription: Only reads.\nallowed-tools: read_file\n"
    )
    fake_llm.enqueue(tool_calls([("skill", {"name": "reader"})]), text("Loaded."))
    await drain(runtime.run_turn(session, agent, "use the reader skill"))
    # The server stops; meanwhile the skill is removed, or edited to drop its allowed-tools (by
    # a person, or by the agent itself with a file tool the skill allowed).
    shutil.rmtree(folder)
    write_skill(data / "skills", "reader", "name: reader\ndescription: Reads and runs anything.\n")

    resumed = await resume(session.store, session.session_id)
    skills_now = discover_skills(None, data).skills

    restricting = restricting_skills(resumed.conversation, skills_now)
    refused = refusal(restricting, "bash", "echo ran > marker.txt")
    assert refused is not None
    assert refused.startswith("refused: skill 'reader' is active and allows only these tools: read_file")
    assert refusal(restricting, "read_file", "notes.md") is None


async def test_an_invalid_skill_is_skipped_with_one_warning_and_nothing_to_offer_offers_no_tool(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    data: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_skill(agent.directory / "skills", "broken", "name: broken\n")
    half_saved = agent.directory / "skills" / "half" / "SKILL.md"
    half_saved.parent.mkdir()
    half_saved.write_text("---\nname: half\n")  # an editor's half-written file: no closing ---
    (data / "tools").mkdir(parents=True)  # an empty tools folder (serve creates one): nothing to reload
    fake_llm.enqueue(text("one"), text("two"))

    with caplog.at_level(logging.WARNING, logger="duragent.skills.discovery"):
        await drain(runtime.run_turn(session, agent, "hi"))
        await drain(runtime.run_turn(session, agent, "again"))

    warnings = [r.getMessage() for r in caplog.records if "skipping invalid skill" in r.getMessage()]
    assert len(warnings) == 2  # one each, not one per turn
    assert any("broken/SKILL.md:2:1: description is required" in warning for warning in warnings)
    assert any("half/SKILL.md:1:1: the front matter is not closed" in warning for warning in warnings)
    request = fake_llm.requests[0].body
    assert "# Skills" not in request["messages"][0]["content"]
    offered = [tool["function"]["name"] for tool in request["tools"]]
    assert "skill" not in offered
    assert "reload_tools" not in offered


async def test_a_tool_folder_is_a_tool_and_reload_tools_picks_up_one_made_during_the_turn(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    tool_folder(data / "tools", "shout", '#!/bin/sh\necho "$@" | tr a-z A-Z\n', readme="Shout the arguments.")
    greet = data / "agents" / "helper" / "tools" / "greet"
    (data / "work").mkdir(parents=True, exist_ok=True)
    (data / "work" / "make_greet.sh").write_text(
        f"mkdir -p {greet}\nprintf '#!/bin/sh\\necho hello \"$1\"\\n' > {greet}/run\nchmod +x {greet}/run\n"
    )
    fake_llm.enqueue(
        tool_calls([("shout", {"args": "quiet words"})]),
        tool_calls([("bash", {"command": "sh make_greet.sh"})]),
        tool_calls([("reload_tools", {})]),
        tool_calls([("greet", {"args": "world"})]),
        text("done"),
    )

    events: list[object] = []
    async for event in runtime.run_turn(session, agent, "shout, then make a greet tool and use it"):
        events.append(event)
        if isinstance(event, ApprovalRequired):
            # A new tool folder is a change to what the agent may do: a person approves making it.
            assert event.command == "sh make_greet.sh"
            runtime.approvals.decide(event.call_id, "allow_once")

    assert isinstance(events[-1], TurnFinished)
    shouted, made, reloaded, greeted = results(events)
    assert shouted.ok
    assert shouted.content == "QUIET WORDS"
    assert made.ok, made.content
    assert reloaded.content == "tool folders: greet, shout\nadded: greet"
    assert greeted.ok, greeted.content
    assert greeted.content == "hello world"
    offered = [[tool["function"]["name"] for tool in r.body["tools"]] for r in fake_llm.requests]
    assert "shout" in offered[0]
    assert "reload_tools" in offered[0]
    assert "greet" not in offered[2]
    assert "greet" in offered[3]
    described = {
        t["function"]["name"]: t["function"]["description"] for t in fake_llm.requests[0].body["tools"]
    }
    assert described["shout"] == "Shout the arguments."


async def test_the_policy_decides_on_a_tool_folder_by_its_name_and_args(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    tool_folder(data / "tools", "deploy", '#!/bin/sh\ntouch "$PWD/deployed"\n')
    (agent.directory / "policy.yaml").write_text('mode: ask\ndeny: ["deploy:production*"]\n')
    fake_llm.enqueue(tool_calls([("deploy", {"args": "production now"})]), text("I may not."))

    events = await drain(runtime.run_turn(session, agent, "deploy to production"))

    [denied] = results(events)
    assert not denied.ok
    assert denied.content == "denied by policy: deploy production now"
    assert not (data / "work" / "deployed").exists()


async def test_allowed_tools_naming_mcp_tools_as_claude_code_does_let_those_tools_through(
    fake_llm: FakeLLMServer, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    # A skill written for Claude Code names MCP tools `mcp__<server>__<tool>` (or `mcp__<server>`
    # for all of a server's tools): the restriction must read them as the same tools here.
    agent = agent_in(
        data,
        AGENT_YAML.format(url=fake_llm.url).replace("greet]", 'greet, "mcp:test:*"]')
        + f"mcp_servers: [{json.dumps(server_entry('test'))}, {json.dumps(server_entry('other'))}]\n",
    )
    runtime.mcp = McpHub(workspace_dir=data, workdir_for=lambda agent: data / "work")
    write_skill(
        data / "skills",
        "echoer",
        "name: echoer\ndescription: Echoes.\nallowed-tools: mcp__test__echo mcp__other Read\n",
    )
    fake_llm.enqueue(
        tool_calls([("skill", {"name": "echoer"})]),
        tool_calls([("test__echo", {"text": "hello"})]),
        tool_calls([("other__add", {"a": 1, "b": 2})]),
        tool_calls([("test__add", {"a": 1, "b": 2})]),
        text("done"),
    )

    try:
        events = await turn_answering(runtime, session, agent, "echo hello", decision="allow_once")
    finally:
        await runtime.mcp.close()

    _loaded, echoed, added_elsewhere, refused = results(events)
    assert (echoed.ok, echoed.content) == (True, "hello")
    assert added_elsewhere.ok, added_elsewhere.content
    assert not refused.ok
    assert refused.content.startswith(
        "refused: skill 'echoer' is active and allows only these tools: mcp__test__echo mcp__other Read"
    )
