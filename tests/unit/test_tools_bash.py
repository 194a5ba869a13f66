"""The bash tool and command-line tools: real `bash -c` subprocesses in a temp working directory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from duragent.agents.spec import CliToolSpec
from duragent.tools.base import ToolContext, ToolLimits, ToolResult
from duragent.tools.bash import BashArgs, BashTool, CliArgs, CliTool
from duragent.tools.registry import call_tool


def context(workdir: Path, **overrides: object) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_test", workdir=workdir, **overrides)  # type: ignore[arg-type]


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def wait_until_gone(pid: int, seconds: float = 10.0) -> bool:
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


async def test_a_tool_sees_only_the_minimal_environment_and_what_the_agent_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-proj-openai-secret",
        "MODEL_API_KEY": "sk-very-secret",
        "DURAGENT_ADMIN_TOKEN": "admin-token-secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "DB_PASSWORD_PROD": "hunter2-secret",
        "DATABASE_URL": "postgresql://u:pw-secret@db/x",
        "PLAIN_SETTING": "plain-but-unlisted",
    }
    for name, value in {**secrets, "LANG": "C.UTF-8", "TZ": "Europe/Berlin", "PROJECT": "p-listed"}.items():
        monkeypatch.setenv(name, value)
    ctx = context(tmp_path, scrub_env=frozenset({"DATABASE_URL"}), pass_env=("PROJECT",))

    shown = (await run_bash(ctx, "env")).content

    for name, value in secrets.items():
        assert name not in shown
        assert value not in shown
    for kept in ("PATH=", "HOME=", "LANG=C.UTF-8", "TZ=Europe/Berlin", "PROJECT=p-listed"):
        assert kept in shown


async def test_a_secret_reaches_a_tool_only_when_the_agent_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_listed_on_purpose")
    listed = context(tmp_path, scrub_env=frozenset({"GITHUB_TOKEN"}), pass_env=("GITHUB_TOKEN",))
    unlisted = context(tmp_path, scrub_env=frozenset({"GITHUB_TOKEN"}))

    assert "ghp_listed_on_purpose" in (await run_bash(listed, "echo $GITHUB_TOKEN")).content
    assert "ghp_listed_on_purpose" not in (await run_bash(unlisted, "echo $GITHUB_TOKEN")).content


async def test_cli_tools_get_the_same_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    tool = CliTool(CliToolSpec(name="show_env", command="env", description="Shows the environment."))

    result = await tool.run(CliArgs(), context(tmp_path))

    assert "sk-ant-secret" not in result.content
    assert "PATH=" in result.content


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


async def test_git_in_the_work_folder_does_not_find_the_data_repository_around_it(tmp_path: Path) -> None:
    """The agent's work folder lies inside the data repository: through it, `git log -p ../..` would
    read every agent's memory and sessions, and `git config` reach the repository's own config."""
    import subprocess

    data = tmp_path / ".duragent"
    workdir = data / "work" / "helper"
    workdir.mkdir(parents=True)
    await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(data)], check=True)

    result = await run_bash(context(workdir, git_ceiling=data), "git rev-parse --show-toplevel")

    assert not result.ok
    assert "not a git repository" in result.content
    # a repository of its own in the work folder is still the agent's to use
    own = await run_bash(context(workdir, git_ceiling=data), "git init -q . && git rev-parse --show-toplevel")
    assert own.ok
    assert own.content.strip() == str(workdir.resolve())


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        (BashTool(), {"command": "echo a\x00b"}, "command"),
        (CliTool(CliToolSpec(name="say", command="echo")), {"args": "a\x00b"}, "args"),
    ],
    ids=["bash", "cli"],
)
async def test_a_nul_byte_in_a_command_is_refused_naming_the_argument(
    tmp_path: Path, tool: BashTool | CliTool, arguments: dict[str, str], field: str
) -> None:
    result = await call_tool(tool, arguments, context(tmp_path))

    assert not result.ok
    assert result.content == (
        f"invalid arguments for {tool.name}: {field}: contains a NUL byte, which no command line can hold"
    )
