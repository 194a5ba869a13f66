"""A model that fills every argument, `content: ""` included, asks to *see* its memory with
`reflect`, not to wipe MEMORY.md; a blank `update_world` is refused, the topic kept as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from duragent.agents.loader import Agent
from duragent.runtime.events import ToolCallFinished, TurnFinished
from duragent.runtime.loop import Runtime, drain
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
memory: {{enabled: true}}
"""

LONG_TERM = "# Long-term memory\n\n- The user is called Ada\n- Ships on Fridays\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url), policy="mode: ask\nallow: ['memory:*']\n")


@pytest.fixture
async def runtime(data: Path) -> AsyncIterator[Runtime]:
    async with runtime_on(data) as made:
        yield made


async def memory_call(
    fake_llm: FakeLLMServer, runtime: Runtime, session: SessionLog, agent: Agent, arguments: dict[str, Any]
) -> ToolCallFinished:
    fake_llm.enqueue(tool_calls([("memory", arguments)]))
    fake_llm.enqueue(text("done"))
    events = await drain(runtime.run_turn(session, agent, "look after your memory"))
    assert isinstance(events[-1], TurnFinished), events[-1]
    return next(event for event in events if isinstance(event, ToolCallFinished))


async def test_reflect_with_blank_content_shows_memory_md_and_keeps_it(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    memory_md = data / "memory" / "helper" / "MEMORY.md"
    memory_md.parent.mkdir(parents=True)
    memory_md.write_text(LONG_TERM)

    finished = await memory_call(
        fake_llm, runtime, session, agent, {"action": "reflect", "content": "  ", "query": "", "topic": ""}
    )

    assert finished.ok, finished.content
    assert "The user is called Ada" in finished.content
    assert memory_md.read_text() == LONG_TERM


async def test_update_world_with_blank_content_is_refused_and_keeps_the_topic(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    topic = data / "memory" / "world" / "office.md"
    topic.parent.mkdir(parents=True)
    topic.write_text("The office is in Lyon.\n")

    finished = await memory_call(
        fake_llm, runtime, session, agent, {"action": "update_world", "topic": "office", "content": ""}
    )

    assert not finished.ok
    assert "needs a topic and content" in finished.content
    assert topic.read_text() == "The office is in Lyon.\n"
