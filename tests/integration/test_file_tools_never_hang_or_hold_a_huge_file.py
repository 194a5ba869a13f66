"""The file tools never block on a pipe and never hold more of a file than they show: a FIFO in
the work folder is refused by read_file and edit_file alike, a file of one enormous line is read
a window at a time, and edit_file refuses a file too large to rewrite in memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.tools.base import ToolContext, ToolResult
from duragent.tools.files import MAX_EDIT_BYTES
from duragent.tools.registry import builtin_tool, call_tool


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return ToolContext(agent="helper", session_id="s_test", workdir=workdir)


@pytest.fixture
async def pipe(ctx: ToolContext) -> AsyncIterator[Path]:
    """A named pipe in the work folder; a reader left blocked on it is released at the end (while
    the event loop still runs: closing it waits for the thread the read blocks)."""
    path = ctx.workdir / "pipe"
    os.mkfifo(path)
    yield path
    with contextlib.suppress(OSError):  # (ENXIO: nobody is reading, as it should be)
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


async def call(ctx: ToolContext, tool: str, **arguments: object) -> ToolResult:
    # (a tool that blocked would hang the turn for good: the test gives up instead)
    return await asyncio.wait_for(call_tool(builtin_tool(tool), arguments, ctx), 10)


@pytest.mark.parametrize("tool", ["read_file", "edit_file"])
async def test_a_named_pipe_is_refused_without_waiting_for_a_writer(
    ctx: ToolContext, pipe: Path, tool: str
) -> None:
    arguments = {"path": "pipe"} if tool == "read_file" else {"path": "pipe", "old": "a", "new": "b"}

    result = await call(ctx, tool, **arguments)

    assert not result.ok
    assert result.content == f"{pipe} is not a regular file (a device, socket or pipe)"


async def test_a_symlink_to_a_pipe_is_refused_too(ctx: ToolContext, pipe: Path) -> None:
    (ctx.workdir / "notes.txt").symlink_to("pipe")

    result = await call(ctx, "edit_file", path="notes.txt", old="a", new="b")

    assert not result.ok
    assert "is not a regular file" in result.content


async def test_a_file_of_one_huge_line_is_read_without_holding_it(ctx: ToolContext) -> None:
    line_bytes = 32 * 1024 * 1024
    with (ctx.workdir / "dump.json").open("wb") as handle:
        for _ in range(line_bytes // (1024 * 1024)):
            handle.write(b"a" * 1024 * 1024)
        handle.write(b"\nsecond line\n")
    limit = ctx.limits.read_max_bytes

    tracemalloc.start()
    try:
        result = await call(ctx, "read_file", path="dump.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.ok
    assert peak < 8 * limit  # a window and its text, never the 32 MiB line
    assert result.content.startswith("a" * limit + "\n")
    assert f"[line 1 is longer than {limit} bytes: only its start is shown]" in result.content
    assert "call read_file with offset=2 to continue" in result.content
    assert (await call(ctx, "read_file", path="dump.json", offset=2)).content == "second line\n"


async def test_edit_file_refuses_a_file_too_large_to_rewrite(ctx: ToolContext) -> None:
    big = ctx.workdir / "big.log"
    with big.open("wb") as handle:
        handle.truncate(MAX_EDIT_BYTES + 1)  # (sparse: no disk used)
    before = big.stat()

    result = await call(ctx, "edit_file", path="big.log", old="a", new="b")

    assert not result.ok
    assert result.content == (
        f"big.log is larger than {MAX_EDIT_BYTES} bytes; edit_file changes smaller files "
        "(use bash, e.g. sed, for this one)"
    )
    assert big.stat().st_mtime_ns == before.st_mtime_ns
