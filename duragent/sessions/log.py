"""SessionLog: appends a live session's events (durably, in order) and keeps its state current.

The one writer of a session: it assigns seq numbers, stamps ids and times, folds each event
into the `SessionState`, and writes the `state.yaml` snapshot every `snapshot_every` events.
That periodic snapshot is written in the background: it is a cache of events already durable
in the log, so no append (and no turn) waits for it. A snapshot rewrites the whole
conversation, so in a long session it is written less often (`snapshot_interval`): what
snapshots cost per event stays the same as the session grows, where a fixed interval would
make it grow with the conversation. A due snapshot waits until the session has been quiet for
`SNAPSHOT_QUIET` (between turns, not during the next one, which would share the CPU and the
disk with it), unless events keep coming until `SNAPSHOT_OVERDUE` intervals are due.

A turn's user message is appended with `append_unsynced`: written at once, fsynced in a worker
thread while the turn builds and sends its model request. The state has the event at once; the
listeners (every client) hear of it only once it is durable, and the next append (the reply, a
tool call) waits for that first, so nothing is acknowledged or acted on before it is on disk.

In a cluster (workers sharing PostgreSQL) a log is one worker's copy of the session. It asks
`owned` before every write, and a write the store refuses as a SequenceConflict (another worker
wrote first) tells it the copy is behind. Either way the copy is *stale*: it writes nothing more
(StaleLog), and its live session has the session loaded again from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from duragent.ids import new_id
from duragent.sessions.state import SessionState, resume
from duragent.stores.base import (
    SequenceConflict,
    SessionEvent,
    SessionLocked,
    SessionStore,
    agents_context,
    utcnow,
)

log = logging.getLogger(__name__)

#: A long session's snapshot interval, in events: its conversation's length over this...
SNAPSHOT_SPACING = 4
#: ...but never more than this many events.
MAX_SNAPSHOT_INTERVAL = 1000
#: Seconds without a new event before a due snapshot is written...
SNAPSHOT_QUIET = 0.05
#: ...unless this many intervals of events are due. (The interval grows with the conversation,
#: so a session whose events never pause is snapshotted each time its conversation has doubled,
#: at most every 2,000 events: what a crash may leave to replay.)
SNAPSHOT_OVERDUE = 2


class StaleLog(SessionLocked):
    """This copy of a session may not be written any more: this worker let the session go since
    the copy was loaded, or another worker wrote to it. Nothing was written; the session is loaded
    again from the store before it runs here again."""

    def __init__(self, session_id: str, why: str):
        super().__init__(
            f"session {session_id} {why}; nothing more was stored here (a message whose turn had "
            "started was, and its turn goes on where the session runs now): read the session "
            "before sending again"
        )
        self.session_id = session_id


#: Why a copy is stale, as StaleLog says it.
RUN_ELSEWHERE = "is run by another worker now"
WRITTEN_ELSEWHERE = "changed on another worker since this worker loaded it (it is loaded again)"


def snapshot_interval(snapshot_every: int, conversation_length: int) -> int:
    """Events between periodic snapshots: `snapshot_every`, or in a long session a quarter of its
    conversation's length (at most `MAX_SNAPSHOT_INTERVAL`, and never below `snapshot_every`)."""
    spaced = min(conversation_length // SNAPSHOT_SPACING, MAX_SNAPSHOT_INTERVAL)
    return max(snapshot_every, spaced)


@dataclass
class _Unsynced:
    """A batch written but maybe not durable yet: its events and the store's future of its fsync."""

    events: list[SessionEvent]
    synced: asyncio.Future[None]


class SessionLog:
    """The append side of one session; not safe for two writers (the store's lock enforces it)."""

    def __init__(self, store: SessionStore, state: SessionState, *, snapshot_every: int = 20):
        self.store = store
        self.state = state
        self.snapshot_every = snapshot_every
        self._since_snapshot = 0
        #: The periodic snapshot being written, if any (one at a time, in seq order).
        self._snapshotting: asyncio.Task[None] | None = None
        #: Armed while a periodic snapshot is due and waits for the session to be quiet.
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._last_event_at = 0.0
        # Seqs are numbered before the store's write awaits: two tasks appending at once (the turn,
        # a status change, a queued message) must take turns or both would claim the same seq.
        self._append_lock = asyncio.Lock()
        #: Called with each durable batch, in order (the live session publishes from here).
        self.listeners: list[Callable[[list[SessionEvent]], None]] = []
        #: The batch `append_unsynced` wrote, until it is durable and its listeners told.
        self._unsynced: _Unsynced | None = None
        #: Asked before every write: False once this worker let the session go since this copy was
        #: loaded (another worker may run it, or have written to it). None: always ours.
        self.owned: Callable[[], bool] | None = None
        #: Why this copy may not be written any more (RUN_ELSEWHERE, WRITTEN_ELSEWHERE), or None.
        self.stale: str | None = None
        #: Called once, when the copy becomes stale.
        self.on_stale: Callable[[], None] | None = None

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self.state.session_id

    @property
    def durable_seq(self) -> int:
        """The seq of the last event known to be durable (the state may hold an unsynced one after it)."""
        pending = self._unsynced
        return self.state.last_seq if pending is None else pending.events[0].seq - 1

    @classmethod
    async def create(
        cls,
        store: SessionStore,
        *,
        agent: str,
        on_disconnect: str = "continue",
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
        snapshot_every: int = 20,
    ) -> SessionLog:
        """Start a new session: its `session_start` event is durable when this returns."""
        state = SessionState(session_id=session_id or new_id("s"))
        log = cls(store, state, snapshot_every=snapshot_every)
        await log.append(
            "session_start", {"agent": agent, "on_disconnect": on_disconnect, "metadata": metadata or {}}
        )
        await log.snapshot()
        return log

    @classmethod
    async def open(cls, store: SessionStore, session_id: str, *, snapshot_every: int = 20) -> SessionLog:
        """Resume an existing session from its snapshot and the events after it."""
        return cls(store, await resume(store, session_id), snapshot_every=snapshot_every)

    async def append(self, type: str, payload: dict[str, Any] | None = None) -> SessionEvent:
        """Append one event; durable when this returns."""
        (event,) = await self._append(((type, payload or {}),), unsynced=False)
        return event

    async def append_unsynced(self, type: str, payload: dict[str, Any] | None = None) -> SessionEvent:
        """Append one event and return once it is written, while its fsync goes on in a thread.

        The state has it at once. Listeners hear of it once it is durable, and the next append,
        `synced` or `snapshot` waits for that first: nothing may be acknowledged or acted on
        before. If it cannot be made durable, the store cuts it off the log, the state is
        rebuilt without it, and the next of those raises the error.
        """
        (event,) = await self._append(((type, payload or {}),), unsynced=True)
        return event

    async def synced(self) -> None:
        """Wait until every event appended is durable and its listeners told (see `append_unsynced`)."""
        pending = self._unsynced
        if pending is None:
            return
        # Waited for outside the append lock, so an append can wait for it too (one that fails is
        # reported to every caller that waited for it, the state rolled back once).
        await _until_durable(pending.synced)
        if not self._told_if_durable(pending):
            async with self._append_lock:
                await self._settle(pending)

    async def append_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[SessionEvent]:
        """Append events as one batch (one fsync); durable when this returns."""
        return await self._append(items, unsynced=False)

    def check_writable(self) -> None:
        """Raise StaleLog when this copy of the session may not be written (see the module docstring)."""
        if self.stale is None and self.owned is not None and not self.owned():
            self._become_stale(RUN_ELSEWHERE)
        if self.stale is not None:
            raise StaleLog(self.session_id, self.stale)

    def _writable(self) -> bool:
        try:
            self.check_writable()
        except StaleLog:
            return False
        return True

    def _become_stale(self, why: str) -> None:
        if self.stale is not None:
            return
        self.stale = why
        log.warning("session %s %s: this worker's copy of it writes nothing more", self.session_id, why)
        if self.on_stale is not None:
            self.on_stale()

    async def _append(
        self, items: Sequence[tuple[str, dict[str, Any]]], *, unsynced: bool
    ) -> list[SessionEvent]:
        async with self._append_lock:
            if self._unsynced is not None:
                await self._settle(self._unsynced)
            self.check_writable()
            try:
                events = await self._write(items, unsynced)
            except SequenceConflict as conflict:
                # Another worker stored these seqs: nothing of this batch is in the log, and every
                # later append from this copy would conflict too.
                self._become_stale(WRITTEN_ELSEWHERE)
                raise StaleLog(self.session_id, WRITTEN_ELSEWHERE) from conflict
        self._since_snapshot += len(events)
        self._last_event_at = time.monotonic()
        if self._unsynced is None:
            self._snapshot_when_due()
        return events

    async def _write(self, items: Sequence[tuple[str, dict[str, Any]]], unsynced: bool) -> list[SessionEvent]:
        """Under the append lock: number the batch, store it and apply it to the state."""
        now = utcnow()
        first = self.state.last_seq + 1
        events = [
            SessionEvent(seq=first + i, id=new_id("ev"), ts=now, type=type, payload=payload)
            for i, (type, payload) in enumerate(items)
        ]
        # Once the store may have written the batch, the state and listeners must follow it even
        # if the caller is cancelled (a cancelled turn): otherwise the next seq would repeat one
        # already on disk and every later append would be a SequenceConflict. An append that
        # does not wait (the usual one: fsync on the event loop) cannot be cancelled midway and
        # needs no task of its own; one that waits goes on in a task the caller cannot cancel.
        write = run_until_it_waits(self._store_and_apply(events, unsynced))
        if write is not None:
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                while not write.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({write})
                if not write.cancelled():
                    write.exception()  # retrieved: the cancellation is what the caller hears about
                raise
        return events

    async def _store_and_apply(self, events: list[SessionEvent], unsynced: bool) -> None:
        if unsynced:
            synced = await self.store.append_unsynced(self.session_id, events)
        else:
            await self.store.append(self.session_id, events)
        for event in events:
            self.state.apply(event)
        if not unsynced or (synced.done() and synced.exception() is None):
            self._tell(events)
            return
        pending = self._unsynced = _Unsynced(events, synced)
        # Clients hear of the batch as soon as it is durable, whoever waits for it.
        synced.add_done_callback(lambda _: self._told_if_durable(pending))

    def _tell(self, events: list[SessionEvent]) -> None:
        for listener in self.listeners:
            listener(events)

    def _told_if_durable(self, pending: _Unsynced) -> bool:
        """Tell the listeners of an unsynced batch (once) if it is durable; False if its fsync failed."""
        if pending.synced.exception() is not None:
            return False
        if self._unsynced is pending:
            self._unsynced = None
            self._tell(pending.events)
            self._snapshot_when_due()
        return True

    async def _settle(self, pending: _Unsynced) -> None:
        """Under the append lock: wait for `pending`; if it could not be made durable, roll the
        state back (once) and raise its error."""
        await _until_durable(pending.synced)
        if self._told_if_durable(pending):
            return
        error = pending.synced.exception()
        assert error is not None
        if self._unsynced is pending:
            log.error(
                "session %s: event %d (%s) could not be made durable (%s); it is not in the log",
                self.session_id,
                pending.events[0].seq,
                pending.events[0].type,
                error,
            )
            # The store cut the batch off: the state is rebuilt from what the log holds.
            _replace_state(self.state, await resume(self.store, self.session_id))
            self._unsynced = None
        raise error

    async def snapshot(self) -> None:
        """Write state.yaml now, after any periodic snapshot still being written; done when this returns.

        (The periodic snapshot waiting for a quiet moment is not written: this one holds its events.)
        A stale copy writes none: what it holds is in the log already, or is not the session's.
        """
        await self.synced()
        if not self._writable():
            return
        self._since_snapshot = 0  # (so settling does not start one: the one below holds its events)
        await self.settle()
        self._cancel_quiet_timer()
        self._since_snapshot = 0
        await self.store.save_snapshot(self.state.to_snapshot())

    async def settle(self) -> None:
        """Wait for the periodic snapshot being written, if any, and write one that waits for a
        quiet moment now (a failure is logged, not raised)."""
        while True:
            self._cancel_quiet_timer()
            writing = self._snapshotting
            if writing is not None and not writing.done():
                await asyncio.wait({writing})  # (its end may find another one due: looked at again)
            elif self._unsynced is None and self._snapshot_due():
                self._snapshot_in_background()
            else:
                return

    def _snapshot_due(self) -> bool:
        return self._since_snapshot >= snapshot_interval(self.snapshot_every, len(self.state.conversation))

    def _snapshot_when_due(self) -> None:
        """Start the periodic snapshot if it is due and the session quiet (or it is overdue);
        else, if due, look again once the session may have been quiet long enough."""
        interval = snapshot_interval(self.snapshot_every, len(self.state.conversation))
        if self._since_snapshot < interval:
            return
        if self._since_snapshot >= SNAPSHOT_OVERDUE * interval:
            self._cancel_quiet_timer()
            self._snapshot_in_background()
        elif self._quiet_timer is None:
            # (the agent's, also when a person's append made it due: a snapshot holds the agent's state)
            self._quiet_timer = asyncio.get_running_loop().call_later(
                SNAPSHOT_QUIET, self._when_quiet, context=agents_context()
            )

    def _when_quiet(self) -> None:
        self._quiet_timer = None
        if self._unsynced is not None:
            return  # a batch still fsyncing: once durable, it looks again
        quiet_for = time.monotonic() - self._last_event_at
        if quiet_for < SNAPSHOT_QUIET:
            wait = SNAPSHOT_QUIET - quiet_for
            self._quiet_timer = asyncio.get_running_loop().call_later(
                wait, self._when_quiet, context=agents_context()
            )
        elif self._snapshot_due():
            self._snapshot_in_background()

    def _cancel_quiet_timer(self) -> None:
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None

    def _snapshot_in_background(self) -> None:
        """Start writing the state as it is now; the count goes on while one is being written.

        A turn's append does not wait for state.yaml (a temp file, its YAML, two fsyncs and a
        rename: a few ms, once every `snapshot_interval` events): what it holds is already durable in
        the log, and resuming replays whatever it lacks.
        """
        if self._snapshotting is not None and not self._snapshotting.done():
            return
        self._since_snapshot = 0
        if not self._writable():
            return
        # committed as the agent's, also when a person's append (an approval answer) made it due
        context = agents_context()
        self._snapshotting = asyncio.get_running_loop().create_task(
            self.store.save_snapshot(self.state.to_snapshot()), context=context
        )
        self._snapshotting.add_done_callback(self._snapshot_written, context=context)

    def _snapshot_written(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning(
                "session %s: state.yaml not written (%s); it is written again after the next events",
                self.session_id,
                error,
            )
        else:
            self._snapshot_when_due()  # events enough for another came while it was written


async def _until_durable(synced: asyncio.Future[None]) -> None:
    """Wait for an unsynced batch's fsync to end (a cancelled waiter leaves it running)."""
    if not synced.done():
        await asyncio.wait({synced})


def _replace_state(state: SessionState, fresh: SessionState) -> None:
    """Make `state` what `fresh` is, in place (whoever holds the state sees the change)."""
    for item in dataclasses.fields(state):
        setattr(state, item.name, getattr(fresh, item.name))


def run_until_it_waits(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coroutine` here up to its first wait: None when it finished without one (its
    exception, if any, raised here), else a task that runs the rest.

    What Python 3.12's eager tasks do: a coroutine that completes at once costs no task, no
    trips through the event loop.
    """
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coroutine, waiting_on))


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """The rest of a coroutine stopped on `waiting_on`, driven as `yield from` would drive it."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:  # a cancellation of the task goes on to where the coroutine waits
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting_on = coroutine.send(sent)
        except StopIteration:
            return
