"""SessionManager: the live sessions of one process — create, load lazily, recover, unload.

Sessions on disk are many; live ones (an actor each) are those in use. A session is loaded
on first use and unloaded after `idle_ttl` without subscribers or turns. At start, sessions
that were mid-turn when the process died are recovered: continue-mode ones resume their
turn from the last durable step, pause-mode ones come back paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from duragent.agents.loader import Agent, session_settings
from duragent.config import DuragentConfig
from duragent.errors import NotFound, UsageError
from duragent.ids import check_name, new_id
from duragent.runtime.loop import Runtime, calls_awaiting_approval, close_open_tool_calls
from duragent.sessions.live import (
    RESTART_PAUSE_REASON,
    SHUTDOWN_PAUSE_REASON,
    EventFeed,
    LiveSession,
    LiveSettings,
    ServerClosing,
    SessionEndListener,
    TurnEndHook,
    tell_session_ended,
)
from duragent.sessions.log import WRITTEN_ELSEWHERE, SessionLog
from duragent.sessions.stream import Position, StreamEvent
from duragent.stores.base import (
    ListKey,
    SessionNotFound,
    SessionStatus,
    SessionStore,
    SessionSummary,
    agents_context,
    list_key,
)

log = logging.getLogger(__name__)

#: How often a session being handed over is checked while its turn runs (turn_finished wakes it first).
_HANDOVER_POLL = 0.25
RESTART_INTERRUPTED = "interrupted by restart: the server stopped before this tool call finished"


@dataclass(frozen=True)
class RecoveryReport:
    """What `recover()` did at start."""

    resumed: tuple[str, ...] = ()
    paused: tuple[str, ...] = ()


class SessionOwner(Protocol):
    """Who may run a session when several workers share one store (duragent.cluster.ownership)."""

    #: True once the connection holding the locks dropped: other workers take the sessions over.
    lost: bool

    def owns(self, session_id: str) -> bool:
        """True while this worker owns the session."""

    def term(self, session_id: str) -> int | None:
        """Which taking of the session this worker holds now (None: it does not own it)."""

    async def claim(self, session_id: str, *, ask_owner: bool = True) -> None:
        """Own the session, or raise SessionLocked when another worker keeps it (asked to let it
        go first, and waited for a moment, unless `ask_owner` is False)."""

    async def release(self, session_id: str, *, to_adopt: bool = False) -> None:
        """Let the session go (with `to_adopt`, for another worker to take up what it left)."""

    async def back(self, *, within: float) -> bool:
        """True once this worker can own sessions again (at once unless `lost`); False when it
        is still reconnecting after `within` seconds."""


#: Publishes a session's events to other workers: (session id, event).
EventPublisher = Callable[[str, StreamEvent], None]
#: Follows a session wherever it runs: (session id, replay after) -> a feed of its events.
RemoteFollower = Callable[[str, Position | None], Awaitable[EventFeed]]


class SessionManager:
    """Owns every LiveSession of the process.

    With `ownership` (stateless workers), a session is loaded only once this worker owns it and
    released when unloaded; `publish` sends every event to other workers and `follow_remote`
    serves `follow` from wherever the session runs.
    """

    def __init__(
        self,
        store: SessionStore,
        runtime: Runtime,
        config: DuragentConfig,
        agent_for: Callable[[str], Agent],
        *,
        idle_ttl: timedelta = timedelta(minutes=30),
        on_turn_end: TurnEndHook | None = None,
        ownership: SessionOwner | None = None,
        publish: EventPublisher | None = None,
        follow_remote: RemoteFollower | None = None,
        newest_agent: Callable[[str], Awaitable[Agent | None]] | None = None,
    ):
        """`newest_agent(name)`: the definition the server serves now, if loaded (an edit the
        watcher saw is read first): a loaded session's next turn takes it, so an edit applies to
        open conversations too."""
        self.store = store
        self.newest_agent = newest_agent
        self.ownership = ownership
        self._publish = publish
        self._follow_remote = follow_remote
        self.on_turn_end = on_turn_end
        self.runtime = runtime
        self.config = config
        self.agent_for = agent_for
        self.idle_ttl = idle_ttl
        self._live: dict[str, LiveSession] = {}
        self._loading: dict[str, asyncio.Future[LiveSession]] = {}
        #: Sessions being unloaded (closed, released): a `get` waits for that to finish, so a
        #: reload never reads a log still being closed or claims what is about to be released.
        self._unloading: dict[str, asyncio.Future[None]] = {}
        self._idle_since: dict[str, float] = {}
        self._closing = False
        #: While the process stops: each live session's stop (its turn's grace, then letting it go).
        self._stopping: dict[str, asyncio.Task[None]] = {}
        #: Stale copies being replaced (`_reload`): referenced until done.
        self._reloading: set[asyncio.Task[None]] = set()
        #: Told (session id, why) when a session ends or is deleted, loaded or not (the server's
        #: process manager stops the session's background processes).
        self.end_listeners: list[SessionEndListener] = []

    @property
    def live(self) -> Mapping[str, LiveSession]:
        """Loaded sessions by id."""
        return self._live

    @property
    def closing(self) -> bool:
        """True once the process stops (`close`): no session is loaded or handed over any more."""
        return self._closing

    def settings_for(self, agent: Agent, on_disconnect: str | None = None) -> LiveSettings:
        """The agent's session settings over duragent.yaml's, with an explicit override."""
        resolved = session_settings(agent, self.config)
        return LiveSettings(
            on_disconnect=on_disconnect or resolved["on_disconnect"].value,
            max_background_runtime=resolved["max_background_runtime"].value,
            output_buffer_size=resolved["output_buffer_size"].value,
        )

    async def create(
        self,
        agent_name: str,
        *,
        on_disconnect: str | None = None,
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> LiveSession:
        """A new session of `agent_name` (AgentNotFound when there is no such agent).

        `session_id` names it (checked like any id: InvalidName); by default a new id is made.
        """
        self._refuse_when_closing()
        if session_id is not None:
            check_name(session_id, "session id")
        if on_disconnect not in (None, "continue", "pause"):
            raise UsageError(f"on_disconnect must be 'continue' or 'pause', got {on_disconnect!r}")
        agent = await self._agent(agent_name)
        settings = self.settings_for(agent, on_disconnect)
        session_id = session_id or new_id("s")
        if self.ownership is not None:
            # owned before it is stored: a worker that cannot own it (its lock connection gone)
            # refuses without leaving a session behind
            await self.ownership.claim(session_id)
        try:
            session_log = await SessionLog.create(
                self.store,
                agent=agent.name,
                on_disconnect=settings.on_disconnect,
                metadata=metadata,
                session_id=session_id,
                snapshot_every=self.config.session.snapshot_every,
            )
        except BaseException:
            await self._release(session_id)
            raise
        live = self._wired(
            LiveSession(session_log, agent, self.runtime, settings, on_turn_end=self.on_turn_end)
        )
        self._live[live.session_id] = live
        return live

    async def get_or_create(
        self, session_id: str, agent_name: str, *, metadata: dict[str, Any] | None = None
    ) -> LiveSession:
        """The session named `session_id`, made for `agent_name` when there is none yet.

        A client may name its sessions itself (an OpenAI `user`, a chat id); the name is checked
        like any id (InvalidName).
        """
        check_name(session_id, "session id")
        try:
            return await self.get(session_id)
        except SessionNotFound:
            pass
        # Two requests naming a session nobody made yet (a chat UI's first message and its
        # request for the chat's title, sent at once) must not both make it: the second copy
        # would fail the first one's turn as written elsewhere. The one making it is a load in
        # progress for everyone else (`get` waits for those).
        making = self._loading.get(session_id)
        if making is not None:
            return await asyncio.shield(making)
        future: asyncio.Future[LiveSession] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = future
        try:
            live = await self.create(agent_name, metadata=metadata, session_id=session_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so a creation nobody else awaited does not warn
            raise
        finally:
            self._loading.pop(session_id, None)
        future.set_result(live)
        return live

    def stateless(self, agent_name: str, history: Sequence[dict[str, Any]]) -> LiveSession:
        """A session of `agent_name` that starts with `history` and is stored nowhere (one request's).

        Not among `live`: the caller runs its turn and closes it (see `duragent.sessions.stateless`).
        """
        from duragent.sessions.stateless import InMemorySessionStore, stateless_log

        self._refuse_when_closing()
        agent = self.agent_for(agent_name)  # found by the caller just before (in a thread)
        session_log = stateless_log(InMemorySessionStore(), agent.name, history)
        return LiveSession(
            session_log,
            agent,
            self.runtime,
            self.settings_for(agent, "continue"),
            on_turn_end=self.on_turn_end,
        )

    async def get(self, session_id: str, *, ask_owner: bool = True) -> LiveSession:
        """The live session, loading it from the store on first use (SessionNotFound if absent).

        With workers sharing the store, the session is loaded once this worker owns it: its owner
        is asked to let it go, and waited for a moment (not asked with `ask_owner` False);
        SessionLocked if it keeps it.
        """
        while (unloading := self._unloading.get(session_id)) is not None:
            await asyncio.shield(unloading)
        live = self._live.get(session_id)
        if live is not None and not self._may_run(live):
            # This copy is out of date: the worker let the session go (or lost its lock, and
            # `claim` below says so), or another worker wrote to it since. Serving it would run
            # turns on two workers, or fail every one with a conflict: it is loaded again.
            await self._drop(session_id, live)
            return await self.get(session_id, ask_owner=ask_owner)
        if live is not None:
            self._idle_since.pop(session_id, None)
            return live
        self._refuse_when_closing()
        loading = self._loading.get(session_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[LiveSession] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = future
        try:
            live = await self._load(session_id, ask_owner)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so a load nobody else awaited does not warn
            raise
        finally:
            self._loading.pop(session_id, None)
        future.set_result(live)
        self._live[session_id] = live
        return live

    async def _load(self, session_id: str, ask_owner: bool = True) -> LiveSession:
        if self.ownership is not None:
            await self.ownership.claim(session_id, ask_owner=ask_owner)
        try:
            session_log = await SessionLog.open(
                self.store, session_id, snapshot_every=self.config.session.snapshot_every
            )
            agent = await self._agent(session_log.state.agent)
        except BaseException:
            await self._release(session_id)
            raise
        settings = self.settings_for(agent, session_log.state.on_disconnect)
        live = self._wired(
            LiveSession(session_log, agent, self.runtime, settings, on_turn_end=self.on_turn_end)
        )
        try:
            await live.restore_pause_reason()
        except BaseException:
            await self._release(session_id)
            raise
        # Messages acknowledged as queued but never started wait again, in order, for `resume()`.
        live.requeue_stored()
        return live

    def _wired(self, live: LiveSession) -> LiveSession:
        if self._publish is not None:
            live.publishers.append(self._publish)
        ownership, session_id = self.ownership, live.session_id
        if ownership is not None:
            # Loaded under this taking of the lock: once the worker let it go (even if it took it
            # again since, another worker may have written meanwhile), nothing is written from it.
            term = ownership.term(session_id)
            live.log.owned = lambda: term is not None and ownership.term(session_id) == term
        live.on_stale = self._reload_later
        live.end_listeners = self.end_listeners
        live.newest_agent = self.newest_agent
        return live

    def _may_run(self, live: LiveSession) -> bool:
        """True unless `live` is a stale copy (the worker let the session go since it was loaded,
        or another worker wrote to it)."""
        if live.log.stale is not None:
            return False
        return live.log.owned is None or live.log.owned()

    def _reload_later(self, stale: LiveSession) -> None:
        # The reload is the server's, whatever write found the copy stale (a person's resume):
        # what its recovery writes is committed as the agent's.
        task = asyncio.get_running_loop().create_task(
            self._reload(stale), name=f"reload {stale.session_id}", context=agents_context()
        )
        self._reloading.add(task)
        task.add_done_callback(self._reloading.discard)

    async def _reload(self, stale: LiveSession) -> None:
        """Drop a stale copy. One that fell behind the log while this worker held the session all
        along is replaced at once by the session as stored, and what it left is taken up as a
        failover does (a turn left unfinished resumes, queued messages run). Any other is loaded
        again when next asked for (its new owner, or the failover scan, takes up what it left)."""
        session_id = stale.session_id
        if self._live.get(session_id) is stale:  # (else `get` has dropped it already)
            await self._drop(session_id, stale)
        held_all_along = stale.log.owned is None or stale.log.owned()
        if stale.log.stale != WRITTEN_ELSEWHERE or not held_all_along or self._closing:
            return
        try:
            if (await self.get(session_id)).busy:
                return  # a request got there first: its turn takes up what was left
            outcome = await self.recover_session(session_id)
        except Exception:
            # Loaded again on its next use; a turn left unfinished waits for `resume` meanwhile.
            log.exception("session %s could not be loaded again from the store", session_id)
            return
        log.info("session %s loaded again from the store (%s)", session_id, outcome or "idle")

    async def _drop(self, session_id: str, stale: LiveSession) -> None:
        """Close a stale copy without writing anything; ownership is left as it is."""
        async with self._going(session_id):
            if self._live.get(session_id) is stale:
                del self._live[session_id]
                self._idle_since.pop(session_id, None)
            await stale.close(grace=0)

    async def _release(self, session_id: str, *, to_adopt: bool = False) -> None:
        if self.ownership is not None:
            await self.ownership.release(session_id, to_adopt=to_adopt)

    async def follow(
        self, session_id: str, after: Position | None = None, *, client: str | None = None
    ) -> EventFeed:
        """A session's events from `after` on (None: only new ones), wherever the session runs
        (`client`: which client follows, if it says: `LiveSession.clients`)."""
        if self._follow_remote is not None:
            return await self._follow_remote(session_id, after)
        live = await self.get(session_id)
        return await live.subscribe(after, client=client)

    async def release_if_idle(self, session_id: str, wait: float = 0.0) -> bool:
        """Unload a session no turn is using (another worker asked for it); True when released.

        With `wait`, a session busy now is handed over as soon as its turn ends, if that is
        within `wait` seconds: the worker asking waits that long for it. A paused session whose
        waiting messages are all recorded (`message_queued`) is handed over too: its next owner
        queues them again on load.
        """
        deadline = time.monotonic() + wait
        while True:
            if self._closing:
                return False  # (the stop lets each session go once its turn is over: `close`)
            live = self._live.get(session_id)
            if live is None:
                if session_id in self._loading:
                    return False
                await self._release(session_id)
                return True
            if live.can_hand_over and session_id not in self._loading:
                await self._unload(session_id, live)
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.turn_finished.wait(), min(remaining, _HANDOVER_POLL))
            await asyncio.sleep(0)  # let the turn's own cleanup (and any next turn's start) run

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        after: ListKey | None = None,
    ) -> list[SessionSummary]:
        """Stored sessions (not only live ones) in `ListKey` order, from after `after` on.

        A live session's status is newer than its last snapshot: it is the one shown and filtered
        on, and a stored page that loses sessions to it is topped up from the store.
        """
        chosen: list[SessionSummary] = []
        while True:
            want = None if limit is None else max(limit - len(chosen), 0)
            stored = await self.store.list(agent=agent, status=status, limit=want, after=after)
            merged = [
                s if s.session_id not in self._live else _with_status(s, self._live[s.session_id].status)
                for s in stored
            ]
            chosen += [s for s in merged if status is None or s.status == status]
            if want is None or len(stored) < want or len(chosen) == limit:
                return chosen
            after = list_key(stored[-1])

    async def delete(self, session_id: str) -> None:
        """Stop and forget a session, and remove its files."""
        async with self._going(session_id):
            live = self._live.pop(session_id, None)
            if live is not None and not self._may_run(live):
                await live.close(grace=0)  # a stale copy (it writes nothing): deleted as stored below
                live = None
            if live is not None:
                await live.end("deleted")  # (which tells `end_listeners`)
                await live.close(grace=0)
            elif self.ownership is not None:
                # Not running here: make sure no other worker runs it while it is deleted.
                await self.ownership.claim(session_id)
            try:
                await self.store.delete(session_id)
            finally:
                await self._release(session_id)
            if live is None:
                # Not loaded (unloaded while idle, say), its background processes may still run.
                await tell_session_ended(self.end_listeners, session_id, "deleted")

    async def _agent(self, name: str) -> Agent:
        """`agent_for(name)` in a thread: a cache miss reads and parses the agent's files."""
        return await asyncio.to_thread(self.agent_for, name)

    async def recover(self) -> RecoveryReport:
        """Bring back sessions a crash left mid-turn (call once at start)."""
        resumed: list[str] = []
        paused: list[str] = []
        for summary in await self.store.list():
            if summary.status == "ended":
                continue
            try:
                outcome = await self.recover_session(summary.session_id)
            except NotFound as gone:
                # its agent was removed (or renamed): a line each start, not a traceback
                log.warning("session %s is not recovered: %s", summary.session_id, gone)
                continue
            except Exception:
                # One unreadable session or a removed agent must not stop the server starting.
                log.exception("session %s could not be recovered", summary.session_id)
                continue
            if outcome == "resumed":
                resumed.append(summary.session_id)
            elif outcome == "paused":
                paused.append(summary.session_id)
        if resumed or paused:
            log.info("recovered sessions: %d resumed, %d paused", len(resumed), len(paused))
        return RecoveryReport(tuple(resumed), tuple(paused))

    async def recover_session(self, session_id: str) -> str | None:
        """Load one session a crash may have left mid-turn: "resumed", "paused", or None (nothing to do)."""
        live = await self.get(session_id)
        if live.busy:
            return None  # a request got there first: its turn takes up what was left
        if live.log.state.turn_closed_by is not None and not live.queued:
            # The last turn ended in an error (or was cancelled) and was reported so: it is over,
            # never run again. Only a crash between its end and the status change leaves `running`.
            if live.status == "running":
                await live._set_status("active", "server restarted")
            return None
        asking = bool(calls_awaiting_approval(live.log))
        # A call waiting for a person never ran: it stays open and is asked again below.
        closed = 0 if asking else await close_open_tool_calls(live.log, RESTART_INTERRUPTED)
        continuing = live.settings.on_disconnect == "continue"
        # A graceful stop pauses running turns; continue-mode sessions pick them up again now.
        stopped_by_shutdown = live.status == "paused" and live.pause_reason == SHUTDOWN_PAUSE_REASON
        if not (closed or asking or live.unfinished_turn or live.queued or stopped_by_shutdown):
            # Nothing to run. A crash after a turn's last event but before its status change
            # leaves `running`: the session is idle, say so (else it shows running forever).
            if live.status == "running":
                await live._set_status("active", "server restarted")
            return None
        if asking or (continuing and (live.status != "paused" or stopped_by_shutdown)):
            await live.resume()
            return "resumed"
        await live._set_status("paused", RESTART_PAUSE_REASON)  # (a client attaching resumes it)
        return "paused"

    async def unload_idle(self, now: float) -> list[str]:
        """Unload sessions idle (no turn, no subscriber) for longer than `idle_ttl`."""
        unloaded: list[str] = []
        if self._closing:
            return unloaded  # (the stop closes them)
        for session_id, live in list(self._live.items()):
            # A paused session with no turn running is safe to unload: everything is in its log.
            if live.busy or live.attached or live.queued:
                self._idle_since.pop(session_id, None)
                continue
            since = self._idle_since.setdefault(session_id, now)
            if now - since >= self.idle_ttl.total_seconds():
                await self._unload(session_id, live)
                unloaded.append(session_id)
        return unloaded

    async def _unload(self, session_id: str, live: LiveSession) -> None:
        """Close a live session and give up its ownership; `get` waits until this is done."""
        async with self._going(session_id):
            self._live.pop(session_id, None)
            self._idle_since.pop(session_id, None)
            await live.close(grace=0)
            await self._release(session_id)

    @contextlib.asynccontextmanager
    async def _going(self, session_id: str) -> AsyncIterator[None]:
        """While a session is unloaded or deleted, `get` for it waits."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self._unloading.get(session_id)
        self._unloading[session_id] = done
        try:
            if previous is not None:
                await asyncio.shield(previous)
            yield
        finally:
            if self._unloading.get(session_id) is done:
                del self._unloading[session_id]
            done.set_result(None)

    async def close(self, grace: float = 10.0) -> None:
        """Stop taking work, let running turns reach a safe point within `grace`, snapshot everything.

        Each session stays loaded, and owned, until its turn is over (ended, or paused when `grace`
        runs out): a cancel reaches it meanwhile, and no other worker takes it over in the middle
        of its turn. It is let go then, without waiting for the other sessions' turns.
        """
        self._closing = True
        if self._reloading:
            await asyncio.gather(*self._reloading, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for session_id, live in list(self._live.items()):
            if session_id not in self._stopping:
                self._stopping[session_id] = loop.create_task(
                    self._stop(session_id, live, grace), name=f"stop {session_id}"
                )
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)

    async def _stop(self, session_id: str, live: LiveSession, grace: float) -> None:
        """Close one session as the process stops, then let it go: to another worker, which takes
        up what is left (a turn the grace cut off, messages queued behind the turn), as the next
        start does on one server."""
        try:
            await live.close(grace)
        except Exception as error:
            log.error("session %s did not close cleanly: %s", session_id, error)
        finally:
            if self._live.get(session_id) is live:
                del self._live[session_id]
            self._idle_since.pop(session_id, None)
            await self._release(session_id, to_adopt=_work_left(live))

    async def let_go(self, session_id: str) -> None:
        """Once the process stops: wait until it has let the session go (at once when it is not
        stopping it, it never had it, or it has let it go already)."""
        stopping = self._stopping.get(session_id)
        if stopping is not None:
            await asyncio.wait({stopping})

    def _refuse_when_closing(self) -> None:
        if self._closing:
            raise ServerClosing("the server is shutting down")


def _work_left(live: LiveSession) -> bool:
    """True when a session let go has something left to run: a turn stopped midway, or messages
    recorded as queued (a copy that may not write any more leaves nothing of its own)."""
    if live.log.stale is not None or live.status == "ended":
        return False
    return bool(live.log.state.queued) or live.unfinished_turn


def _with_status(summary: SessionSummary, status: SessionStatus) -> SessionSummary:
    return replace(summary, status=status)
