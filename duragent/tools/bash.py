"""Shell tools: `bash` runs a command line, and command-line tools from agent.yaml run one program.

Each command runs as `bash -c` in the agent's working directory, in its own process group so a
timeout or a cancelled turn kills everything it started. stdout and stderr are read as one
stream (in the order a terminal would show them) and capped to their head and tail. The
environment is minimal (PATH, HOME, LANG, TERM, TZ) plus the names the agent lists in
`spec.tools.env`: the server's API keys and tokens never reach a tool unless listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from pathlib import Path

from pydantic import Field, field_validator

from duragent.agents.spec import CliToolSpec
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import HeadTailBuffer

#: How long to keep reading after the shell exits, for output still in the pipe.
DRAIN_SECONDS = 1.0
#: Longest timeout a model may ask for.
MAX_TIMEOUT_SECONDS = 3600.0
_READ_CHUNK = 64 * 1024


#: What every tool process sees of the server's environment; anything else must be listed in
#: the agent's `spec.tools.env`.
BASE_ENV = ("PATH", "HOME", "LANG", "TERM", "TZ")


def tool_environment(
    listed: tuple[str, ...] = (),
    scrub: frozenset[str] = frozenset(),
    source: dict[str, str] | None = None,
    *,
    git_ceiling: Path | None = None,
) -> dict[str, str]:
    """The environment of a bash or cli tool: BASE_ENV plus the agent's `listed` names.

    API keys, tokens and every variable the configuration references are the server's, not the
    model's: they reach a tool only when the agent lists them in `spec.tools.env`. With
    `git_ceiling` (the data directory), `git` run below it never finds the data repository: its
    working folder lies inside it, and through it every agent's memory and sessions and its own
    config, aliases and hooks would be a `git` command away.
    """
    environ = dict(os.environ) if source is None else source
    names = [name for name in BASE_ENV if name not in scrub] + list(listed)
    env = {name: environ[name] for name in dict.fromkeys(names) if name in environ}
    if git_ceiling is not None:
        ceilings = [os.path.abspath(git_ceiling), env.get("GIT_CEILING_DIRECTORIES", "")]
        env["GIT_CEILING_DIRECTORIES"] = os.pathsep.join(filter(None, ceilings))
    return env


async def run_command(command: str, ctx: ToolContext, timeout_seconds: float | None = None) -> ToolResult:
    """Run `bash -c command` in ctx.workdir; output capped head+tail, exit code in `data`."""
    timeout = timeout_seconds or ctx.limits.bash_timeout_seconds
    # Our own pipe rather than asyncio's: asyncio's `wait()` also waits for the pipes to close,
    # which a background child (`server &`) can keep open long after the shell has exited.
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            cwd=ctx.workdir,
            env=tool_environment(ctx.pass_env, ctx.scrub_env, git_ceiling=ctx.git_ceiling),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,  # its own process group, killed as a whole
        )
    except OSError as exc:
        os.close(read_fd)
        return ToolResult(False, f"could not start bash in {ctx.workdir}: {exc.strerror or exc}")
    except BaseException:
        os.close(read_fd)  # cancelled while starting: nothing will read this pipe
        raise
    finally:
        os.close(write_fd)
    try:
        stream, transport = await open_pipe_reader(read_fd)
    except BaseException:
        # cancelled before supervision began: the command runs already, and nothing else stops it
        kill_group(process.pid)
        raise
    try:
        return await _supervise(process, stream, HeadTailBuffer(ctx.limits.output_cap_bytes), timeout)
    finally:
        transport.close()


async def _supervise(
    process: asyncio.subprocess.Process, stream: asyncio.StreamReader, output: HeadTailBuffer, seconds: float
) -> ToolResult:
    """Collect output until the shell exits; kill its process group on timeout or cancellation."""
    reader = asyncio.create_task(_read_all(stream, output))
    try:
        exit_code = await asyncio.wait_for(process.wait(), seconds)
    except TimeoutError:
        kill_group(process.pid)
        await process.wait()
        await _finish_reading(reader)
        note = f"[timed out after {seconds:g} s: the command and everything it started were killed]"
        return ToolResult(
            False,
            f"{output.text()}\n{note}",
            {"exit_code": None, "timed_out": True, "output_bytes": output.total},
        )
    except asyncio.CancelledError:
        kill_group(process.pid)
        reader.cancel()
        raise
    stray = await _finish_reading(reader)
    if stray:
        # Background children still held the output pipe open after the shell exited.
        kill_group(process.pid)
    return _command_result(output, exit_code, stray)


async def open_pipe_reader(read_fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """A stream over the read end of a pipe (the caller closes the transport)."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=_READ_CHUNK)
    transport, _protocol = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )
    return stream, transport


async def _read_all(stream: asyncio.StreamReader, output: HeadTailBuffer) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        output.feed(chunk)


async def _finish_reading(reader: asyncio.Task[None]) -> bool:
    """Wait briefly for the rest of the output; True when something still held the pipe open."""
    done, _ = await asyncio.wait({reader}, timeout=DRAIN_SECONDS)
    if done:
        return False
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    return True


def kill_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send `sig` to the process group `pid` leads (nothing happens when it is gone)."""
    # The group may already be gone (everything exited): that is the outcome we wanted.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _command_result(output: HeadTailBuffer, exit_code: int, stray: bool) -> ToolResult:
    text = output.text()
    notes = []
    if exit_code != 0:
        notes.append(f"[exit code {exit_code}]")
    if stray:
        notes.append("[background processes still writing to the output were stopped]")
    if not text and not notes:
        text = "(no output)"
    content = "\n".join(part for part in (text.rstrip("\n"), *notes) if part)
    return ToolResult(exit_code == 0, content, {"exit_code": exit_code, "output_bytes": output.total})


def no_nul_byte(value: str) -> str:
    """`value`, or a ValueError when it holds a NUL byte (no argument of a program can: it ends C
    strings)."""
    if "\x00" in value:
        raise ValueError("contains a NUL byte, which no command line can hold")
    return value


class BashArgs(ToolArgs):
    """Arguments of `bash`."""

    command: str = Field(min_length=1, description="The command line, run with `bash -c`.")
    timeout_seconds: float | None = Field(
        None, gt=0, le=MAX_TIMEOUT_SECONDS, description="Kill the command after this many seconds."
    )

    _no_nul_byte = field_validator("command")(no_nul_byte)


class BashTool(Tool[BashArgs]):
    """Run a shell command in the agent's working directory."""

    name = "bash"
    description = (
        "Run a shell command with `bash -c` in the agent's working directory and return its "
        "output (stdout and stderr together, long output cut in the middle) and exit code. "
        "Commands are killed after a timeout (120 s unless timeout_seconds says otherwise)."
    )
    Args = BashArgs

    async def run(self, args: BashArgs, ctx: ToolContext) -> ToolResult:
        """Run the command; a non-zero exit code is a failed result carrying the output."""
        return await run_command(args.command, ctx, args.timeout_seconds)

    def invocation(self, args: BashArgs, ctx: ToolContext) -> str:
        """The command line itself."""
        return args.command


class CliArgs(ToolArgs):
    """Arguments of a command-line tool from agent.yaml."""

    args: str = Field("", description="Arguments, split like a shell would but never interpreted by one.")

    _no_nul_byte = field_validator("args")(no_nul_byte)


class CliTool(Tool[CliArgs]):
    """A program from agent.yaml's `tools: [{type: cli, name, command}]`, offered as its own tool.

    The model's `args` are split with shell quoting rules and each is quoted again, so pipes,
    `;`, `$(...)` and redirections in them are plain text: the model runs this program only.
    """

    Args = CliArgs

    def __init__(self, spec: CliToolSpec):
        self.name = spec.name
        self.command = spec.command
        self.description = spec.description or f"Run `{spec.command}` with the given arguments."

    async def run(self, args: CliArgs, ctx: ToolContext) -> ToolResult:
        """Run the configured command with the arguments appended."""
        try:
            words = shlex.split(args.args)
        except ValueError as exc:
            return ToolResult(False, f"cannot split args {args.args!r}: {exc}")
        command_line = f"{self.command} {shlex.join(words)}" if words else self.command
        return await run_command(command_line, ctx)

    def invocation(self, args: CliArgs, ctx: ToolContext) -> str:
        """The arguments as given (policy patterns like `mytool:--dry-run *` match them)."""
        return args.args
