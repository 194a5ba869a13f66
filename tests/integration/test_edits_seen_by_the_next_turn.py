"""What a turn reads from files people edit (MEMORY.md, daily and world memory, skills, policy.yaml,
tool folders) is kept between turns while the files are unchanged; every edit on disk is still
what the next turn sees.

Each test runs twice: with the default rule (a file changed in the last few seconds is read
again) and with every stamp trusted at once, which is how a file edited long after it was read
is checked (one stat, compared with the last).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from duragent import file_stamps
from duragent.agents.loader import Agent
from duragent.runtime.events import ToolCallFinished, TurnFailed, TurnFinished
from duragent.runtime.loop import Runtime, drain
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on
from tests.unit.test_skills import write_skill
from tests.unit.test_tool_folders import tool_folder

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
name: helper
model:
  provider: openai
  name: gpt-test
  base_url: {url}
memory: {{enabled: true}}
tools:
  builtin: [bash]
"""


@pytest.fixture(params=["recent edits", "stamps trusted at once"], autouse=True)
def settle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "stamps trusted at once":
        monkeypatch.setattr(file_stamps, "SETTLE_NS", -(10**15))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url))


@pytest.fixture
async def runtime(data: Path) -> AsyncIterator[Runtime]:
    async with runtime_on(data) as made:
        yield made


async def system_prompt_of_a_turn(
    fake_llm: FakeLLMServer, runtime: Runtime, session: SessionLog, agent: Agent
) -> str:
    fake_llm.enqueue(text("ok"))
    events = await drain(runtime.run_turn(session, agent, "hello"))
    assert isinstance(events[-1], TurnFinished), events[-1]
    return str(fake_llm.requests[-1].body["messages"][0]["content"])


def tools_of_the_last_request(fake_llm: FakeLLMServer) -> list[str]:
    tools: list[dict[str, Any]] = fake_llm.requests[-1].body.get("tools") or []
    return [tool["function"]["name"] for tool in tools]


async def test_an_edit_to_memory_md_is_seen_by_the_next_turn(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    memory = data / "memory" / "helper" / "MEMORY.md"
    memory.parent.mkdir(parents=True)
    memory.write_text("- the user drinks tea\n")
    assert "the user drinks tea" in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "the user drinks tea" in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)

    memory.write_text("- the user drinks strong coffee\n")  # in place, as an editor may
    prompt = await system_prompt_of_a_turn(fake_llm, runtime, session, agent)

    assert "the user drinks strong coffee" in prompt
    assert "drinks tea" not in prompt


async def test_a_same_size_rewrite_right_after_a_turn_is_seen(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    memory = data / "memory" / "helper" / "MEMORY.md"
    memory.parent.mkdir(parents=True)
    memory.write_text("- the user likes tea\n")
    assert "likes tea" in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    # Same size, same inode, very likely the same timestamp tick: only the settle rule sees it
    # (with stamps trusted at once the size is what differs, below).
    with memory.open("r+") as handle:
        handle.write("- the user likes pie")
    assert "the user likes pie" in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)


async def test_daily_and_world_memory_written_between_turns_are_seen(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    assert "Memory of" not in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    day = data / "memory" / "helper" / f"{date.today().isoformat()}.md"
    day.parent.mkdir(parents=True)
    day.write_text("# Facts\n\n- the build is green\n")
    world = data / "memory" / "world" / "office.md"
    world.parent.mkdir(parents=True)
    world.write_text("The office is in Lyon.\n")

    prompt = await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "the build is green" in prompt
    assert "The office is in Lyon." in prompt

    with day.open("a") as handle:
        handle.write("- the deploy went out\n")
    (world.parent / "team.md").write_text("Five people.\n")
    prompt = await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "the deploy went out" in prompt
    assert "Five people." in prompt

    day.unlink()
    assert "the build is green" not in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)


async def test_the_agents_own_memory_write_is_seen_by_the_next_turn(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    assert runtime.memory is not None
    await runtime.memory.write_long_term("helper", "- first note\n")
    assert "first note" in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    await runtime.memory.write_long_term("helper", "- second, longer note\n")
    prompt = await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "second, longer note" in prompt
    assert "first note" not in prompt


async def test_a_skill_added_or_edited_between_turns_is_in_the_next_index(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    assert "# Skills" not in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    folder = write_skill(data / "skills", "notes", "name: notes\ndescription: Take notes.\n")
    assert "- notes: Take notes." in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "- notes: Take notes." in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)

    (folder / "SKILL.md").write_text("---\nname: notes\ndescription: Take careful notes.\n---\nBody.\n")
    assert "- notes: Take careful notes." in await system_prompt_of_a_turn(fake_llm, runtime, session, agent)

    write_skill(agent.directory / "skills", "plans", "name: plans\ndescription: Make plans.\n")
    prompt = await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "- plans: Make plans." in prompt
    assert "- notes: Take careful notes." in prompt


async def test_a_tool_folder_made_between_turns_is_offered_next_turn(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    (data / "tools").mkdir(parents=True)  # empty, as serve leaves it
    await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    await system_prompt_of_a_turn(fake_llm, runtime, session, agent)
    assert "shout" not in tools_of_the_last_request(fake_llm)

    tool_folder(agent.directory / "tools", "shout")
    await system_prompt_of_a_turn(fake_llm, runtime, session, agent)

    assert "shout" in tools_of_the_last_request(fake_llm)


async def test_a_policy_edit_between_turns_decides_the_next_call(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    policy = agent.directory / "policy.yaml"
    policy.write_text('mode: ask\nallow: ["bash:echo *"]\n')

    async def echo() -> ToolCallFinished:
        fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]), text("done"))
        events = await drain(runtime.run_turn(session, agent, "echo hi"))
        return next(event for event in events if isinstance(event, ToolCallFinished))

    assert (await echo()).ok
    assert (await echo()).ok
    policy.write_text('mode: ask\ndeny: ["bash:echo *"]\n')
    denied = await echo()
    assert not denied.ok
    assert denied.content.startswith("denied by policy")


async def test_a_policy_broken_between_turns_leaves_the_last_one_that_loaded_deciding(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime
) -> None:
    """As a broken agent.yaml leaves the last valid version answering (the registry says so)."""
    policy = agent.directory / "policy.yaml"
    policy.write_text('mode: ask\nallow: ["bash:echo *"]\n')

    async def echo() -> ToolCallFinished:
        fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]), text("done"))
        events = await drain(runtime.run_turn(session, agent, "echo hi"))
        return next(event for event in events if isinstance(event, ToolCallFinished))

    assert (await echo()).ok
    policy.write_text('mode: ask\nallow: ["bash:echo *"\n')  # an unclosed list
    assert (await echo()).ok
    policy.write_text('mode: ask\ndeny: ["bash:echo *"]\n')
    assert not (await echo()).ok


async def test_a_turn_with_no_policy_that_loads_says_the_agent_cannot_answer_and_where(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(data.parent)
    (agent.directory / "policy.yaml").write_text("mode: sometimes\n")

    events = await drain(runtime.run_turn(session, agent, "hello"))

    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert failed.code == "agent_invalid"
    assert failed.message.startswith(
        "agent 'helper' cannot answer until its files are fixed:\n"
        "data/agents/helper/policy.yaml:1:7: mode must be 'allow', 'ask' or 'deny'"
    ), failed.message


async def test_hidden_copies_and_week_named_files_are_not_memory(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    """macOS leaves `._team.md` (binary) beside a file copied from its disks, and `2026-W01-1.md`
    parses as a day in Python 3.11: the first reached the agent's context (never git, never an
    export), the second was listed as a day that then read as empty."""
    world = data / "memory" / "world"
    world.mkdir(parents=True)
    (world / "team.md").write_text("Five people.\n")
    (world / "._team.md").write_bytes(b"\x00\x05\x16\x07Mac OS X        \x00\x02resource fork")
    (data / "memory" / "helper").mkdir(parents=True)
    (data / "memory" / "helper" / "2026-W01-1.md").write_text("- not a day\n")

    prompt = await system_prompt_of_a_turn(fake_llm, runtime, session, agent)

    assert "Five people." in prompt
    assert "resource fork" not in prompt
    assert runtime.memory is not None
    assert await runtime.memory.read_world() == {"team": "Five people.\n"}
    assert await runtime.memory.days("helper") == []
