"""File tools on real files: confinement to the roots, reading windows, writing, editing, listing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from duragent.tools.base import ToolContext, ToolLimits, ToolResult
from duragent.tools.files import (
    EditFileArgs,
    EditFileTool,
    ListFilesArgs,
    ListFilesTool,
    ReadFileArgs,
    ReadFileTool,
    WriteFileArgs,
    WriteFileTool,
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "agent-work"
    folder.mkdir()
    return folder


def context(workdir: Path, **overrides: object) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_test", workdir=workdir, **overrides)  # type: ignore[arg-type]


async def read(ctx: ToolContext, path: str, **kwargs: int) -> ToolResult:
    return await ReadFileTool().run(ReadFileArgs(path=path, **kwargs), ctx)


async def write(ctx: ToolContext, path: str, content: str) -> ToolResult:
    return await WriteFileTool().run(WriteFileArgs(path=path, content=content), ctx)


async def edit(ctx: ToolContext, path: str, old: str, new: str, count: int | None = None) -> ToolResult:
    return await EditFileTool().run(EditFileArgs(path=path, old=old, new=new, count=count), ctx)


# --- confinement --------------------------------------------------------------------------------


async def test_dot_dot_escape_is_refused(workdir: Path) -> None:
    (workdir.parent / "secret.txt").write_text("top secret")

    result = await read(context(workdir), "../secret.txt")

    assert not result.ok
    assert "outside the allowed folders" in result.content
    assert "top secret" not in result.content


async def test_absolute_path_outside_the_roots_is_refused(workdir: Path) -> None:
    outside = workdir.parent / "elsewhere.txt"

    result = await write(context(workdir), str(outside), "data")

    assert not result.ok
    assert "outside the allowed folders" in result.content
    assert not outside.exists()


async def test_symlink_pointing_out_of_the_roots_is_refused(workdir: Path) -> None:
    (workdir.parent / "outside").mkdir()
    (workdir.parent / "outside" / "passwords.txt").write_text("hunter2")
    (workdir / "link").symlink_to(workdir.parent / "outside")

    read_result = await read(context(workdir), "link/passwords.txt")
    write_result = await write(context(workdir), "link/new.txt", "x")

    assert not read_result.ok
    assert "hunter2" not in read_result.content
    assert not write_result.ok
    assert not (workdir.parent / "outside" / "new.txt").exists()


async def test_absolute_path_inside_an_extra_root_is_allowed(workdir: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.md").write_text("shared notes\n")
    ctx = context(workdir, file_roots=(workdir, shared))

    result = await read(ctx, str(shared / "notes.md"))

    assert result.ok
    assert result.content == "shared notes\n"


async def test_list_files_hides_symlinks_that_point_out(workdir: Path) -> None:
    (workdir / "kept.txt").write_text("x")
    (workdir / "escape").symlink_to(workdir.parent)

    result = await ListFilesTool().run(ListFilesArgs(), context(workdir))

    assert result.content.splitlines() == ["kept.txt"]


# --- read, write, list --------------------------------------------------------------------------


async def test_write_then_read_round_trips_and_creates_folders(workdir: Path) -> None:
    ctx = context(workdir)

    written = await write(ctx, "notes/today.md", "line one\nline two\n")
    result = await read(ctx, "notes/today.md")

    assert written.ok
    assert written.content == "created notes/today.md (18 bytes)"
    assert result.content == "line one\nline two\n"


async def test_read_window_says_how_to_continue(workdir: Path) -> None:
    (workdir / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))

    result = await read(context(workdir), "long.txt", offset=3, limit=2)

    assert result.content.startswith("line 3\nline 4\n")
    assert "call read_file with offset=5 to continue" in result.content


async def test_read_stops_at_the_size_limit(workdir: Path) -> None:
    (workdir / "big.txt").write_text("x" * 99 + "\n" * 1 + ("y" * 99 + "\n") * 50)
    ctx = context(workdir, limits=ToolLimits(read_max_bytes=250))

    result = await read(ctx, "big.txt")

    assert result.content.count("\n") <= 4
    assert "stopped at 250 bytes" in result.content


async def test_binary_files_are_not_read(workdir: Path) -> None:
    (workdir / "image.bin").write_bytes(b"\x89PNG\x00\x01\x02")

    result = await read(context(workdir), "image.bin")

    assert not result.ok
    assert "binary" in result.content


async def test_write_keeps_the_permissions_of_a_replaced_file(workdir: Path) -> None:
    script = workdir / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o755)

    result = await write(context(workdir), "run.sh", "echo new\n")

    assert result.content.startswith("replaced run.sh")
    assert script.read_text() == "echo new\n"
    assert os.stat(script).st_mode & 0o777 == 0o755


async def test_list_files_with_a_recursive_pattern(workdir: Path) -> None:
    (workdir / "src" / "pkg").mkdir(parents=True)
    (workdir / "src" / "pkg" / "mod.py").write_text("")
    (workdir / "top.py").write_text("")
    (workdir / "readme.md").write_text("")
    (workdir / ".git").mkdir()
    (workdir / ".git" / "hook.py").write_text("")

    flat = await ListFilesTool().run(ListFilesArgs(), context(workdir))
    python = await ListFilesTool().run(ListFilesArgs(pattern="**/*.py"), context(workdir))

    assert flat.content.splitlines() == ["readme.md", "src/", "top.py"]
    assert python.content.splitlines() == ["src/pkg/mod.py", "top.py"]


@pytest.mark.parametrize("pattern", ["/etc/*", "~/.ssh/*"])
async def test_list_files_says_a_pattern_must_be_relative(workdir: Path, pattern: str) -> None:
    result = await ListFilesTool().run(ListFilesArgs(pattern=pattern), context(workdir))

    assert not result.ok
    assert result.content == (
        f"pattern {pattern!r} must be relative to the folder listed; put the folder in path instead"
    )


# --- edit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "old", "new", "count", "ok", "expected_text", "message"),
    [
        ("a = 1\nb = 2\n", "b = 2", "b = 3", None, True, "a = 1\nb = 3\n", "replaced 1 occurrence in f.py"),
        ("x\nx\n", "x", "y", None, False, "x\nx\n", "occurs 2 times"),
        ("x\nx\n", "x", "y", 2, True, "y\ny\n", "replaced 2 occurrences"),
        ("x\nx\n", "x", "y", 3, False, "x\nx\n", "occurs 2 times in f.py, not 3"),
        ("a = 1\n", "zzz", "y", None, False, "a = 1\n", "was not found"),
    ],
    ids=["unique", "ambiguous", "count-matches", "count-differs", "not-found"],
)
async def test_edit_file_replaces_exact_text_or_explains_why_not(
    workdir: Path,
    original: str,
    old: str,
    new: str,
    count: int | None,
    ok: bool,
    expected_text: str,
    message: str,
) -> None:
    (workdir / "f.py").write_text(original)

    result = await edit(context(workdir), "f.py", old, new, count)

    assert result.ok is ok
    assert message in result.content
    assert (workdir / "f.py").read_text() == expected_text


async def test_edit_of_a_missing_file_points_to_write_file(workdir: Path) -> None:
    result = await edit(context(workdir), "missing.txt", "a", "b")

    assert not result.ok
    assert "use write_file" in result.content


def test_file_tool_invocation_is_the_resolved_path(workdir: Path) -> None:
    ctx = context(workdir, file_roots=(workdir, Path("/tmp")))
    tool = WriteFileTool()

    inside = tool.invocation(WriteFileArgs(path="./notes/../notes/a.md", content=""), ctx)
    outside = tool.invocation(WriteFileArgs(path="/tmp/x/../y.txt", content=""), ctx)

    assert inside == "notes/a.md"
    assert outside == os.path.realpath("/tmp/y.txt")
