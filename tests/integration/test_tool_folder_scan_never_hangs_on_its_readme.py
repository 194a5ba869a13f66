"""Scanning tool folders (every turn, `reload_tools`, `agent validate`) reads only the start of a
README.md that is a regular file: a README that is a named pipe (which would block the scan, and
so the turn, for good) or a device (/dev/zero never ends) leaves the tool described by its
folder, and a huge one is read no further than its description needs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.tools.folders import MAX_DESCRIPTION_CHARS, ToolFolder, scan_tool_folders


def tool_folder(tools_dir: Path, name: str) -> Path:
    folder = tools_dir / name
    folder.mkdir(parents=True)
    run = folder / "run"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    return folder


async def scan(tools_dir: Path) -> list[ToolFolder]:
    # (a scan that blocked would hang the turn for good: the test gives up instead)
    tools, problems = await asyncio.wait_for(asyncio.to_thread(scan_tool_folders, tools_dir), 10)
    assert problems == []
    return tools


@pytest.fixture
async def piped_readme(tmp_path: Path) -> AsyncIterator[Path]:
    """A tool folder whose README.md is a named pipe; a reader left blocked on it is released at
    the end (while the event loop runs: closing it waits for the blocked thread)."""
    readme = tool_folder(tmp_path / "tools", "weather") / "README.md"
    os.mkfifo(readme)
    yield readme
    with contextlib.suppress(OSError):  # (ENXIO: nobody is reading, as it should be)
        os.close(os.open(readme, os.O_WRONLY | os.O_NONBLOCK))


async def test_a_readme_that_is_a_pipe_does_not_block_the_scan(tmp_path: Path, piped_readme: Path) -> None:
    tools = await scan(tmp_path / "tools")

    assert [tool.name for tool in tools] == ["weather"]
    assert tools[0].description == "Run the program of the tool folder weather with the given arguments."


async def test_a_huge_readme_is_read_only_as_far_as_the_description_goes(tmp_path: Path) -> None:
    readme = tool_folder(tmp_path / "tools", "weather") / "README.md"
    with readme.open("w") as handle:
        handle.write("Weather for a city. " * (8 * 1024 * 1024 // 20))  # 8 MiB

    tracemalloc.start()
    try:
        tools = await scan(tmp_path / "tools")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 1024 * 1024
    assert len(tools[0].description) == MAX_DESCRIPTION_CHARS
    assert tools[0].description.startswith("Weather for a city. Weather")
    assert tools[0].description.endswith("…")
