"""The memory tool against the real FilesystemMemoryStore in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.stores.base import utcnow
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.tools.base import ToolContext, ToolResult
from duragent.tools.memory import MemoryTool


@pytest.fixture
def memory_root(tmp_path: Path) -> Path:
    return tmp_path / "memory"


@pytest.fixture
def ctx(tmp_path: Path, memory_root: Path) -> ToolContext:
    return ToolContext(
        agent="helper", session_id="s_01TEST", workdir=tmp_path, memory=FilesystemMemoryStore(memory_root)
    )


async def memory(ctx: ToolContext, **arguments: str) -> ToolResult:
    tool = MemoryTool()
    return await tool.run(tool.parse_arguments(arguments), ctx)


def todays_file(memory_root: Path) -> Path:
    return memory_root / "helper" / f"{utcnow().date().isoformat()}.md"


async def test_remember_lands_in_the_preferences_section_of_todays_file(
    ctx: ToolContext, memory_root: Path
) -> None:
    result = await memory(ctx, action="remember", content="Prefers short answers", section="preference")

    assert result.ok
    assert result.content.startswith("remembered under Preferences Learned")
    text = todays_file(memory_root).read_text()
    section = text.split("## Preferences Learned", 1)[1].split("##", 1)[0]
    assert "- Prefers short answers" in section


async def test_remember_without_a_section_stores_a_fact(ctx: ToolContext, memory_root: Path) -> None:
    await memory(ctx, action="remember", content="The staging server is db-2")

    text = todays_file(memory_root).read_text()
    assert "- The staging server is db-2" in text.split("## Facts Stored", 1)[1]


async def test_remember_without_content_asks_for_it(ctx: ToolContext) -> None:
    result = await memory(ctx, action="remember")

    assert not result.ok
    assert "needs content" in result.content


async def test_recall_finds_remembered_entries_and_long_term_memory(ctx: ToolContext) -> None:
    assert ctx.memory is not None
    await ctx.memory.write_long_term("helper", "# Memory\n\nThe user is Ada.\n")
    await memory(ctx, action="remember", content="Deploys happen on Fridays", section="decision")
    await memory(ctx, action="remember", content="Coffee is black")

    result = await memory(ctx, action="recall", query="deploys")

    assert result.ok
    assert "The user is Ada." in result.content
    assert "[decision] Deploys happen on Fridays" in result.content
    assert "Coffee" not in result.content


async def test_reflect_shows_memory_then_replaces_memory_md(ctx: ToolContext, memory_root: Path) -> None:
    await memory(ctx, action="remember", content="Uses vim")

    shown = await memory(ctx, action="reflect")
    saved = await memory(ctx, action="reflect", content="# Memory\n\n- Uses vim\n")

    assert "## MEMORY.md (current)" in shown.content
    assert "Uses vim" in shown.content
    assert "action=reflect content=" in shown.content
    assert saved.ok
    assert (memory_root / "helper" / "MEMORY.md").read_text() == "# Memory\n\n- Uses vim\n"


async def test_update_world_writes_the_shared_topic(ctx: ToolContext, memory_root: Path) -> None:
    result = await memory(ctx, action="update_world", topic="office", content="Office closes at 6pm")

    assert result.ok
    assert (memory_root / "world" / "office.md").read_text() == "Office closes at 6pm\n"


async def test_update_world_with_a_bad_topic_is_a_failed_result(ctx: ToolContext) -> None:
    result = await memory(ctx, action="update_world", topic="../escape", content="x")

    assert not result.ok
    assert "invalid world topic" in result.content


async def test_memory_tool_without_a_store_says_memory_is_disabled(tmp_path: Path) -> None:
    ctx = ToolContext(agent="helper", session_id="s", workdir=tmp_path)

    result = await memory(ctx, action="recall")

    assert not result.ok
    assert "not enabled" in result.content


def test_memory_invocation_is_the_action(ctx: ToolContext) -> None:
    tool = MemoryTool()

    assert tool.invocation(tool.parse_arguments({"action": "remember", "content": "x"}), ctx) == "remember"
