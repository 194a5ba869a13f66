"""The `session` tool: a supervisor lists its agent's other sessions and reads their last messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.tools.base import ToolContext
from duragent.tools.registry import builtin_tool, call_tool


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemSessionStore:
    return FilesystemSessionStore(tmp_path / "sessions", fsync="never")


async def conversation(store: FilesystemSessionStore, agent: str, *lines: tuple[str, str]) -> str:
    log = await SessionLog.create(store, agent=agent)
    for turn, (question, answer) in enumerate(lines, start=1):
        await log.append("user_message", {"content": question, "turn": turn})
        await log.append("assistant_message", {"content": answer, "message_id": f"msg_{turn}"})
    await log.snapshot()
    return log.session_id


def context(
    store: FilesystemSessionStore, tmp_path: Path, session_id: str, agent: str = "supervisor"
) -> ToolContext:
    return ToolContext(agent=agent, session_id=session_id, workdir=tmp_path, session_store=store)


async def test_a_supervisor_lists_its_other_sessions_but_not_other_agents(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    mine = await conversation(store, "supervisor", ("run the job", "started"))
    worker = await conversation(store, "supervisor", ("build it", "building"))
    await conversation(store, "someone-else", ("secret", "hidden"))
    result = await call_tool(builtin_tool("session"), {"action": "list"}, context(store, tmp_path, mine))
    assert result.ok
    assert [row["session_id"] for row in result.data["sessions"]] == [worker]


async def test_read_returns_the_last_messages_bounded(store: FilesystemSessionStore, tmp_path: Path) -> None:
    mine = await conversation(store, "supervisor", ("hi", "hello"))
    long_answer = "x" * 5000
    worker = await conversation(
        store, "supervisor", *[(f"question {n}", f"answer {n}") for n in range(1, 8)], ("last", long_answer)
    )
    tool = builtin_tool("session")
    result = await call_tool(
        tool, {"action": "read", "session_id": worker, "last": 3}, context(store, tmp_path, mine)
    )
    assert result.ok
    lines = result.content.splitlines()
    assert lines[0].endswith("assistant: answer 7")
    assert lines[1].endswith("user: last")
    assert "[... 3000 more characters]" in lines[2]
    assert len(result.content) < 2200


async def test_another_agents_session_cannot_be_read(store: FilesystemSessionStore, tmp_path: Path) -> None:
    mine = await conversation(store, "supervisor", ("hi", "hello"))
    theirs = await conversation(store, "someone-else", ("secret", "hidden"))
    result = await call_tool(
        builtin_tool("session"), {"action": "read", "session_id": theirs}, context(store, tmp_path, mine)
    )
    assert not result.ok
    assert "no session" in result.content
    assert "hidden" not in result.content


async def test_read_without_a_session_id_says_what_is_missing(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    result = await call_tool(builtin_tool("session"), {"action": "read"}, context(store, tmp_path, "s_x"))
    assert not result.ok
    assert "read needs session_id" in result.content
