"""The interactive loop behind `duragent chat` and `duragent attach`.

One `GET /events` stays open while the terminal is attached: it replays what this terminal
missed, then everything live, whoever caused it. Typed messages go to `POST /messages` in the
background; what they cause is drawn from the event stream. Leaving (Ctrl-D, /detach, a second
Ctrl-C) closes the stream, which detaches: the session continues or pauses per on_disconnect.

Heavy modules are imported when first needed: prompt_toolkit for the first prompt, the
configuration loader (pydantic) and the memory store only for `/memory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duragent.cli.render import TRUNCATED, Renderer
from duragent.client.follow import SERVER_BACK, SERVER_GONE
from duragent.errors import DuragentError
from duragent.terminal_text import printable

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application import Application

    from duragent.cli.typeahead import HeldKeys
    from duragent.client.follow import EventFollower
    from duragent.client.http import ApiClient, ServerEvent
    from duragent.client.state import ClientState
    from duragent.config import DuragentConfig

#: Events that change nothing on screen while the person is typing.
QUIET_EVENTS = frozenset({"status", "approval_decision", "session_start"})
#: Events only a running turn sends.
TURN_EVENTS = frozenset(
    {
        "token",
        "message",
        "tool_call",
        "tool_result",
        "attempt_restarted",
        "approval_required",
        "retrying",
        "turn_retried",
    }
)


def retrying_text(data: dict[str, Any]) -> str:
    """The line a `retrying` event becomes: why the model is asked again, when, which attempt."""
    reason = str(data.get("reason") or "the model call failed")
    wait = float(data.get("in_seconds") or 0)
    return (
        f"↻ {reason}; trying again in {wait:.3g} s (attempt {data.get('attempt', '?')} of "
        f"{data.get('attempts', '?')})"
    )


#: Marker events the loop puts into its own queue (never sent by a server).
SIGINT_MARK, SENT_MARK, EOF_MARK, NO_TURN_MARK = "_sigint", "_sent", "_eof", "_no_turn"
#: Why the server pauses a `pause` session whose last client left (attaching resumes it).
DISCONNECT_PAUSE_REASON = "client disconnected (on_disconnect: pause)"
#: Why the server pauses a turn when it stops (attaching once it runs again takes the turn up),
#: and why a `pause` session such a stop cut off waits after the restart (attaching takes it up).
SHUTDOWN_PAUSE_REASON = "server shutting down"
RESTART_PAUSE_REASON = "server restarted"
#: What `read_decision` returns when an event came before the answer.
INTERRUPTED = "_interrupted"
#: What the approval question answers for Ctrl-D: leave, as Ctrl-D does anywhere (the call waits).
DETACH = "_detach"
#: Seconds to wait for the stream to show a reply the server already returned.
REPLY_GRACE = 3.0
#: Longest a terminal leaving a running turn waits to learn who else follows the session.
LEAVING_QUESTION_SECONDS = 2.0
DECISIONS = {"y": "allow_once", "a": "allow_always", "n": "deny"}
#: Slash commands that need no server.
_LOCAL_COMMANDS = frozenset({"help", "detach", "quit", "exit"})
#: What `a` at the approval question asks before it writes an allow rule into the policy.
ALWAYS_CHECK = (
    "allow always: add an allow rule to the agent's policy? Enter confirms, any other key goes back "
)
HELP = """\
Commands:
  /help             this list
  /detach           leave; the session keeps going (or pauses) without you   (also Ctrl-D)
  /end              end the session for good (its files stay)
  /status           state, agent, model, tokens used, on_disconnect
  /cancel           stop the running turn                                     (also Ctrl-C)
  /resume           continue a paused session's stopped turn
  /retry            run the last turn again when it failed or was cancelled
  /history [N]      the last N messages (default 10)
  /memory           what the agent remembers (read-only)
  /approve [always] allow the tool call waiting for approval (once, or always)
  /deny             refuse it
  /sessions         this agent's sessions
Keys: Enter sends · Esc Enter (or Alt-Enter) adds a new line · pasting is safe ·
      Ctrl-C during a turn cancels it, a second Ctrl-C detaches · Ctrl-D detaches"""


class Session:
    """The session this terminal is attached to, as the server last described it.

    (A plain class, not a dataclass: this module is imported on the way to `chat`'s prompt, where
    building a dataclass costs ~3M instructions, ~1 ms.)
    """

    def __init__(self, id: str, agent: str, info: dict[str, Any], agent_info: dict[str, Any] | None = None):
        self.id = id
        self.agent = agent
        self.info = info
        self.agent_info: dict[str, Any] = {} if agent_info is None else agent_info

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, agent={self.agent!r})"


class TerminalWorkspace:
    """What a terminal needs of its workspace: the data directory at once, the configuration
    (a pydantic model, slow to load) only when a command asks for it."""

    def __init__(self, data_path: Path, load_config: Callable[[], DuragentConfig]):
        self.data_path = data_path
        self._load_config = load_config
        self._config: DuragentConfig | None = None

    def config(self) -> DuragentConfig:
        """duragent.yaml, loaded on first use."""
        if self._config is None:
            self._config = self._load_config()
        return self._config

    def on_disconnect(self, session: Session) -> str:
        """What the session does when no client is attached: its own setting, else the workspace's."""
        return str(session.info.get("on_disconnect") or self.config().session.on_disconnect)


class Repl:
    """Read, send, show; until the person detaches or the session ends."""

    def __init__(
        self,
        api: ApiClient,
        session: Session,
        client: ClientState,
        workspace: TerminalWorkspace,
        *,
        renderer: Renderer | None = None,
        interactive: bool | None = None,
    ):
        self.api = api
        self.session = session
        self.client = client
        self.workspace = workspace
        self.renderer = renderer or Renderer()
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.follower: EventFollower | None = None
        self.shown: str | None = None
        self.in_turn = bool(session.info.get("busy"))
        self.pending: dict[str, dict[str, Any]] = {}
        self.asked: set[str] = set()
        #: Calls the session said were waiting when this terminal attached, not drawn yet: the
        #: replay may show them in their place; those it does not are drawn just before asking.
        self.unannounced: set[str] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.draft = ""
        self.cancel_pressed = False
        self.cancelled_last_turn = False
        self.held: ServerEvent | None = None
        #: Other clients following the session as this terminal left a running turn (on_disconnect
        #: acts only when the last one leaves).
        self.others_attached = 0
        #: The server stopped answering (and has not answered since): no server runs the session.
        self.server_gone = False
        #: A turn was going on when the server stopped answering: the server takes it up once it
        #: runs again (a `pause` session once a client attaches).
        self.turn_cut_off = False
        self._prompt: PromptSession[str] | None = None
        self._keys: HeldKeys | None = None
        #: The call whose approval question the person left with Ctrl-D ("bash ls -la"), if so.
        self.left_at_question: str | None = None

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, after: str | None) -> str:
        """Replay from `after`, then read and send until the person leaves; returns why it stopped."""
        from duragent.client.follow import EventFollower

        self.shown = after
        self.follower = EventFollower(self.api, self.session.id, after=after, relocate=self._relocate())
        self.follower.start()
        self.remember()  # a terminal closed without a goodbye still knows its session next time
        # A call already waiting for a person may have been announced before where this replay
        # starts (`send` saw it and said "decide with: duragent attach"): it is asked once the
        # replay is shown (and drawn then, when the replay did not show it in its place).
        for approval in self.session.info.get("pending_approvals") or []:
            call_id = str(approval.get("call_id", ""))
            self.pending[call_id] = dict(approval)
            self.unannounced.add(call_id)
        try:
            outcome = await self.follow(target_seq=int(self.session.info.get("last_seq", 0)))
            if outcome == "idle" and self.session.info.get("status") == "paused":
                await self._say_if_still_paused()
            while outcome == "idle":
                text = await self.read_input()
                if text is None:
                    outcome = "detach"
                elif text == "":
                    outcome = await self.follow(target_seq=0)
                else:
                    outcome = await self.handle(text)
            return outcome
        finally:
            await self.leave()

    async def _say_if_still_paused(self) -> None:
        """Attaching resumes a session paused because its clients left or a server stop cut its
        turn off; one paused otherwise (max_background_runtime) waits for /resume: say so, the
        replay may not."""
        info = await self.api.session(self.session.id)
        if info.get("status") == "paused" and not info.get("busy") and not info.get("pending_approvals"):
            self.renderer.notice("⏸ the session is paused: /resume continues it")

    def _relocate(self) -> Callable[[], str | None] | None:
        """Where the workspace's server is now, when this terminal talks to it (not to a --server
        elsewhere): it may stop and start again on another port while the terminal waits."""
        from duragent.client.runfile import read_run_info

        running = read_run_info(self.workspace.data_path)
        if running is None or running.url.rstrip("/") != self.api.base_url:
            return None

        def current() -> str | None:
            info = read_run_info(self.workspace.data_path)
            return info.url if info is not None else None

        return current

    async def leave(self) -> None:
        """Close the stream and any request in flight (both detach), remember what was seen."""
        if self.in_turn:
            self.others_attached = await self._others_attached()
        for task in list(self.background):
            task.cancel()
        if self.follower is not None:
            await self.follower.close()
        self.renderer.close()
        self.remember()

    async def _others_attached(self) -> int:
        """Clients but this one following the session, asked while this one still does (the
        server counts a client's event stream and its requests waiting for the turn as one, by
        `CLIENT_HEADER`); 0 when the server cannot tell in a moment: leaving does not wait for it."""
        from duragent.client.http import ServerUnreachable

        ours = 1
        try:
            info = await asyncio.wait_for(self.api.session(self.session.id), LEAVING_QUESTION_SECONDS)
        except ServerUnreachable:
            # Gone before this terminal was told (it is told after `GONE_AFTER`): the turn stopped.
            self.server_gone = self.turn_cut_off = True
            return 0
        except (TimeoutError, DuragentError):
            return 0
        return max(int(info.get("attached") or 0) - ours, 0)

    def remember(self) -> None:
        """Save this terminal's last session and last seen position."""
        self.client.attached(self.session.agent, self.session.id)
        self.client.saw(self.session.id, self.shown)
        self.client.save()

    async def handle(self, text: str) -> str:
        """Run one line the person entered: a slash command or a message."""
        self.cancelled_last_turn = False
        stripped = text.strip()
        if stripped.startswith("/") and not stripped.startswith("//"):
            return await self.command(stripped)
        if stripped.startswith("//"):
            text = text.replace("//", "/", 1)
        return await self.send(text)

    async def send(self, text: str) -> str:
        """Send a message and show its turn as it happens."""
        # A message waits behind a call left waiting (Ctrl-C at its question): it is asked again,
        # with what it is, or this terminal would wait in silence for the decision.
        for call_id in self.asked & set(self.pending):
            self.asked.discard(call_id)
            self.unannounced.add(call_id)
        try:
            await self._start_the_server_if_gone()
        except DuragentError as exc:  # it cannot start (a broken duragent.yaml): say why, stay
            self.renderer.error(f"✗ {exc}")
            return "idle"
        task = asyncio.get_running_loop().create_task(self.api.send(self.session.id, text))
        self._track(task, mark=True)
        self.renderer.start_spinner()
        return await self.follow(target_seq=0, own=text, send_task=task)

    async def _start_the_server_if_gone(self) -> None:
        """The workspace's server stopped while this terminal stayed: a message starts it again,
        as `chat` starts one when none runs, instead of failing (the stream then follows it)."""
        if self.follower is None or self.follower.relocate is None or self.follower.relocate() is not None:
            return
        from duragent.client.launcher import connect, workspace_of

        connection = await asyncio.to_thread(connect, workspace_of(self.workspace.config()))
        for line in connection.notices():
            self.renderer.notice(line)
        self.api.move_to(connection.url)

    # --- following the stream ----------------------------------------------------------------

    async def follow(
        self,
        *,
        target_seq: int,
        own: str | None = None,
        send_task: asyncio.Task[tuple[int, dict[str, Any]]] | None = None,
    ) -> str:
        """Show events until caught up with `target_seq`, the running turn (or `own` turn) is over."""
        loop = asyncio.get_running_loop()
        self.cancel_pressed = False
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        try:
            with self._keyboard_held():
                return await self._follow(target_seq, own, send_task)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            self.renderer.stop_spinner()

    async def _follow(
        self,
        target_seq: int,
        own: str | None,
        send_task: asyncio.Task[tuple[int, dict[str, Any]]] | None,
    ) -> str:
        from duragent.client.state import position_seq

        assert self.follower is not None
        loop = asyncio.get_running_loop()
        own_started = own is None
        own_done = False
        replied_at: float | None = None
        #: Said once the reply streaming now is over, not in the middle of it.
        queued_note: str | None = None
        while True:
            caught_up = position_seq(self.shown) >= target_seq
            # An event that arrived while the person was typing (another client's turn) is
            # shown before anything else: the loop is not idle while one is held.
            if caught_up and self.held is None:
                waiting = [c for c in self.pending if c not in self.asked]
                if waiting:
                    answered = await self.ask(waiting[0])
                    if answered is None:
                        return "detach"
                    if not answered:
                        return "idle"
                    continue
                if own is None and not self.in_turn:
                    return "idle"
                if own is not None and own_done:
                    return "idle"
            if send_task is not None and send_task.done() and not own_started:
                problem = _failure(send_task)
                if problem is not None:
                    self.renderer.error(f"✗ {problem}")
                    return "idle"
                status, body = send_task.result()
                if status == 202 and body.get("status") == "queued":
                    queued_note = f"your message is queued behind {body.get('position', 1)} turn(s)"
                    if not self.renderer.streaming():
                        self.renderer.notice(queued_note)
                        queued_note = None
                    send_task = None
                elif replied_at is None:
                    replied_at = loop.time()
                elif loop.time() - replied_at > REPLY_GRACE:
                    # The stream missed it (it reconnected too late): show the server's answer.
                    self.renderer.reply(str(body.get("content", "")))
                    return "idle"
            event = self.held or await self.follower.next(within=0.5 if replied_at else None)
            self.held = None
            if event is None:
                continue
            if event.event == SIGINT_MARK:
                if self.cancel_pressed or not self.in_turn:
                    self.renderer.notice("(detaching)")
                    return "detach"
                self.cancel_pressed = True
                self.renderer.notice("cancelling… (Ctrl-C again to detach)")
                self._track(loop.create_task(self._cancel_turn()))
                continue
            if event.event == NO_TURN_MARK:
                # (Waiting for a turn the server does not run: the prompt comes back.)
                self.renderer.notice("no turn is running")
                self.in_turn = False
                return "idle"
            if event.event == SENT_MARK:
                continue
            if event.event == EOF_MARK:
                self.renderer.notice("(detaching)")
                return "detach"
            is_own_start = (
                own is not None
                and not own_started
                and event.event == "start"
                and event.data.get("content") == own
            )
            # (Typed on the prompt line; shown again when other turns came in between.)
            queued = send_task is None and own is not None
            ended = self.show(event, echo=not is_own_start or queued)
            if queued_note is not None and not self.renderer.streaming():
                self.renderer.notice(queued_note)
                queued_note = None
            if is_own_start:
                own_started = True
            if event.event == "session_end":
                return "ended"
            if ended:
                self.remember()
                if self.cancel_pressed:
                    self.cancelled_last_turn = True
                if own is not None and own_started:
                    own_done = True

    @contextlib.contextmanager
    def _keyboard_held(self) -> Iterator[None]:
        """While events are drawn, keys typed are not echoed into them: they start the next
        prompt's line (type-ahead, as in a shell); Ctrl-D on an empty line detaches at once."""
        if not self.interactive or not sys.stdin.isatty():
            yield
            return
        if self._keys is None:
            from duragent.cli.typeahead import HeldKeys

            self._keys = HeldKeys(self.prompt_session().input, self._on_eof)
        with self._keys.held(typed=bool(self.draft)):
            yield

    def _keyboard_released(self) -> contextlib.AbstractContextManager[None]:
        """The keyboard for a question asked while events are followed."""
        return self._keys.released() if self._keys is not None else contextlib.nullcontext()

    def _on_eof(self) -> None:
        from duragent.client.http import ServerEvent

        assert self.follower is not None
        self.follower.mark(ServerEvent(None, EOF_MARK, {}))

    async def _cancel_turn(self) -> None:
        from duragent.client.http import ServerEvent

        answer = await self.api.cancel(self.session.id)
        if answer.get("status") != "cancelled" and self.follower is not None:
            self.follower.mark(ServerEvent(None, NO_TURN_MARK, {}))

    def _on_sigint(self) -> None:
        from duragent.client.http import ServerEvent

        assert self.follower is not None
        self.follower.mark(ServerEvent(None, SIGINT_MARK, {}))

    def show(self, event: ServerEvent, *, echo: bool = True) -> bool:
        """Draw one event; True when it ends a turn."""
        r, data = self.renderer, event.data
        if event.id is not None:
            self.shown = event.id
        name = event.event
        live = self._live(event)
        if name in TURN_EVENTS:
            # Only a running turn makes these: one this terminal saw no `start` of (a paused turn
            # that attaching, or an answered approval, took up again) is followed to its end too.
            self.in_turn = True
        if name == "start":
            self.in_turn = True
            if echo:
                r.user(str(data.get("content", "")))
            if live:
                r.start_spinner()
        elif name == "token":
            r.token(str(data.get("content", "")))
        elif name == "message":
            r.reply(str(data.get("content", "")), final=False)
        elif name == "attempt_restarted":
            r.discard_streamed()
            if live and self.in_turn:
                r.start_spinner()
        elif name == "turn_retried":
            r.line("↻ the turn runs again", "dim")
            if live:
                r.start_spinner()
        elif name == "retrying":
            # (live only: not stored, so a replay never shows it) why the reply is late
            r.line(retrying_text(data), "dim")
            if self.in_turn:
                r.start_spinner()
        elif name == "done":
            r.reply(str(data.get("content", "")))
            if data.get("truncated"):
                r.error(f"✂ {TRUNCATED}")
            return self._turn_over()
        elif name == "tool_call":
            r.tool_call(
                str(data.get("call_id", "")), str(data.get("tool", "")), dict(data.get("arguments") or {})
            )
        elif name == "tool_result":
            r.tool_result(
                str(data.get("call_id", "")),
                str(data.get("tool", "")),
                bool(data.get("ok")),
                None if data.get("duration_ms") is None else int(data["duration_ms"]),
                str(data.get("content", "")),
            )
            if live and self.in_turn:
                r.start_spinner()
        elif name == "approval_required":
            self._on_approval_required(dict(data))
        elif name == "approval_decision":
            call_id = str(data.get("call_id", ""))
            self.pending.pop(call_id, None)
            if call_id not in self.asked:
                r.notice(f"approval decided: {data.get('decision')}")
        elif name == "status":
            if data.get("to") == "paused" and data.get("reason") != "awaiting approval":
                reason = str(data.get("reason", ""))
                # (Attaching takes up a turn paused because its clients left, or by a server stop
                # once the server runs again; any other, /resume.)
                hint = {
                    DISCONNECT_PAUSE_REASON: "",
                    RESTART_PAUSE_REASON: "",
                    SHUTDOWN_PAUSE_REASON: " (attaching once the server runs again continues it)",
                }.get(reason, " (/resume continues it)")
                r.notice(f"⏸ session paused: {reason}{hint}")
                return self._turn_over()
        elif name == "error":
            message, code = data.get("message", "the turn failed"), data.get("code", "error")
            # (the agent's files do not load: the message lists their problems, as `send` shows them)
            r.error(f"✗ {message}" if code == "agent_invalid" else f"✗ {message} ({code})")
            # (a server from before `retryable` refused a turn that kept a partial reply, and said so)
            if live and data.get("retryable", "marked partial" not in message):
                r.line("/retry runs it again (once the cause is fixed)", "dim")
            return self._turn_over()
        elif name == "cancelled":
            r.notice("[cancelled]")
            return self._turn_over()
        elif name == "notification":
            r.line(f"🔔 {data.get('message', '')}", "yellow")
        elif name == "session_end":
            r.notice(f"session ended ({data.get('reason', 'ended')})")
        elif name == SERVER_GONE:
            r.notice(
                f"the server at {data.get('url')} stopped answering; this terminal reconnects when "
                "the workspace's server runs again (a message sent here starts it, as do "
                "`duragent serve` and a `send` in another shell)"
            )
            self.server_gone = True
            if self.in_turn:
                # No server runs the turn now: waiting for its end would hold the prompt back for
                # good. It is shown again if the restarted server takes it up.
                self.turn_cut_off = True
                return self._turn_over()
        elif name == SERVER_BACK:
            self.server_gone = self.turn_cut_off = False
            r.notice(f"reconnected to the server at {data.get('url')}")
        return False

    def _turn_over(self) -> bool:
        self.in_turn = False
        return True

    def _live(self, event: ServerEvent) -> bool:
        assert self.follower is not None
        return not self.follower.pending()

    # --- approvals ---------------------------------------------------------------------------

    def _on_approval_required(self, approval: dict[str, Any]) -> None:
        """A call waits for a person: shown once (the replay may announce it again), asked when idle."""
        call_id = str(approval.get("call_id", ""))
        if call_id not in self.pending:
            # Asked for again after this terminal's answer (which a stopped server never got):
            # it is asked again too, or the turn would wait for an answer nobody is asked for.
            self.asked.discard(call_id)
        if call_id not in self.pending or call_id in self.unannounced:
            self._announce(approval)
        self.pending[call_id] = approval

    def _announce(self, approval: dict[str, Any]) -> None:
        call_id, tool = str(approval.get("call_id", "")), str(approval.get("tool", ""))
        self.unannounced.discard(call_id)
        self.renderer.known_call(call_id, tool, dict(approval.get("arguments") or {}))
        self.renderer.approval(tool, str(approval.get("command", "")))

    async def ask(self, call_id: str) -> bool | None:
        """Ask allow once / always / deny for a pending call and post the answer; False if skipped,
        None to leave (Ctrl-D: the call waits for whoever decides it)."""
        self.asked.add(call_id)
        self.renderer.stop_spinner()
        if call_id in self.unannounced:
            self._announce(self.pending[call_id])
        try:
            with self._keyboard_released():
                decision = await self.read_decision(call_id)
        finally:
            # prompt_toolkit removes the loop's SIGINT handler when its prompt ends: put ours back,
            # so Ctrl-C after the answer cancels the turn (and the tool's processes) as it should.
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
        if decision == INTERRUPTED:
            # Something happened meanwhile (another terminal decided, say): it is shown next, and
            # the call is asked again if it still waits.
            self.asked.discard(call_id)
            return True
        if decision == DETACH:
            approval = self.pending.get(call_id, {})
            self.left_at_question = " ".join(
                part for part in (str(approval.get("tool", "")), str(approval.get("command", ""))) if part
            )
            return None
        if decision is None:
            self.renderer.notice("left waiting: /approve, /approve always or /deny decides it")
            return False
        await self.decide(call_id, decision)
        return True

    async def decide(self, call_id: str, decision: str) -> None:
        """Post a decision (the request waits for the turn, so it runs in the background)."""
        self.pending.pop(call_id, None)
        self.unannounced.discard(call_id)
        self.asked.add(call_id)
        self.in_turn = True  # the decision takes the turn up again (also one a pause stopped)
        self.renderer.notice(f"→ {decision.replace('_', ' ')}")
        self._track(
            asyncio.get_running_loop().create_task(self.api.approve(self.session.id, call_id, decision))
        )
        self.renderer.start_spinner()

    async def read_decision(self, call_id: str = "") -> str | None:
        """y / a / n from the keyboard (one key, no Enter needed); None on Ctrl-C, DETACH on
        Ctrl-D (the end of the input); INTERRUPTED when an event worth showing came first
        (`call_id` decided elsewhere, say)."""
        question = "allow once / always / deny (y/a/n)? "
        if not self.interactive:
            self.renderer.write(question)
            line = await asyncio.to_thread(sys.stdin.readline)
            return DETACH if line == "" else DECISIONS.get(line.strip().lower()[:1])
        from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead

        asker = _decision_asker(question)
        # Keys typed while the turn ran are the person's next message, not an answer (the first
        # "a" in "and then" would allow the call always): they wait for the prompt after it.
        ahead = get_typeahead(asker.input)
        try:
            return await self._answer_or_news(asker, call_id)
        finally:
            store_typeahead(asker.input, ahead + get_typeahead(asker.input))

    async def _answer_or_news(self, asker: Application[str | None], call_id: str) -> str | None:
        """The key that answered, None for Ctrl-C, DETACH for Ctrl-D, or INTERRUPTED by an event
        worth showing."""
        loop = asyncio.get_running_loop()
        answering = loop.create_task(asker.run_async())
        watching = loop.create_task(self._wait_for_news(decided=call_id))
        done, _ = await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
        if answering not in done:
            asker.erase_when_done = True  # asked again, once, after what came is shown
            asker.exit(result=None)
            await answering
            _raise_from(watching)
            return INTERRUPTED
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        return answering.result()

    # --- input -------------------------------------------------------------------------------

    async def read_input(self) -> str | None:
        """The next line (None: leave; "": events arrived while typing, show them first)."""
        self.renderer.stop_spinner()
        if not self.interactive:
            line = await asyncio.to_thread(sys.stdin.readline)
            return None if line == "" else (line.rstrip("\n") or "")
        prompt = self.prompt_session()
        loop = asyncio.get_running_loop()
        typing = loop.create_task(_keys(prompt, self.draft))
        watching = loop.create_task(self._wait_for_news())
        self.draft = ""
        done, _ = await asyncio.wait({typing, watching}, return_when=asyncio.FIRST_COMPLETED)
        if typing not in done:
            self.draft = prompt.default_buffer.text
            # The events are drawn where the prompt was; it comes back under them with the draft.
            prompt.app.erase_when_done = True
            prompt.app.exit(result="")
            try:
                await typing
            finally:
                prompt.app.erase_when_done = False
            _raise_from(watching)  # (a lost stream must not leave the loop waiting on it)
            return ""
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        key, text = typing.result()
        if key == "eof":
            return None
        if key == "interrupt":
            if self.cancelled_last_turn:
                return None
            self.renderer.notice("(Ctrl-D or /detach leaves; the session stays)")
            return await self.read_input()
        return text if text.strip() else await self.read_input()

    async def _wait_for_news(self, decided: str = "") -> None:
        """Return when an event worth showing arrives (quiet ones are taken and recorded), or the
        decision on call `decided` (held, to be shown)."""
        assert self.follower is not None
        while True:
            event = await self.follower.next()
            if event is None or event.event in (SIGINT_MARK, SENT_MARK, EOF_MARK, NO_TURN_MARK):
                continue
            if decided and event.event == "approval_decision" and event.data.get("call_id") == decided:
                self.held = event
                return
            if event.event in QUIET_EVENTS:
                self.show(event)
                continue
            if self._draws_nothing(event):
                # (An attempt restarting before anything was streamed, the approval being asked
                # again after a pause: redrawing the prompt or the question for them is noise.)
                self.in_turn = True
                self.shown = event.id or self.shown
                continue
            self.held = event
            return

    def _draws_nothing(self, event: ServerEvent) -> bool:
        """Whether showing `event` would change nothing on screen."""
        if event.event == "approval_required":
            call_id = str(event.data.get("call_id", ""))
            return call_id in self.pending and call_id not in self.unannounced
        return event.event == "attempt_restarted" and not self.renderer.streaming()

    def prompt_session(self) -> PromptSession[str]:
        """The input line: history per workspace, Enter sends, Esc/Alt-Enter adds a line."""
        if self._prompt is None:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.history import FileHistory
            from prompt_toolkit.key_binding import KeyBindings

            bindings = KeyBindings()

            @bindings.add("escape", "enter")
            def _newline(event: Any) -> None:
                event.current_buffer.insert_text("\n")

            history = history_file(self.workspace.data_path)
            history.parent.mkdir(parents=True, exist_ok=True)
            self._prompt = PromptSession(
                history=FileHistory(str(history)),
                key_bindings=bindings,
                multiline=False,
                enable_open_in_editor=False,
            )
        return self._prompt

    def _track(self, task: asyncio.Task[Any], *, mark: bool = False) -> None:
        """Run a request in the background (`mark`: a message, whose stream shows what became of it)."""
        from duragent.client.http import ServerEvent

        self.background.add(task)

        def finished(done: asyncio.Task[Any]) -> None:
            self.background.discard(done)
            # Read the outcome here, always: an exception nobody retrieves (a 409 for a turn the
            # person cancelled) would reach prompt_toolkit's handler and block on "Press ENTER".
            problem = None if done.cancelled() else _failure(done)
            if mark and self.follower is not None:
                # The stream shows what became of a sent message; `follow` reports a failed send.
                self.follower.mark(ServerEvent(None, SENT_MARK, {}))
            elif problem is not None and not _turn_outcome(done):
                self.renderer.error(f"✗ {problem}")

        task.add_done_callback(finished)

    # --- slash commands ----------------------------------------------------------------------

    async def command(self, line: str) -> str:
        """Run a slash command; returns the loop outcome ("idle", "detach", "ended")."""
        name, _, argument = line[1:].partition(" ")
        handler = self._commands().get(name.lower())
        if handler is None:
            self.renderer.error(f"unknown command /{name}; /help lists them")
            return "idle"
        try:
            if name.lower() not in _LOCAL_COMMANDS:
                # as a message does: the workspace's server stopped meanwhile, this starts it again
                await self._start_the_server_if_gone()
            return await handler(argument.strip())
        except DuragentError as exc:
            # Said, and this terminal stays (a server gone before this terminal knew it, one that
            # cannot start, a refused request): it follows the server again once one runs.
            self.renderer.error(f"✗ /{name.lower()}: {exc}")
            return "idle"

    def _commands(self) -> dict[str, Callable[[str], Awaitable[str]]]:
        return {
            "help": self.cmd_help,
            "detach": self.cmd_detach,
            "quit": self.cmd_detach,
            "exit": self.cmd_detach,
            "end": self.cmd_end,
            "status": self.cmd_status,
            "cancel": self.cmd_cancel,
            "resume": self.cmd_resume,
            "retry": self.cmd_retry,
            "history": self.cmd_history,
            "memory": self.cmd_memory,
            "approve": self.cmd_approve,
            "deny": self.cmd_deny,
            "sessions": self.cmd_sessions,
        }

    async def cmd_help(self, _argument: str) -> str:
        """/help."""
        self.renderer.write(HELP + "\n")
        return "idle"

    async def cmd_detach(self, _argument: str) -> str:
        """/detach."""
        return "detach"

    async def cmd_end(self, _argument: str) -> str:
        """/end: end the session (it takes no more messages; its files stay)."""
        await self.api.end_session(self.session.id)
        return await self.follow(target_seq=0) if self.in_turn else "ended"

    async def cmd_status(self, _argument: str) -> str:
        """/status."""
        info = await self.api.session(self.session.id)
        self.session.info = info
        model = self.session.agent_info.get("spec", {}).get("model", {})
        used = await usage_of(self.api, self.session.id)
        pending = info.get("pending_approvals") or []
        lines = [
            f"session        {self.session.id}",
            f"state          {info.get('status')}{' (turn running)' if info.get('busy') else ''}",
            f"agent          {self.session.agent}",
            f"model          {model.get('name', '?')} via {model.get('provider', '?')}",
            f"tokens used    {used[0]} in, {used[1]} out",
            f"on_disconnect  {self.workspace.on_disconnect(self.session)}",
            f"attached       {info.get('attached', '?')} client(s), {info.get('queued', 0)} queued",
        ]
        if pending:
            lines.append(f"waiting        approval of {pending[0].get('tool')} {pending[0].get('command')}")
        # (the waiting command is the model's: its control characters are shown, not obeyed)
        self.renderer.write(printable("\n".join(lines)) + "\n")
        return "idle"

    async def cmd_cancel(self, _argument: str) -> str:
        """/cancel."""
        answer = await self.api.cancel(self.session.id)
        if answer.get("status") != "cancelled":
            self.renderer.notice("no turn is running")
            return "idle"
        return await self.follow(target_seq=0)

    async def cmd_resume(self, _argument: str) -> str:
        """/resume: take up the turn a pause stopped (one that attaching does not resume itself)."""
        info = await self.api.session(self.session.id)
        if info.get("status") != "paused" or info.get("busy"):
            self.renderer.notice("the session is not paused")
            return "idle"
        if info.get("pending_approvals"):
            self.renderer.notice("it waits for an approval: /approve, /approve always or /deny decides it")
            return "idle"
        await self.api.resume(self.session.id)
        if not (await self.api.session(self.session.id)).get("busy"):
            self.renderer.notice("resumed; it had no turn left to run")
            return "idle"
        self.in_turn = True
        self.renderer.start_spinner()
        return await self.follow(target_seq=0)

    async def cmd_retry(self, _argument: str) -> str:
        """/retry: run the last turn again when it failed (the model was unreachable, say) or was
        cancelled, without typing its message again."""
        from duragent.client.http import ApiError

        try:
            await self.api.retry(self.session.id)
        except ApiError as exc:
            if exc.status != 409:
                raise
            self.renderer.notice(str(exc.problem.get("detail") or exc.detail))  # (why not)
            return "idle"
        self.in_turn = True
        self.renderer.start_spinner()
        return await self.follow(target_seq=0)

    async def cmd_history(self, argument: str) -> str:
        """/history [N]: the last N user and assistant messages."""
        if argument and not (argument.isdecimal() and int(argument) > 0):
            self.renderer.error(f"/history takes a number of messages (/history 20), not {argument!r}")
            return "idle"
        count = int(argument) if argument else 10
        page = await self.api.messages(self.session.id, limit=min(1000, count * 6))
        items = [m for m in page.get("messages", []) if m.get("role") in ("user", "assistant")]
        items = [m for m in items if m.get("role") == "user" or (m.get("content") or "").strip()]
        if not items:
            self.renderer.notice("no messages yet")
        for item in items[-count:]:
            if item.get("role") == "user":
                self.renderer.user(str(item.get("content", "")))
            else:
                self.renderer.reply(str(item.get("content", "")))
        return "idle"

    async def cmd_memory(self, _argument: str) -> str:
        """/memory: the agent's long-term memory and latest daily notes, read from the workspace."""
        text = await read_memory(self.workspace.config(), self.session.agent)
        if text is None:
            self.renderer.notice(
                f"no memory here for {self.session.agent} (it lives on the server's machine)"
            )
        else:
            self.renderer.reply(text)
        return "idle"

    async def cmd_approve(self, argument: str) -> str:
        """/approve [always] (`once`, or a start of `always`, also do)."""
        word = argument.lower()
        if word in ("", "once"):
            return await self._decide_pending("allow_once")
        if "always".startswith(word):
            return await self._decide_pending("allow_always")
        # (an allow rule is written for good: only a word that means it writes one)
        self.renderer.error(f"/approve takes nothing (once) or `always`, not {argument!r}")
        return "idle"

    async def cmd_deny(self, _argument: str) -> str:
        """/deny."""
        return await self._decide_pending("deny")

    async def _decide_pending(self, decision: str) -> str:
        info = await self.api.session(self.session.id)
        pending = info.get("pending_approvals") or []
        if not pending:
            self.renderer.notice("nothing is waiting for approval")
            return "idle"
        await self.decide(str(pending[0]["call_id"]), decision)
        return await self.follow(target_seq=0)

    async def cmd_sessions(self, _argument: str) -> str:
        """/sessions: this agent's sessions, this one marked."""
        sessions = await self.api.sessions(agent=self.session.agent, limit=20)
        for item in sessions:
            mark = "*" if item.get("session_id") == self.session.id else " "
            when = str(item.get("updated_at", ""))[:16].replace("T", " ")
            self.renderer.write(f"{mark} {item.get('session_id')}  {item.get('status'):<7}  {when}\n")
        return "idle"


async def _keys(prompt: PromptSession[str], default: str) -> tuple[str, str]:
    """One input line as ("line", text), or ("interrupt", "") for Ctrl-C and ("eof", "") for Ctrl-D.

    KeyboardInterrupt must not escape a task: asyncio would re-raise it out of the event loop.
    """
    try:
        return "line", await prompt.prompt_async("› ", default=default)
    except KeyboardInterrupt:
        return "interrupt", ""
    except EOFError:
        return "eof", ""


def _decision_asker(question: str) -> Application[str | None]:
    """`question` on a line of its own, answered by y, a or n (either case); Ctrl-C leaves it
    unanswered (None), Ctrl-D leaves the session (DETACH). No other key does anything: a line
    typed there is no answer, and Enter must not post it as one.

    `a` writes a rule into the agent's policy for good, so it asks again and only Enter confirms:
    a word typed as the question appeared ("and", "anyway") must not allow a command forever.
    Any other key goes back to the question.
    """
    from prompt_toolkit.application import Application
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.formatted_text import StyleAndTextTuples
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.keys import Keys
    from prompt_toolkit.layout import FormattedTextControl, Layout, Window

    confirming = [False]
    asking = Condition(lambda: not confirming[0])

    def confirm_always(event: Any) -> None:
        del event
        confirming[0] = True

    def back_to_question(event: Any) -> None:
        del event
        confirming[0] = False

    bindings = KeyBindings()
    for key, decision in DECISIONS.items():
        answer = confirm_always if decision == "allow_always" else _exit_with(decision)
        bindings.add(key, filter=asking)(answer)
        bindings.add(key.upper(), filter=asking)(answer)
    bindings.add("enter", filter=~asking)(_exit_with("allow_always"))
    bindings.add(Keys.Any, filter=~asking)(back_to_question)
    for unanswered in ("c-c", Keys.SIGINT):
        bindings.add(unanswered)(_exit_with(None))
    bindings.add("c-d")(_exit_with(DETACH))

    def shown() -> StyleAndTextTuples:
        asked = ALWAYS_CHECK if confirming[0] else question
        return [("", asked), ("[SetCursorPosition]", "")]

    text = FormattedTextControl(shown)
    return Application(
        layout=Layout(Window(text, wrap_lines=True, dont_extend_height=True)), key_bindings=bindings
    )


def _raise_from(task: asyncio.Task[Any]) -> None:
    """Re-raise what ended a finished task (a lost event stream), if it failed."""
    error = task.exception()
    if error is not None:
        raise error


def _exit_with(decision: str | None) -> Callable[[Any], None]:
    def handler(event: Any) -> None:
        event.app.exit(result=decision)

    return handler


def _failure(task: asyncio.Task[Any]) -> str | None:
    if task.cancelled():
        return None
    error = task.exception()
    return str(error) if error is not None else None


def _turn_outcome(task: asyncio.Task[Any]) -> bool:
    """Whether a failed request only reports what the stream already showed (a failed/cancelled turn)."""
    from duragent.client.http import ApiError

    error = task.exception()
    return isinstance(error, ApiError) and error.status in (409, 502, 503)


async def usage_of(api: ApiClient, session_id: str) -> tuple[int, int]:
    """Input and output tokens of every model call of the session."""
    total_in = total_out = 0
    after: int | None = 0
    while after is not None:
        page = await api.messages(session_id, after=after, limit=1000)
        for item in page.get("messages", []):
            usage = (item.get("payload") or {}).get("usage") or {}
            total_in += int(usage.get("input_tokens") or usage.get("prompt_tokens") or 0)
            total_out += int(usage.get("output_tokens") or usage.get("completion_tokens") or 0)
        after = page.get("next_after")
    return total_in, total_out


async def read_memory(config: DuragentConfig, agent: str, days: int = 3) -> str | None:
    """MEMORY.md and the latest daily files of `agent`, as Markdown; None when there is none here."""
    if not config.data_path.is_dir():
        return None
    from duragent.stores.factory import open_memory_store

    store = open_memory_store(config)
    try:
        parts: list[str] = []
        long_term = (await store.read_long_term(agent)).strip()
        if long_term:
            parts.append(f"## MEMORY.md\n\n{long_term}")
        for day in (await store.days(agent))[:days]:
            text = await store.read_day(agent, day)
            if text and text.strip():
                parts.append(f"## {_day_title(day)}\n\n{text.strip()}")
    finally:
        await store.close()
    return "\n\n".join(parts) if parts else None


def _day_title(day: date) -> str:
    return day.isoformat()


def history_file(data_path: Path) -> Path:
    """The input history of this workspace's terminals."""
    return data_path / "clients" / "history"
