"""`background_process`: the agent starts a long command and carries on; its end comes back as a message.

`spawn` is decided by the policy exactly like `bash` with the same command (`bash:` rules apply,
and an "allow always" saves a `bash:` pattern); the other actions are `background_process:<action>
<handle>`. The process runs in the agent's work folder (or a folder inside it) with the same
minimal environment as bash. When it ends, the session that started it gets a `[process finished]`
message (duragent.processes.completion), unless `wait` was given and it ended within that time:
then its outcome is this call's result.
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from duragent.durations import Duration, format_duration
from duragent.errors import DuragentError
from duragent.processes.manager import SpawnRequest
from duragent.processes.record import ProcessNotFound, ProcessRecord
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.bash import tool_environment

#: Longest `wait` a spawn may ask for (the turn waits meanwhile).
MAX_WAIT_SECONDS = 600.0
#: Most bytes one `log` call returns.
MAX_LOG_BYTES = 64 * 1024

Action = Literal["spawn", "list", "status", "log", "write", "kill", "capture", "send_keys"]
_NEEDS_HANDLE = frozenset({"status", "log", "write", "kill", "capture", "send_keys"})


class BackgroundProcessArgs(ToolArgs):
    """Arguments of `background_process`."""

    action: Action = Field(description="spawn, list, status, log, write, kill, capture or send_keys.")
    command: str | None = Field(None, min_length=1, description="For spawn: the command line (bash -c).")
    workdir: str | None = Field(None, description="For spawn: a folder inside your work folder to run in.")
    timeout: Duration | None = Field(None, description="For spawn: kill it after this long (default 1h).")
    label: str | None = Field(None, max_length=200, description="For spawn: a short name for lists.")
    wait: Duration | None = Field(
        None,
        description="For spawn: wait up to this long (10m at most); if it ends by then, get its result now.",
    )
    interactive: bool = Field(False, description="For spawn: run in a terminal (tmux) for capture/send_keys.")
    handle: str | None = Field(None, description="The process (proc_...) for the other actions.")
    offset: int | None = Field(None, ge=0, description="For log: first byte to read (default: the end).")
    limit: int = Field(8000, ge=1, le=MAX_LOG_BYTES, description="For log: most bytes to read.")
    input: str | None = Field(None, description="For write: text sent to its stdin (add \\n for a line).")
    eof: bool = Field(False, description="For write: close stdin after the text.")
    keys: str | None = Field(None, description="For send_keys: text typed into the terminal.")
    enter: bool = Field(True, description="For send_keys: press Enter after the keys.")

    @field_validator("command", "workdir", "keys")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # (no command line, path or terminal input can hold one: it failed deep in the spawn)
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta | None) -> timedelta | None:
        # (0 was taken for "not given": the process ran for the default hour)
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("must be longer than 0 s (leave it out for the default 1h)")
        return value

    @model_validator(mode="after")
    def _required_fields(self) -> BackgroundProcessArgs:
        if self.action == "spawn" and not self.command:
            raise ValueError("spawn needs command")
        if self.action in _NEEDS_HANDLE and not self.handle:
            raise ValueError(f"{self.action} needs handle (see action list)")
        if self.action == "write" and self.input is None and not self.eof:
            raise ValueError("write needs input (or eof: true)")
        if self.action == "send_keys" and self.keys is None:
            raise ValueError("send_keys needs keys")
        if self.wait is not None and self.wait.total_seconds() > MAX_WAIT_SECONDS:
            raise ValueError(f"wait may be at most {MAX_WAIT_SECONDS:g} s")
        return self


class BackgroundProcessTool(Tool[BackgroundProcessArgs]):
    """Start long commands in the background and follow them."""

    name = "background_process"
    description = (
        "Run a long command in the background while you go on. action=spawn with command (and "
        "optional workdir, timeout, label, wait) returns a handle; when the process ends you get a "
        "[process finished] message with its exit code and the end of its output. action=list shows "
        "your processes; status, log (offset/limit), write (stdin), kill take the handle. "
        "interactive=true runs it in a terminal you read with capture and type into with send_keys."
    )
    Args = BackgroundProcessArgs

    async def run(self, args: BackgroundProcessArgs, ctx: ToolContext) -> ToolResult:
        """Do the action against the server's process manager."""
        if ctx.processes is None:
            return ToolResult(False, "background processes are not available here (no server)")
        try:
            if args.action == "spawn":
                return await _spawn(args, ctx)
            if args.action == "list":
                return _list(ctx)
            return await _on_handle(args, ctx)
        except ProcessNotFound as exc:
            return ToolResult(False, f"{args.action} failed: {exc} (see action list)")
        except DuragentError as exc:
            return ToolResult(False, f"{args.action} failed: {exc}")

    def invocation(self, args: BackgroundProcessArgs, ctx: ToolContext) -> str:
        """The command for spawn, `<action> <handle>` for the others, followed by the text typed for
        write and send_keys: what goes into a shell is what the person approves (and what "allow
        always" saves), not just which process it goes to."""
        if args.action == "spawn":
            return args.command or ""
        head = f"{args.action} {args.handle}" if args.handle else args.action
        typed = args.input if args.action == "write" else args.keys if args.action == "send_keys" else None
        return f"{head} {typed}" if typed else head

    def policy_subject(self, args: BackgroundProcessArgs, ctx: ToolContext) -> tuple[str, str]:
        """spawn is a bash command to the policy; other actions are this tool's."""
        if args.action == "spawn":
            return "bash", args.command or ""
        return self.name, self.invocation(args, ctx)

    def command_folder(self, args: BackgroundProcessArgs, ctx: ToolContext) -> Path:
        """A spawn runs in `workdir` (`cat ../../../run/t*` there reaches further than from the
        work folder)."""
        return ctx.workdir / args.workdir if args.action == "spawn" and args.workdir else ctx.workdir


async def _spawn(args: BackgroundProcessArgs, ctx: ToolContext) -> ToolResult:
    processes = ctx.processes
    assert processes is not None
    assert args.command is not None
    record = await processes.spawn(
        SpawnRequest(
            agent=ctx.agent,
            session_id=ctx.session_id,
            command=args.command,
            work_root=ctx.workdir,
            workdir=args.workdir or ".",
            label=args.label,
            timeout_seconds=args.timeout.total_seconds() if args.timeout else None,
            interactive=args.interactive,
            env=tool_environment(ctx.pass_env, ctx.scrub_env, git_ceiling=ctx.git_ceiling),
            scheduled_by=ctx.scheduled_by,
        )
    )
    if args.wait is not None and args.wait.total_seconds() > 0:
        record = await processes.wait(record.handle, args.wait.total_seconds())
        if record.ended:
            tail = processes.tail(record.handle)
            text = f"process {record.handle} {record.outcome()}\n{tail}".rstrip()
            ok = record.status == "exited" and record.exit_code == 0
            # (reported once this result is stored: a crash before that reports the end as a message)
            return ToolResult(ok, text, _data(record), on_stored=partial(processes.answered, record.handle))
    return ToolResult(
        True,
        f"started {record.handle} (pid {record.pid}); you will get a [process finished] message when it ends",
        _data(record),
    )


def _list(ctx: ToolContext) -> ToolResult:
    assert ctx.processes is not None
    records = ctx.processes.list(ctx.agent)[-50:]
    if not records:
        return ToolResult(True, "no background processes", {"processes": []})
    rows = [_summary(r, ctx) for r in records]
    return ToolResult(
        True, "\n".join(json.dumps(row, ensure_ascii=False) for row in rows), {"processes": rows}
    )


async def _on_handle(args: BackgroundProcessArgs, ctx: ToolContext) -> ToolResult:
    processes = ctx.processes
    assert processes is not None
    assert args.handle is not None
    handle, agent = args.handle, ctx.agent
    if args.action == "status":
        record = processes.get(handle, agent)
        return ToolResult(True, json.dumps(_summary(record, ctx), ensure_ascii=False), _data(record))
    if args.action == "log":
        part = await processes.read_log(handle, agent, args.offset, args.limit)
        note = f"[bytes {part.offset}-{part.end} of {part.total}"
        note += f"; the first {part.dropped} were rotated away]" if part.dropped else "]"
        data = {"offset": part.offset, "end": part.end, "total": part.total, "dropped": part.dropped}
        return ToolResult(True, f"{part.text}\n{note}" if part.text else note, data)
    if args.action == "write":
        waiting = await processes.write(handle, agent, args.input or "", eof=args.eof)
        text = f"sent {len(args.input or '')} characters to {handle}"
        if waiting:
            text += f"; it has not read the last {waiting} bytes yet (they stay queued for it)"
        return ToolResult(True, text)
    if args.action == "kill":
        record = await processes.kill(handle, agent, "killed by the agent", answered=True)
        stored = partial(processes.answered, handle)
        return ToolResult(True, f"process {handle} {record.outcome()}", _data(record), on_stored=stored)
    if args.action == "capture":
        return ToolResult(True, await processes.capture(handle, agent, lines=200))
    assert args.keys is not None
    await processes.send_keys(handle, agent, args.keys, enter=args.enter)
    return ToolResult(True, f"typed into {handle}")


def _summary(record: ProcessRecord, ctx: ToolContext) -> dict[str, object]:
    assert ctx.processes is not None
    row: dict[str, object] = {
        "handle": record.handle,
        "status": record.status,
        "command": record.command,
        "ran": format_duration_seconds(record.duration_seconds(ctx.processes.clock())),
        "output_bytes": record.output_bytes,
    }
    if record.label:
        row["label"] = record.label
    if record.ended:
        row["outcome"] = record.outcome()
    if record.interactive:
        row["interactive"] = True
    return row


def _data(record: ProcessRecord) -> dict[str, object]:
    return {"process": record.to_document()}


def format_duration_seconds(seconds: float) -> str:
    """`4s`, `2m30s`: a run time as people read it."""
    from datetime import timedelta

    return format_duration(timedelta(seconds=round(seconds)))
