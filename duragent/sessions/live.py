"""LiveSession: the one actor that owns a loaded session — its turns, status and subscribers.

Clients never touch a session's state directly: they submit messages (queued in order),
subscribe to its stream (replay from a position, then live), decide approvals, cancel,
resume. Subscribing is attaching; when the last subscriber leaves during a turn, the session
keeps going (`on_disconnect: continue`, status `running`) or pauses at the next safe point
(`pause`). A session left running unattended for `max_background_runtime` is paused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from duragent.agents.loader import Agent
from duragent.durations import format_duration
from duragent.errors import ConfigError, DuragentError, UsageError
from duragent.ids import new_id
from duragent.runtime.approvals import changes_for_answer
from duragent.runtime.events import (
    ApprovalRequired,
    ApprovalResolved,
    ModelRetrying,
    TextDelta,
    TurnFailed,
    TurnFinished,
    TurnPaused,
)
from duragent.runtime.loop import Runtime, TurnControl, calls_awaiting_approval, can_run_again, needs_model
from duragent.sessions.log import SessionLog, StaleLog
from duragent.sessions.stream import (
    APPROVAL_PAUSE_REASON,
    TURN_END_EVENTS,
    Position,
    StreamEvent,
    asked_again,
    from_stored,
    token,
)
from duragent.stores.base import (
    SessionEvent,
    SessionReadOptions,
    SessionStatus,
    StorageUnavailable,
    agents_context,
    changes_by_person,
    person_acting,
    utcnow,
)

log = logging.getLogger(__name__)

#: A subscriber this far behind is dropped; it reconnects with its last position and catches up.
SUBSCRIBER_QUEUE_LIMIT = 10_000
#: Events an `outcome_only` subscriber is not given: only streamed, never stored (text, model retries).
TEXT_EVENTS = frozenset({"token", "retrying"})
#: Events that wake an `outcome_only` subscriber: those that may end a wait for a turn's outcome.
OUTCOME_EVENTS = frozenset({"done", "error", "cancelled", "status", "approval_required"})
#: Events an `outcome_only` subscriber may leave unread before it is woken to read them anyway.
OUTCOME_BACKLOG = 100
#: Longest wait for a stopped turn, taken up again to answer a call, to ask it again.
ASK_AGAIN_WITHIN = 30.0
#: Why a turn paused when the server stopped gracefully (continue-mode sessions resume on next start).
SHUTDOWN_PAUSE_REASON = "server shutting down"
#: Why a pause-mode session paused when its last client left (it resumes when a client attaches).
DISCONNECT_PAUSE_REASON = "client disconnected (on_disconnect: pause)"
#: Why a pause-mode session whose turn a stop or a crash cut off waits after the restart: for a
#: client, like a disconnect pause (it resumes when a client attaches).
RESTART_PAUSE_REASON = "server restarted"
#: Pauses a client attaching ends, beside a disconnect pause: a stop's pause of a turn, met by a
#: client once the server runs again (the stop is over), and the restart's.
_WAITING_FOR_A_CLIENT = frozenset({SHUTDOWN_PAUSE_REASON, RESTART_PAUSE_REASON})
#: How many events back `restore_pause_reason` looks first for the status change that paused a session.
_PAUSE_REASON_WINDOW = 100


class SessionEnded(DuragentError):
    """The session has ended and takes no more messages."""

    def __init__(self, session_id: str):
        super().__init__(f"session {session_id} has ended; start a new one")
        self.session_id = session_id


class ServerClosing(UsageError):
    """The process is shutting down and takes no new work."""

    exit_code = 1


class NothingToRetry(DuragentError):
    """The session's last turn cannot be run again (it did not fail, or a turn runs)."""


class AwaitingApproval(DuragentError):
    """The session's turn waits for a person's answer to a tool call: resuming cannot go on with it."""

    def __init__(self, session_id: str, call_id: str, what: str):
        route = f"/api/v1/sessions/{session_id}"
        super().__init__(
            f"session {session_id} waits for a person's approval of call {call_id} ({what}), not "
            f"for a resume: answer it (POST {route}/approve)"
        )
        self.session_id = session_id


@dataclass(frozen=True)
class Ticket:
    """A submitted message: how many turns run before it, and the position of its `start` event.

    `started` resolves when the message's turn stores it (before its `start` event reaches any
    subscriber), so a client can tell its own turn's events from those of turns ahead of it.
    It is cancelled when the message never runs (the session ended or the turn was cancelled first).
    """

    ahead: int
    started: asyncio.Future[Position]


@dataclass(frozen=True)
class TurnReport:
    """How one turn went, for metrics: wall time, outcome, and the tokens its model calls used."""

    session_id: str
    seconds: float
    #: done, error, cancelled or paused
    outcome: str
    input_tokens: int = 0
    output_tokens: int = 0


#: Called once at the end of every turn (keep it quick: it runs on the session's task).
TurnEndHook = Callable[[TurnReport], None]
#: Told that a session ended or is being deleted: (session id, why), e.g. to stop its background
#: processes. Awaited by `end` (and the manager's `delete`) before they return.
SessionEndListener = Callable[[str, str], Awaitable[object]]


@dataclass
class _Waiting:
    """A message waiting for its turn; `queue_id` names its `message_queued` event when recorded."""

    content: str
    sender: Mapping[str, Any] | None
    started: asyncio.Future[Position]
    queue_id: str | None = None


@dataclass(frozen=True)
class LiveSettings:
    """How a session behaves when clients come and go (agent spec over duragent.yaml)."""

    on_disconnect: str = "continue"
    max_background_runtime: timedelta = timedelta(minutes=30)
    output_buffer_size: int = 1000


class EventFeed(Protocol):
    """What a stream reads: a local `Subscription` or a relay from another worker (duragent.cluster)."""

    @property
    def closed(self) -> bool:
        """True once detached and drained."""

    async def next_within(self, seconds: float) -> StreamEvent | None:
        """The next event, or None when nothing arrived within `seconds`."""

    def ready(self, limit: int | None = None) -> list[StreamEvent]:
        """Events available now without waiting."""

    def close(self) -> None:
        """Detach."""


class Mailbox:
    """One subscriber's inbox: events in order (None closes it); the waiting reader is woken once
    per burst, however many events the burst holds.

    The inbox of a client that waits only for a turn's outcome (`outcome_only`: a POST answered
    with the reply) takes none of `TEXT_EVENTS`, and wakes its reader only for an event
    that may end the wait (or once `OUTCOME_BACKLOG` events wait): the others (the turn's
    `start`, its tool calls) are read with it, sparing the reader a wake-up for each.
    """

    __slots__ = ("client", "events", "outcome_only", "waiter")

    def __init__(self, *, outcome_only: bool = False, client: str | None = None) -> None:
        self.events: collections.deque[StreamEvent | None] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.outcome_only = outcome_only
        #: Which client it is, when it says (`CLIENT_HEADER`): a terminal's event stream and the
        #: message it is sending are one client attached, not two.
        self.client = client

    def put(self, event: StreamEvent | None) -> None:
        """Deliver `event` and wake the reader if it waits (and wants to hear of it now)."""
        if self.outcome_only and event is not None:
            if event.event in TEXT_EVENTS:
                return
            self.events.append(event)
            if event.event in OUTCOME_EVENTS or len(self.events) >= OUTCOME_BACKLOG:
                self.wake()
            return
        self.events.append(event)
        self.wake()

    def wake(self) -> None:
        """Wake the waiting reader (if any) to look again."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self.events)


class Subscription:
    """An attached client: iterate it for events; `close()` (or leaving the loop) detaches."""

    def __init__(self, session: LiveSession, mailbox: Mailbox, replay: list[StreamEvent]):
        self._session = session
        self._mailbox = mailbox
        self._replay = collections.deque(replay)
        self._last = replay[-1].position if replay else Position(-1)
        self._closed = False
        #: When the current `next_within` gives up; one timer per subscription checks it, re-armed
        #: only when it fires (a stream waits once per burst of tokens: no timer per wait).
        self._deadline = 0.0
        self._deadline_timer: asyncio.TimerHandle | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            ready = self.ready(limit=1)
            if ready:
                return ready[0]
            if self._closed:
                self.close()
                raise StopAsyncIteration
            await self._wait()

    async def next_within(self, seconds: float) -> StreamEvent | None:
        """The next event, or None when nothing arrived within `seconds` (time for a keep-alive).

        Also None once the subscription is closed (check `closed`).
        """
        ready = self.ready(limit=1)
        if ready or self._closed:
            return ready[0] if ready else None
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        timer = self._deadline_timer
        if timer is None or timer.when() > self._deadline:
            if timer is not None:
                timer.cancel()
            self._deadline_timer = loop.call_at(self._deadline, self._deadline_reached)
        await self._wait()
        ready = self.ready(limit=1)
        return ready[0] if ready else None

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._mailbox.waiter = waiter
        try:
            await waiter
        finally:
            if self._mailbox.waiter is waiter:
                self._mailbox.waiter = None

    def _deadline_reached(self) -> None:
        self._deadline_timer = None
        if self._mailbox.waiter is None:
            return  # nobody waits; the next wait arms a new timer
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline:
            self._mailbox.wake()
        else:
            self._deadline_timer = loop.call_at(self._deadline, self._deadline_reached)

    @property
    def closed(self) -> bool:
        """True once detached (by `close()`, or because the session closed or dropped a slow client)."""
        return self._closed and not self._replay

    def ready(self, limit: int | None = None) -> list[StreamEvent]:
        """Events available now without waiting (lets a writer batch a burst of tokens into one write)."""
        ready: list[StreamEvent] = []
        while self._replay and (limit is None or len(ready) < limit):
            ready.append(self._replay.popleft())
        events = self._mailbox.events
        while not self._closed and events and (limit is None or len(ready) < limit):
            event = events.popleft()
            if event is None:
                self.close()
                break
            if event.position > self._last:
                self._last = event.position
                ready.append(event)
        return ready

    def close(self) -> None:
        """Detach from the session."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if not self._closed:
            self._closed = True
            self._session._detach(self._mailbox)
            self._mailbox.wake()


class LiveSession:
    """The actor of one loaded session."""

    def __init__(
        self,
        session_log: SessionLog,
        agent: Agent,
        runtime: Runtime,
        settings: LiveSettings,
        *,
        on_turn_end: TurnEndHook | None = None,
    ):
        self.log = session_log
        self.agent = agent
        self.runtime = runtime
        self.settings = settings
        self.on_turn_end = on_turn_end
        #: Also told every event clients see: (session id, event), e.g. to reach other workers.
        self.publishers: list[Callable[[str, StreamEvent], None]] = []
        self._turn_tokens = [0, 0]
        #: Recent events as plain tuples, a token as `(seq, delta, "token", text)`: the collector
        #: stops tracking a plain tuple of strings and ints, so a thousand buffered tokens per
        #: session add nothing to the full collections that pause every stream at once.
        self._buffer: collections.deque[_Buffered] = collections.deque(
            maxlen=max(settings.output_buffer_size, 1)
        )
        self._subscribers: set[Mailbox] = set()
        self._pending: collections.deque[_Waiting] = collections.deque()
        #: The ticket of the message whose turn runs now, until its user message is stored (of a
        #: retry, until its `turn_retried` is).
        self._starting: asyncio.Future[Position] | None = None
        self._turn: asyncio.Task[None] | None = None
        #: The running turn has stored its end: a message coming now is next, not queued behind it.
        self._turn_stored_end = False
        self._control: TurnControl | None = None
        #: The running turn was cancelled by a person's command (`cancel` inside `changes_by_person`):
        #: its `cancelled` event is committed as theirs.
        self._cancelled_by_person = False
        self._delta_after = session_log.state.last_seq
        #: The last event stored before this process loaded the session: text another process (a
        #: worker that died, or this server before a crash) streamed after it was never stored.
        self._loaded_at_seq: int | None = session_log.state.last_seq
        self._deltas = 0
        self._background_timer: asyncio.TimerHandle | None = None
        #: When the current turn went on without any client (its max_background_runtime clock).
        self.unattended_since: datetime | None = None
        # tasks started and not awaited: referenced until done (the loop keeps only weak ones)
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._paused_for_disconnect = False
        #: Set when unloading cancels a turn that did not reach a safe point within the grace time.
        self._stopping = False
        #: Set when unloading (the server stops) stops a turn: answers to its approvals are refused.
        self._closing = False
        #: The reason of the status change that paused the session (None while it is not paused).
        self.pause_reason: str | None = None
        self._status_lock = asyncio.Lock()
        self.turn_finished = asyncio.Event()
        #: Told once when this copy of the session may not be written any more (`SessionLog.stale`),
        #: and no turn of it runs: the session manager loads the session again from the store.
        self.on_stale: Callable[[LiveSession], None] | None = None
        #: The agent's definition as the server serves it now (None when not loaded): each turn
        #: starts with it, so an edited prompt, model or tool list applies from the next turn.
        self.newest_agent: Callable[[str], Awaitable[Agent | None]] | None = None
        self._stale_told = False
        #: Told when the session ends (`end`); the session manager shares its own list here.
        self.end_listeners: list[SessionEndListener] = []
        session_log.listeners.append(self._on_append)
        session_log.on_stale = self._went_stale

    # --- what clients see --------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self.log.session_id

    @property
    def status(self) -> SessionStatus:
        """active, running, paused or ended."""
        return self.log.state.status

    @property
    def busy(self) -> bool:
        """True while a turn runs."""
        return self._turn is not None

    @property
    def attached(self) -> int:
        """How many subscriptions there are (a client's stream and its request waiting for a turn
        are two): whether anybody follows the session at all."""
        return len(self._subscribers)

    @property
    def clients(self) -> int:
        """How many clients are attached: subscriptions of one client that says which it is count once."""
        return len({mailbox.client or mailbox for mailbox in self._subscribers})

    @property
    def queued(self) -> int:
        """Messages waiting for the current turn to end."""
        return len(self._pending)

    @property
    def can_hand_over(self) -> bool:
        """True when another worker could take the session now: no turn runs, none is about to
        start, and every waiting message is recorded (a paused session's queue is rebuilt on load)."""
        if self._turn is not None:
            return False
        if self._pending and self.status != "paused":
            return False
        return all(waiting.queue_id is not None for waiting in self._pending)

    # --- commands ----------------------------------------------------------------------------

    async def submit(self, content: str, sender: Mapping[str, Any] | None = None) -> int:
        """Queue a message (durably, see `queue`); returns how many turns run before it (0: it starts now)."""
        return (await self.queue(content, sender)).ahead

    async def queue(self, content: str, sender: Mapping[str, Any] | None = None) -> Ticket:
        """Queue a message; one that must wait for a turn is stored (`message_queued`) before this returns.

        So a message acknowledged as queued survives a crash: recovery queues it again. Its turn's
        `user_message` names it by `queue_id`. A message that starts at once needs no record: its
        `user_message` is stored before the client hears anything. One that comes while the running
        turn only tidies up (its end stored: the reply that prompted this message) is recorded
        too, since a caller may answer before it starts (the web UI's redirect, a pause at the
        turn's end), but it is next: no turn runs ahead of it.
        """
        if self.status == "ended":
            raise SessionEnded(self.session_id)
        self.log.check_writable()  # a copy another worker took over: refused, nothing queued here
        self._refuse_work_when_closing()
        idle = self._turn is None and not self._pending
        if idle and not self.unfinished_turn:
            return self.enqueue(content, sender)
        payload: dict[str, Any] = {"queue_id": new_id("q"), "content": content}
        if sender:
            payload["sender"] = dict(sender)
        await self.log.append("message_queued", payload)
        if idle and self._turn is None:
            # The turn before this message stopped midway (paused at an approval or at a safe
            # point, a restart): it finishes first, so the conversation reads in order (a message
            # between a tool call and its result is refused by every provider); this one waits.
            # (A stop begun during the append starts nothing here: the message is stored, and
            # runs where the session is loaded next, so it is answered as queued, not refused.)
            with contextlib.suppress(ServerClosing):
                await self.resume()
        return self._add(_Waiting(content, sender, self._future(), payload["queue_id"]))

    async def queue_for_client(self, content: str, sender: Mapping[str, Any] | None = None) -> Ticket | None:
        """Queue a message whose turn waits for a client (`on_disconnect: pause` with nobody attached).

        It is stored like any queued message and the session pauses as if its last client had
        just left: the turn starts when a client attaches (or the session is resumed); returns
        None. With a client attached, or in continue mode, it is an ordinary `queue` (its ticket).
        """
        if self._subscribers or self.settings.on_disconnect != "pause":
            return await self.queue(content, sender)
        if self.status == "ended":
            raise SessionEnded(self.session_id)
        self.log.check_writable()
        self._refuse_work_when_closing()
        payload: dict[str, Any] = {"queue_id": new_id("q"), "content": content}
        if sender:
            payload["sender"] = dict(sender)
        await self.log.append("message_queued", payload)
        self._pending.append(_Waiting(content, sender, self._future(), payload["queue_id"]))
        self._paused_for_disconnect = True
        if self._turn is None:
            await self._set_status("paused", DISCONNECT_PAUSE_REASON)
        return None

    def enqueue(self, content: str, sender: Mapping[str, Any] | None = None) -> Ticket:
        """Queue a message in memory only and return its ticket (prefer `queue`, which is durable)."""
        if self.status == "ended":
            raise SessionEnded(self.session_id)
        self.log.check_writable()
        self._refuse_work_when_closing()
        return self._add(_Waiting(content, sender, self._future()))

    def requeue_stored(self) -> int:
        """Queue again the messages recorded as queued whose turn never started (after a restart).

        They wait until the session is resumed (`resume()`); returns how many.
        """
        known = {w.queue_id for w in self._pending}
        stored = [q for q in self.log.state.queued if q.get("queue_id") not in known]
        for item in stored:
            sender = item.get("sender")
            self._pending.append(
                _Waiting(
                    str(item.get("content", "")),
                    sender if isinstance(sender, dict) else None,
                    self._future(),
                    str(item["queue_id"]),
                )
            )
        return len(stored)

    def _future(self) -> asyncio.Future[Position]:
        return asyncio.get_running_loop().create_future()

    def _add(self, waiting: _Waiting) -> Ticket:
        if self.status == "ended":
            raise SessionEnded(self.session_id)
        ahead = len(self._pending) + (1 if self._turn_running else 0)
        self._pending.append(waiting)
        self._start_next()
        return Ticket(ahead, waiting.started)

    async def subscribe(
        self, after: Position | None = None, *, outcome_only: bool = False, client: str | None = None
    ) -> Subscription:
        """Attach: replay what came after `after` (None: nothing, only live events), then go live.

        `outcome_only`: for a client waiting only for a turn's outcome (see `Mailbox`); `client`:
        which client subscribes, if it says (see `clients`).
        """
        mailbox = Mailbox(outcome_only=outcome_only, client=client)
        self._subscribers.add(mailbox)
        try:
            replay = await self._replay(after) if after is not None else []
            await self._on_attach()
        except BaseException:
            # No Subscription reaches the caller to detach it: without this the session stays attached.
            self._subscribers.discard(mailbox)
            raise
        if self.status == "ended":
            # Ended before (or while) it attached: nothing more will come, and `end` closed only
            # the subscribers it had, so the stream would wait for ever.
            self._subscribers.discard(mailbox)
            mailbox.put(None)
        return Subscription(self, mailbox, replay)

    async def cancel(self) -> bool:
        """Stop the running turn now (partial output is kept); False when no turn runs."""
        task = self._turn
        if task is None:
            return False
        self._cancelled_by_person = person_acting.get()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._turn is task:
            # Cancelled before it first ran, so `_run` (and its cleanup) never started.
            await self._end_turn(0.0, "cancelled")
        return True

    async def resume(self) -> None:
        """Continue a paused session: its unfinished turn, then any queued messages."""
        if self.status == "ended":
            raise SessionEnded(self.session_id)
        self._refuse_work_when_closing()
        turn = self._turn
        if turn is not None and self._control is None and self.status == "paused":
            # The turn has paused (at a safe point) and is ending: it is taken up once it has.
            await asyncio.wait({turn})
            self._refuse_work_when_closing()  # (a stop begun meanwhile: nothing starts here)
        if self._turn is not None:
            self._refuse_when_awaiting_approval()  # (refused: nothing about the session changes)
            self._paused_for_disconnect = False
            return
        self._paused_for_disconnect = False
        if self.status == "paused":
            # Before the turn starts, so whoever asked sees the session active at once.
            await self._set_status("active", "resumed")
            if self._turn is not None:
                return  # (another resume, or a message, started it meanwhile)
        if self._closing:
            return  # (a stop began while the status was stored: the session's next owner takes it up)
        if self.unfinished_turn:
            self._start(None, None)
        elif self._pending:
            self._start_next()

    def _refuse_when_awaiting_approval(self) -> None:
        """AwaitingApproval when the running turn waits for a person's answer."""
        if self.status != "paused" or self.pause_reason != APPROVAL_PAUSE_REASON:
            return
        for asked in self.runtime.approvals.pending(self.session_id):
            what = f"{asked.tool}: {asked.invocation}" if asked.invocation else asked.tool
            raise AwaitingApproval(self.session_id, asked.call_id, what)

    async def retry(self) -> None:
        """Run the last turn again when it failed or was cancelled: the model answers its last
        step (the person's message, or the tool results it had) anew, with the history as it is
        (a partial reply the turn kept is left out). NothingToRetry when a turn runs or waits, the
        last one did not fail, or it left the model nothing to answer."""
        if self.status == "ended":
            raise SessionEnded(self.session_id)
        self._refuse_work_when_closing()
        state = self.log.state
        if self._turn is not None or self._pending:
            raise NothingToRetry("a turn is running or queued: retry once it has ended")
        if state.turn_closed_by is None and self.unfinished_turn:
            raise NothingToRetry(self._resume_instead())
        if state.turn_closed_by is None:
            raise NothingToRetry("the last turn did not fail: there is nothing to retry")
        if not can_run_again(state):
            raise NothingToRetry("the last turn left the model nothing to answer: send a new message")
        self.log.check_writable()  # (a copy another worker took over: refused, nothing runs here)
        # Started before anything is awaited, `turn_retried` stored by the turn itself: a second
        # retry, or a message, coming meanwhile finds the turn running (not two turns at once).
        # Returns once it is stored (a crash after that resumes the turn) or the turn has ended.
        stored = self._future()
        self._start(None, None, stored, retried={"after": state.turn_closed_by, "turn": state.turns})
        await asyncio.wait({stored})

    def _resume_instead(self) -> str:
        """Why a turn that stopped midway (a pause, a stop or a crash) is not retried, and what
        continues it: it did not fail, and is owed its end, not a new answer."""
        why = f" ({self.pause_reason})" if self.status == "paused" and self.pause_reason else ""
        route = f"/api/v1/sessions/{self.session_id}"
        if self.log.state.pending_approvals:
            return (
                f"the last turn did not fail: it stopped midway{why} waiting for a tool call's "
                f"approval; answer it instead (POST {route}/approve, or attach to the session)"
            )
        return (
            f"the last turn did not fail: it stopped midway{why}; resume it instead "
            f"(POST {route}/resume, or /resume in duragent chat and attach)"
        )

    @property
    def last_turn_retryable(self) -> bool:
        """True when the last turn failed or was cancelled with a step left for the model to
        answer: `retry` runs it again (once no other turn runs or waits)."""
        state = self.log.state
        return state.turn_closed_by is not None and can_run_again(state)

    def stopped_approvals(self) -> list[dict[str, Any]]:
        """Calls a turn that stopped midway left waiting for a person (recorded in the log, nobody
        asked now); answering one takes the turn up again (`take_up`). None while a turn runs."""
        return [] if self.busy else [dict(a) for a in self.log.state.pending_approvals]

    def waiting_approvals(self) -> list[dict[str, Any]]:
        """Every call of this session waiting for a person, as records (`ApprovalRequest.to_record`'s
        keys): those asked now, else those a stopped turn left (no request or expiry time)."""
        asked = [a.to_record() for a in self.runtime.approvals.pending(self.session_id)]
        stopped = [
            {
                **a,
                "session_id": self.session_id,
                "agent": self.log.state.agent,
                "requested_at": None,
                "expires_at": None,
            }
            for a in self.stopped_approvals()
        ]
        return asked or stopped

    async def take_up(self, subscription: Subscription, call_id: str, seen: list[StreamEvent]) -> bool:
        """Resume a turn that stopped after asking for `call_id` (one of `stopped_approvals`): True
        once it has asked again and waits for the answer (`decide`), False when it asked another
        call or went on without asking (what `subscription` brought is appended to `seen`).
        TimeoutError when it does neither within ASK_AGAIN_WITHIN seconds."""
        self._refuse_answer_when_closing(call_id)
        await self.resume()
        async with asyncio.timeout(ASK_AGAIN_WITHIN):
            return await asked_again(subscription, call_id, seen)

    @property
    def unfinished_turn(self) -> bool:
        """True when the log stops mid-turn: the model has to speak, or a person has to decide."""
        return needs_model(self.log) or bool(calls_awaiting_approval(self.log))

    def decide(self, call_id: str, decision: str) -> None:
        """Answer a pending approval of this session (allow_once, allow_always, deny); ServerClosing
        once the session is being unloaded (its turn stops without waiting for the answer)."""
        self._refuse_answer_when_closing(call_id)
        self.runtime.approvals.decide(call_id, decision, session_id=self.session_id)

    def _refuse_work_when_closing(self) -> None:
        """ServerClosing (nothing stored) once the session is being unloaded: no turn starts here."""
        if self._closing:
            raise ServerClosing(
                "the server is shutting down: nothing was stored; send it again once it runs again "
                "(or to another worker)"
            )

    def _refuse_answer_when_closing(self, call_id: str) -> None:
        if self._closing:
            raise ServerClosing(
                f"the server is stopping: the answer for call {call_id} was not applied; "
                "the approval is asked again when the server runs again"
            )

    async def end(self, reason: str = "ended by client") -> None:
        """End the session: stop any turn, record `session_end`, detach everyone, and tell the
        `end_listeners` (what the session started in the background is stopped)."""
        for waiting in self._pending:
            waiting.started.cancel()
        self._pending.clear()
        await self.cancel()
        if self.status != "ended":
            await self.log.append("session_end", {"reason": reason})
            await self.log.snapshot()
        self._close_subscribers()
        await tell_session_ended(self.end_listeners, self.session_id, reason)

    async def close(self, grace: float = 10.0) -> None:
        """Unload: let a running turn reach a safe point within `grace` seconds, then snapshot.

        A turn waiting for a person's answer pauses at once: nothing of it runs, and the question,
        stored, is asked again when the session is loaded again.
        """
        # No turn starts from now on (a message queued behind this one is recorded, and runs where
        # the session is loaded next), and answers to its approvals are refused.
        self._closing = True
        if self._turn is not None and self._control is not None:
            self._control.request_stop(SHUTDOWN_PAUSE_REASON)
            done, _ = await asyncio.wait({self._turn}, timeout=grace)
            if not done:
                # Cut off by the stop, not ended by a client: recorded as paused for the shutdown,
                # so the next start resumes it (a cancelled turn is over and never runs again).
                self._stopping = True
                await self.cancel()
        self._cancel_background_timer()
        self._close_subscribers()
        # a status change a client's detach started must land before the log is let go: run
        # later, it would reopen the session's log (and lock) behind a delete or another owner
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
        if self._on_append in self.log.listeners:
            self.log.listeners.remove(self._on_append)
        await self.log.snapshot()
        # Unloaded: the store closes the session's log and lock (reopened if it is loaded again).
        await self.log.store.release(self.session_id)

    async def restore_pause_reason(self) -> None:
        """After loading a paused session, find why it paused (its last status change) in the log.

        So a session paused because its last client left still resumes when a client attaches.
        """
        if self.status != "paused":
            return
        last_seq = self.log.state.last_seq
        status_changes = frozenset({"status_change"})
        changes = await self.log.store.read(
            self.session_id,
            SessionReadOptions(after_seq=max(0, last_seq - _PAUSE_REASON_WINDOW), types=status_changes),
        )
        if not changes and last_seq > _PAUSE_REASON_WINDOW:
            changes = await self.log.store.read(self.session_id, SessionReadOptions(types=status_changes))
        paused = [event for event in changes if event.payload.get("to") == "paused"]
        reason = paused[-1].payload.get("reason") if paused else None
        self.pause_reason = reason if isinstance(reason, str) else None
        self._paused_for_disconnect = self.pause_reason == DISCONNECT_PAUSE_REASON

    # --- turns -------------------------------------------------------------------------------

    @property
    def _turn_running(self) -> bool:
        """A turn runs and has not stored its end yet (done, error or cancelled)."""
        return self._turn is not None and not self._turn_stored_end

    def _start_next(self) -> None:
        # (closing, nothing starts: the messages stay recorded for the copy loaded next)
        if self._turn is None and self._pending and self.status != "ended" and not self._closing:
            waiting = self._pending.popleft()
            self._start(waiting.content, waiting.sender, waiting.started, waiting.queue_id)

    def _start(
        self,
        content: str | None,
        sender: Mapping[str, Any] | None,
        started: asyncio.Future[Position] | None = None,
        queue_id: str | None = None,
        retried: dict[str, Any] | None = None,
    ) -> None:
        self._starting = started
        self._control = TurnControl()
        self._turn_stored_end = False
        self._cancelled_by_person = False
        self.turn_finished.clear()
        # The agent's turn, also when a person's command started it (`resume`): only that command's
        # own changes are committed as the person's, none of the turn's.
        self._turn = asyncio.create_task(
            self._run(content, sender, self._control, queue_id, retried),
            name=f"turn {self.session_id}",
            context=agents_context(),
        )

    async def _run(
        self,
        content: str | None,
        sender: Mapping[str, Any] | None,
        control: TurnControl,
        queue_id: str | None = None,
        retried: dict[str, Any] | None = None,
    ) -> None:
        began = time.monotonic()
        self._turn_tokens = [0, 0]
        outcome = "done"
        try:
            if retried is not None:
                await self.log.append("turn_retried", retried)  # (the failed turn is owed a reply again)
            await self._set_status("active" if self._subscribers else "running")
            if not self._subscribers:
                self._on_unattended()
            loaded_at, self._loaded_at_seq = self._loaded_at_seq, None
            if content is None:
                await self._attempt_restarted(self.log.state.last_seq if loaded_at is None else loaded_at)
            if self.newest_agent is not None:
                # (an agent removed since, or never loaded again, keeps the definition it had)
                self.agent = await self.newest_agent(self.agent.name) or self.agent
            turn = self.runtime.run_turn(
                self.log, self.agent, content, sender=sender, control=control, queue_id=queue_id
            )
            # Closed at once however the loop ends (a cancel lands between two events as often as
            # inside one): its cleanup (an approval request withdrawn) must not wait for the GC.
            async with contextlib.aclosing(turn) as events:
                async for event in events:
                    if isinstance(event, TurnFinished | TurnFailed | TurnPaused):
                        outcome = _OUTCOMES[type(event)]
                    await self._on_runtime_event(event)
        except asyncio.CancelledError:
            outcome = "cancelled"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            # (A stale copy stores neither: the session as stored is loaded again.)
            with contextlib.suppress(StaleLog):
                if self._stopping:
                    outcome = "paused"
                    await self._set_status("paused", SHUTDOWN_PAUSE_REASON)
                else:
                    with changes_by_person() if self._cancelled_by_person else contextlib.nullcontext():
                        await self.log.append("cancelled", {"reason": "cancelled by client"})
        except DuragentError as exc:
            # A problem the person can fix (a missing API key, an invalid file): its own words.
            outcome = "error"
            log.warning("session %s: turn failed: %s", self.session_id, exc)
            await self._record_failure(_failure_code(exc), str(exc))
        except Exception as exc:
            outcome = "error"
            # A bug or a store failure must not kill the actor: record it and stay usable.
            log.exception("session %s: turn failed", self.session_id)
            await self._record_failure("internal", f"internal error (see the server log): {exc}")
        finally:
            await self._end_turn(time.monotonic() - began, outcome)

    async def _record_failure(self, code: str, message: str) -> None:
        """Store the turn's `error` event; when the store refuses it too (the database gone, the
        session deleted underneath), tell the clients anyway: one waiting for the turn's end
        (a POST that answers with the reply) would otherwise wait for ever."""
        try:
            retryable = can_run_again(self.log.state)
            await self.log.append("error", {"code": code, "message": message, "retryable": retryable})
        except Exception as error:
            if isinstance(error, StorageUnavailable):  # (what the turn failed of, already logged)
                log.warning("session %s: the turn's error could not be stored: %s", self.session_id, error)
            elif not isinstance(error, StaleLog):  # (a stale copy says why when it becomes one)
                log.exception("session %s: the turn's error could not be stored", self.session_id)
            self._deltas += 1
            position = Position(self.log.state.last_seq, self._deltas)
            if self._starting is not None and not self._starting.done():
                # its message was never stored: this unstored end is the turn, for its submitter
                self._starting.set_result(position)
                self._starting = None
            self._publish(
                StreamEvent(position, "error", {"code": code, "message": message, "retryable": False})
            )

    async def _attempt_restarted(self, discard_after: int) -> None:
        """Tell clients that the turn starts a new attempt: text streamed after `discard_after`
        (and not stored in a message) belonged to an attempt that died and is void."""
        await self.log.append(
            "attempt_restarted", {"discard_after": str(Position(discard_after)), "turn": self.log.state.turns}
        )

    async def _end_turn(self, seconds: float, outcome: str) -> None:
        """What follows every turn, however it ended: report it, settle the status, start the next."""
        self._report_turn(seconds, outcome)
        if self._starting is not None:
            # The turn ended before storing its message (cancelled at once): it never ran.
            self._starting.cancel()
            self._starting = None
        self._turn = None
        self._control = None
        self._cancel_background_timer()
        with contextlib.suppress(StaleLog):  # (a stale copy stores nothing more; see below)
            await self._settle_status(outcome)
        self.turn_finished.set()
        if self.log.stale is not None:
            # The messages recorded behind this turn are queued again by the copy loaded next.
            self._tell_stale()
        elif self.status != "paused" and not self._closing:
            # (Closing, the session is let go once this turn is over: the copy loaded next, here
            # after a restart or on another worker, runs the messages recorded behind it.)
            self._start_next()

    async def _settle_status(self, outcome: str) -> None:
        """The status after a turn: active, or paused when the messages behind it wait for a client.

        A turn that stopped midway (`outcome` paused) keeps its pause. One that ended while a
        person was asked (cancelled, failed) leaves nothing waiting: its approval pause is over.
        """
        awaiting_approval = self.status == "paused" and self.pause_reason == APPROVAL_PAUSE_REASON
        if self.status not in ("active", "running") and not (awaiting_approval and outcome != "paused"):
            return
        if self._paused_for_disconnect and self._pending and not self._subscribers:
            # The last client left when the turn had no safe point left to pause at (its last
            # model call): the turn's end is one, so the messages behind it wait for a client.
            await self._set_status("paused", DISCONNECT_PAUSE_REASON)
        else:
            self._paused_for_disconnect = False
            await self._set_status("active")

    def _went_stale(self) -> None:
        """The log may not be written any more: once no turn runs, the manager loads the session again."""
        if self._turn is None:
            self._tell_stale()

    def _tell_stale(self) -> None:
        if self._stale_told or self.on_stale is None:
            return
        self._stale_told = True
        self.on_stale(self)

    def _report_turn(self, seconds: float, outcome: str) -> None:
        if self.on_turn_end is None:
            return
        report = TurnReport(self.session_id, seconds, outcome, *self._turn_tokens)
        try:
            self.on_turn_end(report)
        except Exception:
            # Metrics must never break a session; the traceback goes to the log.
            log.exception("session %s: turn-end hook failed", self.session_id)

    async def _on_runtime_event(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            # Text follows its turn's `start`, which clients see once the user message is durable.
            await self.log.synced()
            self._deltas += 1
            self._publish(token(self._delta_after, self._deltas, event.text))
        elif isinstance(event, ModelRetrying):
            # Not stored (the turn's outcome is): a client says why the reply is late, and when
            # the model is asked again, instead of showing nothing for up to a minute.
            await self.log.synced()
            self._deltas += 1
            data = {
                "attempt": event.attempt,
                "attempts": event.attempts,
                "in_seconds": round(event.seconds, 3),
                "reason": event.reason,
            }
            self._publish(StreamEvent(Position(self._delta_after, self._deltas), "retrying", data))
        elif isinstance(event, ApprovalRequired):
            await self._set_status("paused", APPROVAL_PAUSE_REASON)
        elif isinstance(event, ApprovalResolved):
            with changes_for_answer(event.reason):
                await self._set_status(
                    "active" if self._subscribers else "running", f"approval {event.decision}"
                )
        elif isinstance(event, TurnPaused):
            # The turn is over; nothing is left to pause (or to un-pause on reattach).
            self._control = None
            await self._set_status("paused", event.reason)

    # --- status ------------------------------------------------------------------------------

    async def _set_status(self, to: SessionStatus, reason: str | None = None) -> None:
        async with self._status_lock:
            current = self.status
            if current == to or current == "ended":
                return
            payload: dict[str, Any] = {"from": current, "to": to}
            if reason:
                payload["reason"] = reason
            await self.log.append("status_change", payload)
            if to in ("paused", "ended"):
                await self.log.snapshot()

    async def _on_attach(self) -> None:
        self._cancel_background_timer()
        if self._paused_for_disconnect and self._turn is not None and self._control is not None:
            # The client came back before the turn reached its safe point: withdraw the pause.
            self._control.pause_requested = False
            self._paused_for_disconnect = False
        if self.status == "running":
            await self._set_status("active", "client attached")
        elif self.status == "paused" and (
            self._paused_for_disconnect or self.pause_reason in _WAITING_FOR_A_CLIENT
        ):
            await self.resume()

    def _detach(self, mailbox: Mailbox) -> None:
        self._subscribers.discard(mailbox)
        if self._subscribers or self._turn is None or self._control is None:
            return
        if self.settings.on_disconnect == "pause":
            if self._control is not None:
                self._paused_for_disconnect = True
                self._control.request_pause(DISCONNECT_PAUSE_REASON)
        elif self.status != "paused":
            # (A turn waiting for approval stays `paused` until someone decides.)
            self._keep(asyncio.create_task(self._set_status("running", "client disconnected")))
            self._on_unattended()

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _on_unattended(self) -> None:
        if self.unattended_since is None:
            self.unattended_since = utcnow()
        limit = self.settings.max_background_runtime.total_seconds()
        if self._background_timer is None and limit > 0:
            self._background_timer = asyncio.get_running_loop().call_later(
                limit, self._background_limit_reached
            )

    def _background_limit_reached(self) -> None:
        self._background_timer = None
        if self._control is not None and not self._subscribers:
            limit = format_duration(self.settings.max_background_runtime)
            self._control.request_pause(f"ran unattended for {limit} (max_background_runtime)")

    def _cancel_background_timer(self) -> None:
        self.unattended_since = None
        if self._background_timer is not None:
            self._background_timer.cancel()
            self._background_timer = None

    # --- publishing --------------------------------------------------------------------------

    def _on_append(self, events: list[SessionEvent]) -> None:
        for event in events:
            self._delta_after, self._deltas = event.seq, 0
            if event.type == "status_change":
                reason = event.payload.get("reason")
                paused = event.payload.get("to") == "paused" and isinstance(reason, str)
                self.pause_reason = reason if paused else None
            if event.type in ("assistant_message", "error") and self._turn is not None:
                self._count_tokens(event.payload.get("usage"))
            shown = from_stored(event)
            if shown.event in TURN_END_EVENTS:
                # The turn has nothing left to pause: a client leaving now must not pause the next one.
                self._control = None
                self._turn_stored_end = self._turn is not None
            if self._starting is not None and (
                event.type in ("user_message", "turn_retried") or shown.event in TURN_END_EVENTS
            ):
                # Resolved before publishing, so the submitter knows this `start` is its own (or,
                # when its turn failed before its message could be stored, this end).
                if not self._starting.done():
                    self._starting.set_result(Position(event.seq))
                self._starting = None
            self._publish(shown)

    def _count_tokens(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._turn_tokens[0] += int(usage.get("input_tokens") or 0)
            self._turn_tokens[1] += int(usage.get("output_tokens") or 0)

    def _publish(self, event: StreamEvent) -> None:
        position, data = event.position, event.data
        kept = data["content"] if event.event == "token" else data
        self._buffer.append((position.seq, position.delta, event.event, kept))
        for publisher in self.publishers:
            publisher(self.session_id, event)
        for mailbox in list(self._subscribers):
            if len(mailbox) >= SUBSCRIBER_QUEUE_LIMIT:
                # Too slow: drop it; the client reconnects from its last position and catches up.
                self._subscribers.discard(mailbox)
                mailbox.put(None)
            else:
                mailbox.put(event)

    def _close_subscribers(self) -> None:
        for mailbox in list(self._subscribers):
            mailbox.put(None)
        self._subscribers.clear()

    async def _replay(self, after: Position) -> list[StreamEvent]:
        buffered = [
            StreamEvent(Position(seq, delta), name, {"content": kept} if isinstance(kept, str) else kept)
            for seq, delta, name, kept in self._buffer
        ]
        if buffered and buffered[0].position <= after:
            return [e for e in buffered if e.position > after]
        stored = await self.log.store.read(self.session_id, SessionReadOptions(after_seq=after.seq))
        replay = [from_stored(e) for e in stored if Position(e.seq) > after]
        last = replay[-1].position if replay else after
        # Deltas of the turn in progress (not yet covered by a stored assistant message).
        replay += [e for e in buffered if e.event == "token" and e.position > last]
        return replay


_Buffered = tuple[int, int, str, str | dict[str, Any]]

_OUTCOMES: dict[type, str] = {TurnFinished: "done", TurnFailed: "error", TurnPaused: "paused"}


async def tell_session_ended(listeners: list[SessionEndListener], session_id: str, reason: str) -> None:
    """Tell every listener that `session_id` ended; one that fails is logged, the others still told."""
    for listener in list(listeners):
        try:
            await listener(session_id, reason)
        except Exception:
            log.exception("session %s: a listener of its end failed", session_id)


def _failure_code(error: DuragentError) -> str:
    """The `code` of the `error` event of a turn that failed with `error`."""
    if isinstance(error, ConfigError):
        return "config_error"
    if isinstance(error, StaleLog):
        return "conflict"  # another worker has the session (StaleLog says what to do)
    if isinstance(error, StorageUnavailable):
        return "storage"  # the data directory is full, read-only or not ours: a 503, not a bug
    return "error"


async def collect_turn(subscription: Subscription) -> AsyncIterator[StreamEvent]:
    """Events of one turn from a subscription, ending after done/error/cancelled or a pause."""
    async for event in subscription:
        yield event
        if event.event in ("done", "error", "cancelled"):
            return
        if event.event == "status" and event.data.get("to") == "paused":
            return
