"""Cross-worker event delivery: the owner publishes through NOTIFY, any worker relays to its streams.

The worker that runs a session publishes every event its actor shows clients: a stored event as
`{"s": session id, "q": seq}` (the event itself is read from the events table by seq, so payload
size never matters), a token delta as `{"s", "q", "d": n, "t": text}` while it fits in a NOTIFY
payload (PostgreSQL's limit is 8000 bytes; a larger delta is sent without its text and skipped by
relays: the turn's `done` event carries the whole reply).

A `RelaySubscription` turns notifications back into the stream clients see on one worker, with the
same positions (`"12"`, `"12.3"`): it reads stored events from the table after the last position it
sent, so a notification that was missed (a reconnect, a burst) costs nothing but latency, and it
also polls the table every few seconds when nothing arrives. Events come out in position order,
each once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from duragent.sessions.stream import Position, StreamEvent, from_stored, token
from duragent.stores.base import SessionNotFound, SessionReadOptions, SessionStore

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

#: NOTIFY payloads must stay under 8000 bytes; keep a margin for the JSON around the text.
MAX_NOTIFY_BYTES = 7500
#: A relay with nothing to do reads the table this often anyway (missed notifications).
POLL_SECONDS = 3.0
#: A relay this far behind drops queued notices and catches up from the table instead.
NOTICE_QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class Notice:
    """One notification: an event of `session_id` at `position`; `text` for a token delta."""

    session_id: str
    position: Position
    text: str | None = None


def encode_notice(session_id: str, event: StreamEvent) -> str:
    """The NOTIFY payload for one event a session shows its clients."""
    record: dict[str, object] = {"s": session_id, "q": event.position.seq}
    if event.position.delta:
        record["d"] = event.position.delta
        record["t"] = str(event.data.get("content", ""))
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if len(payload.encode()) > MAX_NOTIFY_BYTES:
        record.pop("t")
        payload = json.dumps(record, separators=(",", ":"))
    return payload


def decode_notice(payload: str) -> Notice | None:
    """The notice in a NOTIFY payload, or None for one that is not ours."""
    try:
        record = json.loads(payload)
        text = record.get("t")
        return Notice(
            str(record["s"]),
            Position(int(record["q"]), int(record.get("d", 0))),
            text if isinstance(text, str) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring a malformed event notification: %.200s", payload)
        return None


class EventBus:
    """Publishes this worker's session events and hands other workers' events to local relays."""

    def __init__(self, pool: asyncpg.Pool, channel: str):
        self._pool = pool
        self.channel = channel
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None
        self._relays: dict[str, set[RelaySubscription]] = collections.defaultdict(set)

    def publish(self, session_id: str, event: StreamEvent) -> None:
        """Queue one event for NOTIFY (called by the session actor; never blocks it)."""
        self._outbox.put_nowait(encode_notice(session_id, event))
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_queued(), name="notify")

    async def _publish_queued(self) -> None:
        """Send queued payloads in order, a burst per round trip (one transaction keeps their order)."""
        import asyncpg

        while not self._outbox.empty():
            batch = [self._outbox.get_nowait() for _ in range(self._outbox.qsize())]
            try:
                await self._pool.executemany(
                    "SELECT pg_notify($1, $2)", [(self.channel, payload) for payload in batch]
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                # Relays read stored events from the table anyway; only token deltas are lost.
                log.warning("could not publish %d session event(s): %s", len(batch), error)

    def deliver(self, payload: str) -> None:
        """Hand a NOTIFY payload to the relays following its session (the LISTEN callback)."""
        notice = decode_notice(payload)
        if notice is None:
            return
        for relay in list(self._relays.get(notice.session_id, ())):
            relay.notify(notice)

    async def follow(self, store: SessionStore, session_id: str, after: Position | None) -> RelaySubscription:
        """Follow a session wherever it runs: replay stored events after `after`, then live ones.

        `after=None` starts at the newest stored event (only what happens from now on).
        SessionNotFound when there is no such session.
        """
        start = after if after is not None else Position(await store.last_seq(session_id))
        relay = RelaySubscription(self, store, session_id, start)
        # Registered before the first read, so nothing published meanwhile is missed.
        self._relays[session_id].add(relay)
        try:
            await relay.catch_up(missing_is_error=True)
        except BaseException:
            relay.close()
            raise
        return relay

    def _forget(self, relay: RelaySubscription) -> None:
        relays = self._relays.get(relay.session_id)
        if relays is not None:
            relays.discard(relay)
            if not relays:
                del self._relays[relay.session_id]

    @property
    def followers(self) -> int:
        """How many relays are open on this worker."""
        return sum(len(relays) for relays in self._relays.values())

    async def close(self) -> None:
        """Send what is queued, then close every relay."""
        if self._publisher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._publisher), 2.0)
        for relays in list(self._relays.values()):
            for relay in list(relays):
                relay.close()


class RelaySubscription:
    """A session's stream on a worker that may not run it; iterated like a LiveSession subscription."""

    def __init__(self, bus: EventBus, store: SessionStore, session_id: str, after: Position):
        self._bus = bus
        self._store = store
        self.session_id = session_id
        self._last = after
        self._notices: asyncio.Queue[Notice] = asyncio.Queue()
        self._overflowed = False
        self._out: collections.deque[StreamEvent] = collections.deque()
        self._closed = False
        self._last_read = time.monotonic()

    def notify(self, notice: Notice) -> None:
        """A notification about this session arrived (called from the LISTEN callback)."""
        if self._closed:
            return
        if self._notices.qsize() >= NOTICE_QUEUE_LIMIT:
            # Too far behind for deltas: the next read of the table brings the stored events.
            self._overflowed = True
            return
        self._notices.put_nowait(notice)

    @property
    def closed(self) -> bool:
        """True once closed and everything read was handed out."""
        return self._closed and not self._out

    def ready(self, limit: int | None = None) -> list[StreamEvent]:
        """Events available now without waiting."""
        count = len(self._out) if limit is None else min(limit, len(self._out))
        return [self._out.popleft() for _ in range(count)]

    async def next_within(self, seconds: float) -> StreamEvent | None:
        """The next event, or None when nothing arrived within `seconds` (or the relay is closed)."""
        if self._out:
            return self._out.popleft()
        if self._closed:
            return None
        try:
            first = await asyncio.wait_for(self._notices.get(), seconds)
        except TimeoutError:
            if self._overflowed or time.monotonic() - self._last_read >= POLL_SECONDS:
                await self._read_safely()
            return self._out.popleft() if self._out else None
        notices = [first] + [self._notices.get_nowait() for _ in range(self._notices.qsize())]
        await self._absorb(notices)
        return self._out.popleft() if self._out else None

    def __aiter__(self) -> RelaySubscription:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            event = await self.next_within(POLL_SECONDS)
            if event is not None:
                return event
            if self._closed:
                raise StopAsyncIteration

    def close(self) -> None:
        """Stop following."""
        if not self._closed:
            self._closed = True
            self._bus._forget(self)

    async def catch_up(self, *, upto: int | None = None, missing_is_error: bool = False) -> None:
        """Queue the stored events after the last position handed out (up to seq `upto`).

        Reading only up to the notice being handled keeps the token deltas that follow it in
        order: they sit between that event and the next stored one.
        """
        self._last_read = time.monotonic()
        self._overflowed = False
        limit = None if upto is None else upto - self._last.seq
        options = SessionReadOptions(after_seq=self._last.seq, limit=limit)
        try:
            stored = await self._store.read(self.session_id, options)
        except SessionNotFound:
            if missing_is_error:
                raise
            self.close()  # deleted while followed
            return
        for event in stored:
            shown = from_stored(event)
            if shown.position > self._last:
                self._out.append(shown)
                self._last = shown.position
            if event.type == "session_end":
                self.close()
                return

    async def _absorb(self, notices: list[Notice]) -> None:
        for notice in notices:
            if self._closed:
                return
            if notice.position.seq > self._last.seq:
                # A stored event is published only after it is committed, so the table has it.
                await self._read_safely(upto=notice.position.seq)
            if notice.position.delta and notice.text is not None and notice.position > self._last:
                self._out.append(token(notice.position.seq, notice.position.delta, notice.text))
                self._last = notice.position

    async def _read_safely(self, upto: int | None = None) -> None:
        import asyncpg

        try:
            await self.catch_up(upto=upto)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("session %s: reading events for a relay failed: %s", self.session_id, error)
