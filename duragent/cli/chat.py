"""`duragent chat`, `attach` and `send`: talk to agents from a terminal, through the workspace's server.

These commands are clients of the HTTP API. They find the workspace's running server (or start
one in the background, so sessions outlive the terminal), then stream what the session does.
When the workspace's server already runs, a plain `send`, `chat` or `attach` is answered before
this module (and typer) is imported: `duragent.cli.quick_send` and `duragent.cli.quick_chat`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.chatting import open_attach, open_chat, say_interrupted, talk
from duragent.cli.context import CliState, run_async
from duragent.cli.sending import agent_name, message_text, pick_session, send_one

if TYPE_CHECKING:
    from duragent.cli.repl import TerminalWorkspace
    from duragent.client.launcher import Connection
    from duragent.config import DuragentConfig

ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="URL of a running server (default: this workspace's, started if needed)."),
]
AgentOption = Annotated[
    str | None, typer.Option("--agent", "-a", help="Agent to talk to (optional when there is one).")
]
#: How a session may be named on the command line (like git's commits).
SESSION_NAMING = "its id, its name or a unique start of the id"
SessionOption = Annotated[
    str | None, typer.Option("--session", "-s", help=f"Session to continue: {SESSION_NAMING}.")
]


def register(app: typer.Typer) -> None:
    """Add `chat`, `attach` and `send`."""
    app.command("chat")(chat)
    app.command("attach")(attach)
    app.command("send")(send)


# --- chat ----------------------------------------------------------------------------------


def chat(
    ctx: typer.Context,
    agent: AgentOption = None,
    session: SessionOption = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new session instead of resuming.")] = False,
    server: ServerOption = None,
    local: Annotated[
        bool, typer.Option("--local", help="Run a server inside this process for this chat only (no detach).")
    ] = False,
) -> None:
    """Talk to an agent. Resumes this terminal's last session with it unless --new.

    Enter sends, Esc Enter (or Alt-Enter) adds a line, Ctrl-C cancels a turn, Ctrl-D detaches.
    Type /help for the commands.
    """
    refuse_together(("--session", session is not None), ("--new", new))
    state: CliState = ctx.obj
    config = state.config()
    if local and server:
        from duragent.errors import UsageError

        raise UsageError("--local runs its own server; leave out --server")

    async def run() -> None:
        from duragent.client.http import ApiClient, api_token

        async with (
            _server(config, server, local=local) as url,
            ApiClient(url, token=api_token(config)) as api,
        ):
            workspace = terminal_workspace(config)
            attachment = await open_chat(api, workspace, agent=agent, session=session, new=new)
            await talk(api, workspace, attachment, local=local)

    _run_interactive(run)


# --- attach --------------------------------------------------------------------------------


def attach(
    ctx: typer.Context,
    session_id: Annotated[str | None, typer.Argument(help=f"Session to attach to: {SESSION_NAMING}.")] = None,
    list_sessions: Annotated[
        bool, typer.Option("--list", "-l", help="List sessions you can attach to.")
    ] = False,
    last: Annotated[bool, typer.Option("--last", help="Attach to this terminal's last session.")] = False,
    server: ServerOption = None,
) -> None:
    """Reattach to a session: replay what this terminal missed, then go live."""
    refuse_together(("SESSION", session_id is not None), ("--last", last), ("--list", list_sessions))
    state: CliState = ctx.obj
    config = state.config()

    async def run() -> None:
        from duragent.client.http import ApiClient, api_token

        async with (
            _server(config, server, local=False) as url,
            ApiClient(url, token=api_token(config)) as api,
        ):
            workspace = terminal_workspace(config)
            attachment = await open_attach(
                api, workspace, session_id=session_id, list_sessions=list_sessions, last=last
            )
            if attachment is not None:
                await talk(api, workspace, attachment, local=False)

    _run_interactive(run)


def terminal_workspace(config: DuragentConfig) -> TerminalWorkspace:
    """The loaded configuration as a terminal session sees its workspace."""
    from duragent.cli.repl import TerminalWorkspace

    return TerminalWorkspace(config.data_path, lambda: config)


# --- send ----------------------------------------------------------------------------------


def send(
    ctx: typer.Context,
    message: Annotated[str, typer.Argument(help="The message; `-` reads it from stdin.")],
    agent: AgentOption = None,
    session: SessionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the outcome.")] = False,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print the reply when it is complete, not as it streams.")
    ] = False,
    new: Annotated[bool, typer.Option("--new", help="Use a new session.")] = False,
    server: ServerOption = None,
) -> None:
    """Send one message and print the reply (for scripts and cron).

    Exit status: 0 the turn finished, 1 it failed or was cancelled, 3 it waits for an approval.
    """
    refuse_together(("--session", session is not None), ("--new", new))
    state: CliState = ctx.obj
    config = state.config()
    if message == "-" and sys.stdin.isatty():
        # Otherwise the terminal would wait in silence, as if `send` had hung.
        print("Type the message, then Ctrl-D on a line of its own to send it.", file=sys.stderr)
    content = message_text(sys.stdin.buffer.read(), "on stdin") if message == "-" else message_text(message)
    if not content.strip():
        from duragent.errors import UsageError

        raise UsageError("the message is empty")

    async def run() -> int:
        from duragent.client.http import ApiClient, api_token
        from duragent.client.state import ClientState

        async with (
            _server(config, server, local=False, quiet=as_json) as url,
            ApiClient(url, token=api_token(config)) as api,
        ):
            client = ClientState.load(config.data_path)
            name = await agent_name(api, agent, session)
            info, _resumed = await pick_session(api, client, name, session, new)
            return await send_one(api, client, info, content, as_json=as_json, stream=not no_stream)

    from duragent.errors import DuragentError

    try:
        code = run_async(run())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # `send_one` said what became of the turn
    except DuragentError as exc:
        if as_json:
            from duragent.cli.sending import print_json_failure

            print_json_failure(exc)
        raise  # (said on stderr as every command's error)
    if code:
        raise typer.Exit(code)


# --- shared --------------------------------------------------------------------------------


def refuse_together(*options: tuple[str, bool]) -> None:
    """UsageError naming two given options that contradict each other (`--session` and `--new`,
    `SESSION` and `--last`): one of them would be silently ignored."""
    given = [name for name, present in options if present]
    if len(given) > 1:
        from duragent.errors import UsageError

        raise UsageError(f"{given[0]} and {given[1]} ask for different things: give only one of them")


@asynccontextmanager
async def _server(
    config: DuragentConfig, server: str | None, *, local: bool, quiet: bool = False
) -> AsyncIterator[str]:
    """The URL of the server to talk to, for as long as the command runs."""
    if local:
        async with _local_server(config) as url:
            yield url
        return
    from duragent.client.launcher import connect, workspace_of

    connection = connect(workspace_of(config), server_url=server)
    announce(connection, quiet=quiet)
    yield connection.url


def announce(connection: Connection, *, quiet: bool = False) -> None:
    """Tell the person (on stderr) that a server was started or restarted, or what to run."""
    for line in connection.notices(quiet=quiet):
        print(line, file=sys.stderr)


@asynccontextmanager
async def _local_server(config: DuragentConfig) -> AsyncIterator[str]:
    from duragent.client.runfile import read_run_info
    from duragent.errors import UsageError

    running = read_run_info(config.data_path)
    if running is not None:
        # (the data directory has one server at a time: say what to do, not whose lock it is)
        raise UsageError(
            f"the workspace's server is running (pid {running.pid}, {running.url}): --local needs "
            "the data directory to itself; leave out --local to talk through that server, or stop "
            "it first with `duragent serve stop`"
        )
    from aiohttp import web

    from duragent.server.app import create_app

    runner = web.AppRunner(create_app(config, host="127.0.0.1"), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _run_interactive(run: Any) -> None:
    """Run a terminal session; Ctrl-C outside a turn leaves quietly (the session is not touched)."""
    try:
        run_async(run())
    except KeyboardInterrupt:
        say_interrupted()
        raise typer.Exit(130) from None
