"""What one `memory` call may write is capped: an oversized `remember`, `reflect` or
`update_world` is refused with an error naming the limit and the size sent, and nothing is
written; today's file stops growing at its limit; memory larger than its share of the context
is fitted to the share, today's notes kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from duragent.agents.loader import Agent
from duragent.runtime.loop import Runtime
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer
from duragent.tools.memory import DAY_MAX_CHARS, REMEMBER_MAX_CHARS, REWRITE_MAX_CHARS
from tests.integration.test_memory_tool_blank_content_keeps_memory import data, memory_call, runtime
from tests.integration.turn_setup import agent_in

pytest_plugins = ["duragent.testing.pytest_plugin"]
__all__ = ["data", "runtime"]  # (the fixtures, imported for pytest)

AGENT_YAML = """\
name: helper
model: {{provider: openai, name: gpt-test, base_url: "{url}"}}
context: {{max_tokens: 16000}}
memory: {{enabled: true}}
"""


@pytest.fixture
def agent(data: Path, fake_llm: FakeLLMServer) -> Agent:
    return agent_in(data, AGENT_YAML.format(url=fake_llm.url), policy="mode: ask\nallow: ['memory:*']\n")


def memory_files(data: Path) -> list[str]:
    folder = data / "memory"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.md")) if folder.exists() else []


@pytest.mark.parametrize(
    ("arguments", "limit"),
    [
        ({"action": "remember", "content": "x" * (REMEMBER_MAX_CHARS + 1)}, REMEMBER_MAX_CHARS),
        ({"action": "reflect", "content": "x" * (REWRITE_MAX_CHARS + 1)}, REWRITE_MAX_CHARS),
        (
            {"action": "update_world", "topic": "t", "content": "x" * (REWRITE_MAX_CHARS + 1)},
            REWRITE_MAX_CHARS,
        ),
    ],
)
async def test_an_oversized_memory_write_is_refused_naming_the_limit(
    fake_llm: FakeLLMServer,
    agent: Agent,
    session: SessionLog,
    runtime: Runtime,
    data: Path,
    arguments: dict[str, Any],
    limit: int,
) -> None:
    finished = await memory_call(fake_llm, runtime, session, agent, arguments)

    assert not finished.ok
    assert f"{limit + 1:,} characters" in finished.content
    assert f"at most {limit:,}" in finished.content
    assert memory_files(data) == []
    # the model is told too (the result goes back in the next request)
    tool_message = next(m for m in fake_llm.requests[-1].body["messages"] if m["role"] == "tool")
    assert f"at most {limit:,}" in tool_message["content"]


async def test_remember_stops_when_todays_file_is_full(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    today = data / "memory" / "helper" / f"{datetime.now(UTC).date().isoformat()}.md"
    today.parent.mkdir(parents=True)
    today.write_text("# Memory\n\n## Facts\n\n" + "- an old note\n" * (DAY_MAX_CHARS // 13))
    before = today.read_text()

    finished = await memory_call(
        fake_llm, runtime, session, agent, {"action": "remember", "content": "one more"}
    )

    assert not finished.ok
    assert "reflect" in finished.content
    assert f"{DAY_MAX_CHARS:,}" in finished.content
    assert today.read_text() == before


async def test_memory_over_its_share_keeps_todays_notes_and_fits_the_share(
    fake_llm: FakeLLMServer, agent: Agent, session: SessionLog, runtime: Runtime, data: Path
) -> None:
    folder = data / "memory" / "helper"
    folder.mkdir(parents=True)
    (folder / "MEMORY.md").write_text("# Long-term\n\n" + "- an old lesson\n" * 4000)
    finished = await memory_call(
        fake_llm, runtime, session, agent, {"action": "remember", "content": "the user prefers tea"}
    )
    assert finished.ok, finished.content

    system = fake_llm.requests[-1].body["messages"][0]["content"]
    # a quarter of the budget: (16000 - 4000 - 1600) / 4 = 2600 tokens, about 10,400 characters
    memory = system[system.index("# Long-term memory (MEMORY.md)") :]
    assert len(memory) <= 2600 * 4
    assert "characters cut" in memory
    assert "the user prefers tea" in memory
    assert len(json.dumps(fake_llm.requests[-1].body["messages"])) < 16000 * 4
