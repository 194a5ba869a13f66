"""A terminal attached to a session: which session, what to replay, the header, the loop, the goodbye.

Shared by the typer commands `chat` and `attach` (`duragent.cli.chat`) and by their fast path
(`duragent.cli.quick_chat`), which reaches a running server without importing typer, pydantic or
aiohttp. No typer here; the HTTP client is whatever `ApiClient` the caller passes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from duragent.cli.sending import agent_name, full_id, pick_session
from duragent.client.state import position_seq

if TYPE_CHECKING:
    from duragent.cli.render import Renderer
    from duragent.cli.repl import Session, TerminalWorkspace
    from duragent.client.http import ApiClient
    from duragent.client.state import ClientState

#: User messages a terminal that never saw a session is shown when it attaches.
RECENT_TURNS = 3
#: What Ctrl-C outside a turn says as the terminal leaves.
INTERRUPTED = "\n(interrupted; the session keeps going: `duragent attach --last` to come back)"


class Attachment(NamedTuple):
    """A session this terminal is about to show: the server's view of it and of its agent, and
    where to replay from."""

    client: ClientState
    info: dict[str, Any]
    agent_info: dict[str, Any]
    after: str
    resumed: bool


async def open_chat(
    api: ApiClient,
    workspace: TerminalWorkspace,
    *,
    agent: str | None,
    session: str | None,
    new: bool,
) -> Attachment:
    """`chat`'s session: --session, a new one, or this terminal's last one with the agent."""
    from duragent.client.state import ClientState

    client = ClientState.load(workspace.data_path)
    name = await agent_name(api, agent, session)
    # Both at once: each is a round trip to the server before the prompt can show.
    (info, resumed), agent_info = await asyncio.gather(
        pick_session(api, client, name, session, new), api.agent(name)
    )
    return Attachment(client, info, agent_info, await replay_from(api, client, info, resumed), resumed)


async def open_attach(
    api: ApiClient,
    workspace: TerminalWorkspace,
    *,
    session_id: str | None,
    list_sessions: bool,
    last: bool,
) -> Attachment | None:
    """`attach`'s session (None: the open sessions were listed instead)."""
    from duragent.client.state import ClientState

    client = ClientState.load(workspace.data_path)
    if list_sessions or (session_id is None and not last):
        await list_attachable(api, client, hint=not list_sessions)
        return None
    if session_id is None:
        target = await last_session(api, client)
    else:
        target = await full_id(api, session_id, "the SESSION argument")
    info = await api.session(target)
    if info.get("status") == "ended":
        from duragent.client.http import SessionGone

        raise SessionGone(409, f"session {target} has ended; `duragent attach --list` shows the open ones")
    after, agent_info = await asyncio.gather(
        replay_from(api, client, info, resumed=True), api.agent(str(info["agent"]))
    )
    return Attachment(client, info, agent_info, after, True)


async def list_attachable(api: ApiClient, client: ClientState, *, hint: bool) -> None:
    """The sessions still open, with what this terminal has not seen of each."""
    sessions = [s for s in await api.sessions() if s.get("status") != "ended"]
    if not sessions:
        print("No open sessions. Start one with: duragent chat")
        return
    from duragent.cli.context import FIRST_MESSAGE_SHOWN, print_table
    from duragent.terminal_text import shortened

    rows = [
        [
            str(s["session_id"]),
            str(s.get("agent", "")),
            str(s.get("status", "")),
            str(s.get("updated_at", ""))[:19].replace("T", " "),
            str(client.unseen(str(s["session_id"]), int(s.get("last_seq", 0)))),
            shortened(str(s.get("first_message") or "-"), FIRST_MESSAGE_SHOWN),
        ]
        for s in sessions
    ]
    print_table(["SESSION", "AGENT", "STATUS", "LAST ACTIVITY", "UNSEEN", "FIRST MESSAGE"], rows)
    if hint:
        print("\nAttach with: duragent attach <SESSION>  (or --last)")


async def last_session(api: ApiClient, client: ClientState) -> str:
    """This terminal's last session, else the most recently active open one."""
    if client.last_attached:
        return client.last_attached
    sessions = [s for s in await api.sessions(limit=50) if s.get("status") != "ended"]
    if not sessions:
        from duragent.errors import NotFound

        raise NotFound("no open session to attach to; start one with `duragent chat`")
    return str(sessions[0]["session_id"])


async def replay_from(api: ApiClient, client: ClientState, info: dict[str, Any], resumed: bool) -> str:
    """Where the stream starts: what this terminal saw last, or the last few turns when it saw nothing."""
    session_id = str(info["session_id"])
    if not resumed:
        return str(info.get("last_seq", 0))
    seen = client.seen.get(session_id)
    if seen is not None:
        # Left in the middle of a streamed reply (`"12.7"`): the reply is shown again whole,
        # not from the middle of a sentence without what it answers.
        return str(position_seq(seen)) if "." in seen else seen
    page = await api.messages(session_id, limit=1000)
    starts = [int(m["seq"]) for m in page.get("messages", []) if m.get("type") == "user_message"]
    if len(starts) < RECENT_TURNS:
        return "0"
    return str(starts[-RECENT_TURNS] - 1)


async def talk(api: ApiClient, workspace: TerminalWorkspace, attachment: Attachment, *, local: bool) -> None:
    """The header, then the interactive loop until the person leaves, then how to come back."""
    from duragent.cli.render import Renderer
    from duragent.cli.repl import Repl, Session

    renderer = Renderer()
    info = attachment.info
    session = Session(
        id=str(info["session_id"]), agent=str(info["agent"]), info=info, agent_info=attachment.agent_info
    )
    header(renderer, session, resumed=attachment.resumed)
    repl = Repl(api, session, attachment.client, workspace, renderer=renderer)
    outcome = await repl.run(attachment.after)
    if repl.server_gone and not local:
        server_gone_farewell(renderer, session, cut_off=repl.turn_cut_off)
        return
    farewell(
        renderer,
        session,
        outcome,
        workspace,
        local=local,
        running=repl.in_turn,
        others=repl.others_attached,
        undecided=repl.left_at_question,
    )


def header(renderer: Renderer, session: Session, *, resumed: bool) -> None:
    """Which agent, model and session this terminal shows, and the keys that matter."""
    model = session.agent_info.get("spec", {}).get("model", {})
    state = f"resumed ({session.info.get('status')})" if resumed else "new session"
    renderer.line(f"{session.agent} · {model.get('name', '?')} via {model.get('provider', '?')}", "bold")
    renderer.notice(f"session {session.id} · {state}")
    renderer.notice("/help for commands · Enter sends · Esc Enter new line · Ctrl-D detaches")


def farewell(
    renderer: Renderer,
    session: Session,
    outcome: str,
    workspace: TerminalWorkspace,
    *,
    local: bool,
    running: bool,
    others: int = 0,
    undecided: str | None = None,
) -> None:
    """What became of the session, and how to come back to it (`running`: a turn was going on
    when the terminal left, which on_disconnect lets go on or pauses once `others`, the clients
    still following it, have left too; `undecided`: the call whose approval question it left)."""
    if outcome == "ended":
        renderer.line(f"Session {session.id} has ended. Start another with: duragent chat --new")
        return
    if local:
        paused = " (its running turn paused)" if running else ""
        renderer.line(f"The local server stopped; session {session.id} is saved{paused}.")
    elif undecided is not None:
        from duragent.terminal_text import printable

        renderer.line(
            f"Detached. Session {session.id} waits for a decision on {printable(undecided)}: "
            "attaching asks it again (or POST .../approve decides it)."
        )
    elif not running:
        renderer.line(f"Detached. Session {session.id} has no turn running; it waits for your next message.")
    elif others:
        clients = "1 other client" if others == 1 else f"{others} other clients"
        renderer.line(f"Detached. Session {session.id} goes on: {clients} still attached.")
    elif workspace.on_disconnect(session) == "pause":
        renderer.line(f"Detached. Session {session.id} pauses at the next safe point (on_disconnect: pause).")
    else:
        renderer.line(
            f"Detached. Session {session.id} continues in the background (on_disconnect: continue)."
        )
    renderer.line(f"Come back with: duragent attach {session.id}")


def server_gone_farewell(renderer: Renderer, session: Session, *, cut_off: bool) -> None:
    """Leaving once the server stopped answering: nothing runs the session now (on_disconnect
    does not apply), it is saved, and a turn the server's end cut off goes on once it runs again."""
    saved = f"Detached. The server stopped answering; session {session.id} is saved"
    if cut_off:
        renderer.line(f"{saved}, and its unfinished turn goes on once the server runs again.")
    else:
        renderer.line(f"{saved}.")
    renderer.line(f"Come back with: duragent attach {session.id}")


def say_interrupted() -> None:
    """Ctrl-C outside a turn: the terminal leaves quietly, the session is not touched."""
    print(INTERRUPTED, file=sys.stderr)
