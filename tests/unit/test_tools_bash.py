"""The bash tool and command-line tools: real `bash -c` subprocesses in a temp working directory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from duragent.agents.spec import CliToolSpec
from duragent.tools.base import ToolContext, ToolLimits, ToolResult
from duragent.tools.bash import BashArgs, BashTool, CliArgs, CliTool


def context(workdir: Path, **overrides: object) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_test", workdir=workdir, **overrides)  # type: ignore[arg-type]


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def wait_until_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def run_bash(ctx: ToolContext, command: str, seconds: float | None = None) -> ToolResult:
    return await BashTool().run(BashArgs(command=command, timeout_seconds=seconds), ctx)


def text_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_for_text(path: Path) -> str:
    for _ in range(250):
        if text := text_or_empty(path):
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was never written")


async def test_bash_returns_stdout_stderr_and_exit_code(tmp_path: Path) -> None:
    result = await run_bash(context(tmp_path), "echo hello; echo oops >&2; exit 3")

    assert not result.ok
    assert "hello" in result.content
    assert "oops" in result.content
    assert "[exit code 3]" in result.content
    assert result.data is not None
    assert result.data["exit_code"] == 3


async def test_bash_runs_in_the_agents_working_directory(tmp_path: Path) -> None:
    result = await run_bash(context(tmp_path), "pwd")

    assert result.ok
    assert result.content.strip() == str(tmp_path)


async def test_bash_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    result = await run_bash(context(tmp_path), "sleep 30 & echo $! > child.pid; sleep 30", seconds=0.5)

    assert time.monotonic() - started < 5
    assert not result.ok
    assert "timed out after 0.5 s" in result.content
    assert result.data is not None
    assert result.data["timed_out"] is True
    child = int((tmp_path / "child.pid").read_text())
    assert await wait_until_gone(child), "the background child outlived the timeout"


async def test_cancelling_a_running_command_kills_its_process_group(tmp_path: Path) -> None:
    task = asyncio.create_task(run_bash(context(tmp_path), "sleep 30 & echo $! > child.pid; wait"))
    child = int(await wait_for_text(tmp_path / "child.pid"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await wait_until_gone(child)


async def test_secret_variables_are_absent_from_the_child_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_API_KEY", "sk-very-secret")
    monkeypatch.setenv("PLAIN_SETTING", "visible-value")
    ctx = context(tmp_path, scrub_env=frozenset({"MODEL_API_KEY"}))

    result = await run_bash(ctx, "env")

    assert "visible-value" in result.content
    assert "sk-very-secret" not in result.content
    assert "MODEL_API_KEY" not in result.content


async def test_long_output_keeps_head_and_tail_with_a_cut_marker(tmp_path: Path) -> None:
    ctx = context(tmp_path, limits=ToolLimits(output_cap_bytes=1024))

    result = await run_bash(ctx, "echo START; head -c 100000 /dev/zero | tr '\\0' 'a'; echo; echo END")

    assert result.content.startswith("START")
    assert result.content.rstrip().endswith("END")
    total = len("START\n") + 100000 + len("\nEND\n")
    assert f"[… {total - 1024} bytes cut …]" in result.content
    assert len(result.content.encode()) < 1024 + 100


async def test_background_process_holding_the_output_does_not_hang_the_call(tmp_path: Path) -> None:
    started = time.monotonic()
    result = await run_bash(context(tmp_path), "echo started; sleep 30 &")

    assert time.monotonic() - started < 5
    assert result.ok
    assert "started" in result.content
    assert "background processes" in result.content


async def test_cli_tool_passes_arguments_without_a_shell_interpreting_them(tmp_path: Path) -> None:
    tool = CliTool(CliToolSpec(name="say", command="echo"))

    result = await tool.run(CliArgs(args="'hello world'; touch pwned $(id)"), context(tmp_path))

    assert result.ok
    assert result.content.strip() == "hello world; touch pwned $(id)"
    assert not (tmp_path / "pwned").exists()


async def test_cli_tool_reports_unbalanced_quotes(tmp_path: Path) -> None:
    tool = CliTool(CliToolSpec(name="say", command="echo"))

    result = await tool.run(CliArgs(args="'unterminated"), context(tmp_path))

    assert not result.ok
    assert "cannot split args" in result.content
