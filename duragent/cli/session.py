"""`duragent session ...`: list, show, log, export and delete stored sessions."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import FIRST_MESSAGE_SHOWN, CliState, print_json, print_table, run_async
from duragent.terminal_text import shortened

if TYPE_CHECKING:
    from duragent.workspace import Workspace

app = typer.Typer(help="Inspect and manage stored sessions.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add the `session` command group."""
    root.add_typer(app, name="session")


def _workspace(ctx: typer.Context) -> Workspace:
    from duragent.workspace import Workspace

    state: CliState = ctx.obj
    return Workspace(state.config())


async def _full_id(workspace: Workspace, text: str) -> str:
    """The session id `text` names: the whole id, its name, or any unique start of the id (`s_01M8VR`)."""
    from duragent.ids import resolve_session

    return resolve_session(text, ((s.session_id, s.name) for s in await workspace.stores.sessions.list()))


def _when(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


@app.command("list")
def list_sessions(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's sessions.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="active, running, paused or ended.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every session on disk, most recent activity first."""
    if status is not None:
        _check_status(status)

    async def run() -> list[Any]:
        async with _workspace(ctx) as workspace:
            return await workspace.stores.sessions.list(agent=agent, status=status)

    sessions = run_async(run())
    if as_json:
        print_json(
            [
                {
                    "session_id": s.session_id,
                    "agent": s.agent,
                    "status": s.status,
                    "created_at": s.created_at.isoformat(),
                    "updated_at": s.updated_at.isoformat(),
                    "events": s.last_seq,
                    "name": s.name,
                    "first_message": s.first_message,
                }
                for s in sessions
            ]
        )
        return
    if not sessions:
        print("No session matches these options." if agent or status else "No sessions yet.")
        return
    rows = [
        [
            s.session_id,
            s.agent,
            s.status,
            str(s.last_seq),
            _when(s.updated_at),
            shortened(s.first_message or "-", FIRST_MESSAGE_SHOWN),
        ]
        for s in sessions
    ]
    header = ["SESSION", "AGENT", "STATUS", "EVENTS", "LAST ACTIVITY", "FIRST MESSAGE"]
    if any(s.name for s in sessions):
        header.insert(1, "NAME")
        for row, s in zip(rows, sessions, strict=True):
            row.insert(1, s.name or "-")
    print_table(header, rows)


def _check_status(status: str) -> None:
    """UsageError unless `status` is one a session can have."""
    from typing import get_args

    from duragent.errors import UsageError
    from duragent.stores.base import SessionStatus

    known = get_args(SessionStatus)
    if status not in known:
        raise UsageError(f"invalid --status {status!r}: use {', '.join(known[:-1])} or {known[-1]}")


@app.command("show")
def show_session(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a session is: agent, state, counts, usage, pending approvals."""
    from duragent.sessions.inspect import describe_unattended, inspect_session

    async def run() -> tuple[Any, dict[str, Any] | None]:
        async with _workspace(ctx) as workspace:
            full_id = await _full_id(workspace, session_id)
            info = await inspect_session(workspace.stores.sessions, full_id)
            return info, info.unattended(_background_limit(workspace, info.agent), utcnow())

    from duragent.stores.base import utcnow

    info, unattended = run_async(run())
    if as_json:
        print_json({**info.to_json(), "unattended": unattended})
        return
    print(f"session   {info.session_id}")
    print(f"agent     {info.agent}")
    print(f"status    {info.status}")
    if info.status == "paused":
        print(f"paused    {_pause_text(info)}")
    for queued in info.queued:
        print(f"waiting   {_waiting_text(queued)}")
    print(f"created   {_when(info.created_at)}")
    print(f"updated   {_when(info.updated_at)}")
    print(
        f"events    {info.last_seq} ({', '.join(f'{n} {t}' for t, n in sorted(info.event_counts.items()))})"
    )
    print(f"turns     {info.turns}")
    if info.usage:
        print("usage     " + ", ".join(f"{k} {v}" for k, v in sorted(info.usage.items())))
    for approval in info.pending_approvals:
        print(f"pending   approval for {approval.get('tool', '?')} (call {approval.get('call_id', '?')})")
    if unattended is not None:
        print(f"unattended {describe_unattended(unattended, _when)}")


def _pause_text(info: Any) -> str:
    """Why a paused session paused, and what continues it."""
    from duragent.sessions.live import DISCONNECT_PAUSE_REASON, RESTART_PAUSE_REASON, SHUTDOWN_PAUSE_REASON
    from duragent.sessions.stream import APPROVAL_PAUSE_REASON

    reason = info.pause_reason or "no reason recorded"
    attach = f"duragent attach {info.session_id}"
    if reason == APPROVAL_PAUSE_REASON or info.pending_approvals:
        return f"{reason}: {attach} answers it"
    if reason in (DISCONNECT_PAUSE_REASON, RESTART_PAUSE_REASON, SHUTDOWN_PAUSE_REASON):
        return f"{reason}: it waits for a client ({attach} continues it)"
    return f"{reason}: {attach}, then /resume, continues it"


def _waiting_text(queued: dict[str, Any]) -> str:
    """One message queued for a turn: who sent it and its first line (control characters escaped)."""
    from duragent.terminal_text import printable

    sender = queued.get("sender")
    name = sender.get("name") if isinstance(sender, dict) else None
    first = str(queued.get("content", "")).strip().splitlines()[:1]
    text = first[0] if first else ""
    text = printable(text if len(text) <= 70 else text[:69] + "…")
    return f"message from {printable(str(name))}: {text}" if name else f"message: {text}"


def _background_limit(workspace: Workspace, agent_name: str) -> timedelta:
    """The agent's `max_background_runtime` (duragent.yaml's when the agent cannot be loaded)."""
    from duragent.agents.loader import session_settings
    from duragent.errors import DuragentError

    try:
        agent = workspace.agents.get(agent_name)
    except DuragentError:
        return workspace.config.session.max_background_runtime
    limit: timedelta = session_settings(agent, workspace.config)["max_background_runtime"].value
    return limit


@app.command("log")
def log_session(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
) -> None:
    """The session as a readable transcript (`--follow` tails live appends, like `tail -f`)."""
    from duragent.cli.encoding import stdout_is_utf8
    from duragent.sessions.inspect import follow_events

    escaped = not stdout_is_utf8()  # JSON lines stay whole in a locale without `é` or `☕`

    def emit(event: Any) -> None:
        if as_json:
            import json

            print(json.dumps(event.to_record(), ensure_ascii=escaped, separators=(",", ":")), flush=True)
        else:
            from duragent.sessions.transcript import render_text

            for line in render_text([event]):
                print(line, flush=True)

    async def run() -> None:
        async with _workspace(ctx) as workspace:
            full_id = await _full_id(workspace, session_id)
            async for event in follow_events(workspace.stores.sessions, full_id, follow=follow):
                emit(event)

    try:
        run_async(run())
    except KeyboardInterrupt:
        print(file=sys.stderr)  # (Ctrl-C ends `--follow`: the shell's prompt goes on a line of its own)


@app.command("export")
def export_session(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl (the raw log) or md (a transcript).")] = "jsonl",
) -> None:
    """Write the whole session to stdout as JSON lines or Markdown."""
    import json

    from duragent.errors import UsageError
    from duragent.sessions.transcript import render_markdown
    from duragent.terminal_text import printable

    if fmt not in ("jsonl", "md"):
        raise UsageError(f"--format must be 'jsonl' or 'md', got {fmt!r}")

    async def run() -> tuple[str, list[Any]]:
        async with _workspace(ctx) as workspace:
            full_id = await _full_id(workspace, session_id)
            return full_id, await workspace.stores.sessions.read(full_id)

    session_id, events = run_async(run())
    # Written as UTF-8 bytes whatever the locale says: an export is a file (`> s.jsonl`), and a
    # terminal encoding without `→` or `é` would otherwise end it half way with a traceback.
    out = sys.stdout.buffer
    if fmt == "jsonl":
        for event in events:
            record = json.dumps(event.to_record(), ensure_ascii=False, separators=(",", ":"))
            out.write(record.encode() + b"\n")
    else:
        # (a transcript to read: what the model and tools wrote is shown with its control
        # characters as escapes; the JSON lines keep every character)
        out.write(printable("\n".join(render_markdown(session_id, events))).encode())
    out.flush()


@app.command("delete")
def delete_session(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a session's log and snapshot; the deletion is committed, so git still has it."""
    from duragent.errors import UsageError

    async def resolve() -> str:
        async with _workspace(ctx) as workspace:
            return await _full_id(workspace, session_id)

    session_id = run_async(resolve())
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to delete without confirmation: pass --yes")
        typer.confirm(f"Delete session {session_id}?", abort=True)

    async def run() -> None:
        from duragent.client.http import ApiClient, api_token
        from duragent.client.runfile import read_run_info
        from duragent.stores.base import changes_by_person

        async with _workspace(ctx) as workspace:
            running = read_run_info(workspace.config.data_path)
            if running is None:
                # (the committer starts first: what an earlier run left uncommitted is the agent's,
                # and must be queued before the deletion, which is committed as the person's)
                _ = workspace.committer
                with changes_by_person():
                    await workspace.stores.sessions.delete(session_id)
                return
            # The server may have the session loaded: deleted underneath it (which PostgreSQL
            # would allow), the session would live on there and its next message hang.
            async with ApiClient(running.url, token=api_token(workspace.config)) as api:
                await api.request("DELETE", f"/api/v1/sessions/{session_id}")

    run_async(run())
    print(f"Deleted session {session_id}.")


@app.command("fork")
def fork_session(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="ID (whole session), ID@SEQ (up to that event) or ID@REV (as of a commit).")
    ],
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name kept in the new session.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A new session whose history is the original's up to that point; the original is untouched."""
    import dataclasses

    from duragent.sessions.fork import events_to_fork, fork_session, parse_fork_target
    from duragent.stores.base import changes_by_person

    parsed = parse_fork_target(target)

    async def run() -> Any:
        async with _workspace(ctx) as workspace:
            store = workspace.stores.sessions
            point = dataclasses.replace(parsed, session_id=await _full_id(workspace, parsed.session_id))
            events_path = None
            if workspace.repo is not None:
                folder = workspace.config.service_path("session") / point.session_id / "events.jsonl"
                events_path = workspace.repo.relative(folder)
            events = await events_to_fork(store, point, repo=workspace.repo, events_path=events_path)
            # (the committer starts first: what an earlier run left uncommitted is the agent's)
            _ = workspace.committer
            with changes_by_person():  # the person's command: the new session is committed as theirs
                state = await fork_session(store, point.session_id, events, name=name)
            return point, events[-1].seq, state

    # (the original's seq: the fork leaves out a `session_end`, so its own last seq may be lower)
    point, forked_at, state = run_async(run())
    if as_json:
        print_json(
            {"session_id": state.session_id, "forked_from": {"session": point.session_id, "seq": forked_at}}
        )
        return
    print(f"Forked {point.session_id} at seq {forked_at} into {state.session_id}.")
