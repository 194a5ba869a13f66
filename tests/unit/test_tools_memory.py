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


def session(ctx: ToolContext, session_id: str) -> ToolContext:
    """The same agent and store, another session."""
    return ToolContext(agent=ctx.agent, session_id=session_id, workdir=ctx.workdir, memory=ctx.memory)


async def test_reflect_keeps_a_line_a_person_added_after_it_was_shown_even_once_another_session_read_it(
    ctx: ToolContext, memory_root: Path
) -> None:
    assert ctx.memory is not None
    await ctx.memory.write_long_term("helper", "# Memory\n\n- Uses vim\n")
    await memory(ctx, action="reflect")
    long_term = memory_root / "helper" / "MEMORY.md"
    long_term.write_text(long_term.read_text() + "- Ada's cat is called Tom\n")
    # (another session's recall reads the edited file before this session's rewrite lands)
    await memory(session(ctx, "s_02OTHER"), action="recall")

    await memory(ctx, action="reflect", content="# Memory\n\n- Uses vim, daily\n")

    assert long_term.read_text() == "# Memory\n\n- Uses vim, daily\n- Ada's cat is called Tom\n"


async def test_two_sessions_reflecting_at_once_both_keep_what_they_wrote(
    ctx: ToolContext, memory_root: Path
) -> None:
    assert ctx.memory is not None
    await ctx.memory.write_long_term("helper", "# Memory\n\n- Uses vim\n- Old plan\n")
    other = session(ctx, "s_02OTHER")
    await memory(ctx, action="reflect")
    await memory(other, action="reflect")

    await memory(ctx, action="reflect", content="# Memory\n\n- Uses vim\n- Ships on Fridays\n")
    await memory(other, action="reflect", content="# Memory\n\n- Uses vim\n- Old plan\n- Likes tea\n")

    text = (memory_root / "helper" / "MEMORY.md").read_text()
    assert "- Ships on Fridays" in text
    assert "- Likes tea" in text


async def test_reflect_still_drops_a_line_it_was_shown_and_left_out(
    ctx: ToolContext, memory_root: Path
) -> None:
    assert ctx.memory is not None
    await ctx.memory.write_long_term("helper", "# Memory\n\n- Uses vim\n- Old plan\n")
    await memory(ctx, action="reflect")

    await memory(ctx, action="reflect", content="# Memory\n\n- Uses vim\n")

    assert (memory_root / "helper" / "MEMORY.md").read_text() == "# Memory\n\n- Uses vim\n"
