"""`duragent chat`, `attach` and `send`: talk to agents from a terminal, through the workspace's server.

These commands are clients of the HTTP API. They find the workspace's running server (or start
one in the background, so sessions outlive the terminal), then stream what the session does.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_table, run_async
from duragent.cli.sending import agent_name, full_id, pick_session, send_one

if TYPE_CHECKING:
    from duragent.cli.render import Renderer
    from duragent.cli.repl import Session
    from duragent.client.http import ApiClient
    from duragent.client.launcher import Connection
    from duragent.client.state import ClientState
    from duragent.config import DuragentConfig

#: Exit code of `send` when the turn stopped to wait for an approval.
#: User messages a terminal that never saw a session is shown when it attaches.
RECENT_TURNS = 3

ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="URL of a running server (default: this workspace's, started if needed)."),
]
AgentOption = Annotated[
    str | None, typer.Option("--agent", "-a", help="Agent to talk to (optional when there is one).")
]
SessionOption = Annotated[str | None, typer.Option("--session", "-s", help="Session id to continue.")]


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
    state: CliState = ctx.obj
    config = state.config()
    if local and server:
        from duragent.errors import UsageError

        raise UsageError("--local runs its own server; leave out --server")

    async def run() -> None:
        from duragent.client.http import ApiClient, api_token
        from duragent.client.state import ClientState

        async with (
            _server(config, server, local=local) as url,
            ApiClient(url, token=api_token(config)) as api,
        ):
            client = ClientState.load(config.data_path)
            name = await agent_name(api, agent, session)
            info, resumed = await pick_session(api, client, name, session, new)
            after = await _replay_from(api, client, info, resumed)
            await _talk(api, config, client, info, after, resumed=resumed, local=local)

    _run_interactive(run)


# --- attach --------------------------------------------------------------------------------


def attach(
    ctx: typer.Context,
    session_id: Annotated[str | None, typer.Argument(help="Session to attach to.")] = None,
    list_sessions: Annotated[
        bool, typer.Option("--list", "-l", help="List sessions you can attach to.")
    ] = False,
    last: Annotated[bool, typer.Option("--last", help="Attach to this terminal's last session.")] = False,
    server: ServerOption = None,
) -> None:
    """Reattach to a session: replay what this terminal missed, then go live."""
    state: CliState = ctx.obj
    config = state.config()

    async def run() -> None:
        from duragent.client.http import ApiClient, api_token
        from duragent.client.state import ClientState

        async with (
            _server(config, server, local=False) as url,
            ApiClient(url, token=api_token(config)) as api,
        ):
            client = ClientState.load(config.data_path)
            if list_sessions or (session_id is None and not last):
                await _list_attachable(api, client, hint=not list_sessions)
                return
            target = await full_id(api, session_id) if session_id else await _last_session(api, client)
            info = await api.session(target)
            if info.get("status") == "ended":
                from duragent.client.http import SessionGone

                raise SessionGone(
                    409, f"session {target} has ended; `duragent attach --list` shows the open ones"
                )
            after = await _replay_from(api, client, info, resumed=True)
            await _talk(api, config, client, info, after, resumed=True, local=False)

    _run_interactive(run)


async def _list_attachable(api: ApiClient, client: ClientState, *, hint: bool) -> None:
    sessions = [s for s in await api.sessions() if s.get("status") != "ended"]
    if not sessions:
        print("No open sessions. Start one with: duragent chat")
        return
    rows = [
        [
            str(s["session_id"]),
            str(s.get("agent", "")),
            str(s.get("status", "")),
            str(s.get("updated_at", ""))[:19].replace("T", " "),
            str(client.unseen(str(s["session_id"]), int(s.get("last_seq", 0)))),
        ]
        for s in sessions
    ]
    print_table(["SESSION", "AGENT", "STATE", "LAST ACTIVITY", "UNSEEN"], rows)
    if hint:
        print("\nAttach with: duragent attach <SESSION>  (or --last)")


async def _last_session(api: ApiClient, client: ClientState) -> str:
    if client.last_attached:
        return client.last_attached
    sessions = [s for s in await api.sessions(limit=50) if s.get("status") != "ended"]
    if not sessions:
        from duragent.errors import NotFound

        raise NotFound("no open session to attach to; start one with `duragent chat`")
    return str(sessions[0]["session_id"])


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
    state: CliState = ctx.obj
    config = state.config()
    content = sys.stdin.read() if message == "-" else message
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

    try:
        code = run_async(run())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # `send_one` said what became of the turn
    if code:
        raise typer.Exit(code)


# --- shared --------------------------------------------------------------------------------


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
    if connection.restarted_because and not quiet:
        print(
            f"restarted the workspace's server: {connection.restarted_because} "
            f"(pid {connection.pid}, {connection.url})",
            file=sys.stderr,
        )
    elif connection.started and not quiet:
        print(
            f"started the workspace's server (pid {connection.pid}, {connection.url}; "
            f"log: {connection.log_path})",
            file=sys.stderr,
        )
    if connection.advice:
        print(f"warning: {connection.advice}", file=sys.stderr)
    for problem in connection.problems:
        print(f"warning: server not ready: {problem}", file=sys.stderr)


@asynccontextmanager
async def _local_server(config: DuragentConfig) -> AsyncIterator[str]:
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


async def _replay_from(api: ApiClient, client: ClientState, info: dict[str, Any], resumed: bool) -> str:
    """Where the stream starts: what this terminal saw last, or the last few turns when it saw nothing."""
    session_id = str(info["session_id"])
    if not resumed:
        return str(info.get("last_seq", 0))
    seen = client.seen.get(session_id)
    if seen is not None:
        return seen
    page = await api.messages(session_id, limit=1000)
    starts = [int(m["seq"]) for m in page.get("messages", []) if m.get("type") == "user_message"]
    if len(starts) < RECENT_TURNS:
        return "0"
    return str(starts[-RECENT_TURNS] - 1)


async def _talk(
    api: ApiClient,
    config: DuragentConfig,
    client: ClientState,
    info: dict[str, Any],
    after: str,
    *,
    resumed: bool,
    local: bool,
) -> None:
    from duragent.cli.render import Renderer
    from duragent.cli.repl import Repl, Session

    renderer = Renderer()
    agent_info = await api.agent(str(info["agent"]))
    session = Session(
        id=str(info["session_id"]),
        agent=str(info["agent"]),
        on_disconnect=str(info.get("on_disconnect") or config.session.on_disconnect),
        info=info,
        agent_info=agent_info,
    )
    _header(renderer, session, resumed=resumed)
    outcome = await Repl(api, session, client, config, renderer=renderer).run(after)
    _farewell(renderer, session, outcome, local=local)


def _header(renderer: Renderer, session: Session, *, resumed: bool) -> None:
    model = session.agent_info.get("spec", {}).get("model", {})
    state = f"resumed ({session.info.get('status')})" if resumed else "new session"
    renderer.line(f"{session.agent} · {model.get('name', '?')} via {model.get('provider', '?')}", "bold")
    renderer.notice(f"session {session.id} · {state}")
    renderer.notice("/help for commands · Enter sends · Esc Enter new line · Ctrl-D detaches")


def _farewell(renderer: Renderer, session: Session, outcome: str, *, local: bool) -> None:
    if outcome == "ended":
        renderer.line(f"Session {session.id} has ended. Start another with: duragent chat --new")
        return
    if local:
        renderer.line(f"The local server stopped; session {session.id} is saved (a running turn paused).")
    elif session.on_disconnect == "pause":
        renderer.line(f"Detached. Session {session.id} pauses at the next safe point (on_disconnect: pause).")
    else:
        renderer.line(
            f"Detached. Session {session.id} continues in the background (on_disconnect: continue)."
        )
    renderer.line(f"Come back with: duragent attach {session.id}")


def _run_interactive(run: Any) -> None:
    """Run a terminal session; Ctrl-C outside a turn leaves quietly (the session is not touched)."""
    try:
        run_async(run())
    except KeyboardInterrupt:
        print(
            "\n(interrupted; the session keeps going: `duragent attach --last` to come back)", file=sys.stderr
        )
        raise typer.Exit(130) from None
