"""A message's turn run by another worker, streamed on this one (`POST …/stream` behind a load balancer).

The worker a streamed message reaches may not run its session: another worker keeps it while a
turn runs there. The message is then handed to that owner (duragent.cluster.requests, action
`stream`), which queues it, tells where its turn starts, and stays attached for the client until
the turn ends. This worker follows the session meanwhile (a relay registered before the message
was handed over, so no event is missed) and streams the events of that turn alone: a
`RemoteTurn` is the feed the SSE pump reads, with `accept` as its filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from duragent.sessions.live import EventFeed
from duragent.sessions.stream import STREAM_EVENTS, Position, StreamEvent, ends_turn

#: How long the turn's end, as the owner answered it, waits for the relay to bring it from the
#: events table first (the relay reads the table at least every 3 seconds).
END_GRACE = 5.0


class RemoteTurn:
    """The events of one message's turn on another worker: the session's relay from the turn's start
    (once the owner tells it) to its end."""

    def __init__(self, relay: EventFeed, after: Position):
        self._relay = relay
        #: Where the relay started: nothing of this turn comes before.
        self._after = after
        #: Done once the owner has queued the message (the stream may open).
        self.accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._known = asyncio.Event()
        self._start: Position | None = None
        self._cancelled = False
        #: Handed out instead of the relay: the owner stopped before the turn started.
        self._failure: StreamEvent | None = None
        #: The turn's end as the owner answered it, and when it did.
        self._end: StreamEvent | None = None
        self._end_at = 0.0
        self._over = False

    # --- what the owner tells -------------------------------------------------------------------

    def told(self, progress: dict[str, object]) -> None:
        """What the owner told so far (`OwnerRequests.ask`'s progress listener)."""
        if not self.accepted.done():
            self.accepted.set_result(None)
        start = progress.get("start")
        if isinstance(start, str) and self._start is None:
            self._start = Position.parse(start)
            self._known.set()
        elif progress.get("cancelled"):
            self._cancelled = True  # it never runs: the stream ends with the cancel of the turn ahead
            self._known.set()

    def fail(self, message: str) -> None:
        """The owner stopped serving before the turn started: the stream ends with an `error`."""
        if self._known.is_set():
            return
        position = Position(self._after.seq, self._after.delta + 1)
        self._failure = StreamEvent(position, "error", {"code": "unavailable", "message": message})
        self._known.set()

    def finish(self, end: StreamEvent | None) -> None:
        """The owner's answer came: the turn ended there with `end` (None: unknown)."""
        if end is None or self._end is not None:
            return
        self._end = end
        self._end_at = time.monotonic()

    # --- the stream -----------------------------------------------------------------------------

    def accept(self, event: StreamEvent) -> tuple[bool, bool]:
        """The SSE filter: (send it, the stream ends after it)."""
        if event is self._failure:
            self._over = True
            return True, True
        if self._cancelled:
            cancelled = event.event == "cancelled"
            self._over = cancelled
            return cancelled, cancelled
        if self._start is None or event.position < self._start:
            return False, False
        ends = ends_turn(event)
        self._over = self._over or ends
        return event.event in STREAM_EVENTS, ends

    @property
    def closed(self) -> bool:
        """True once the turn's end was handed out, or the relay closed with nothing left to give."""
        if self._over:
            return True
        return self._relay.closed and self._failure is None and self._end is None

    async def next_within(self, seconds: float) -> StreamEvent | None:
        """The next event, or None when nothing came within `seconds`."""
        if not self._known.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._known.wait(), seconds)
            return None  # (the next call reads the relay; `ready` gives nothing before)
        if self._failure is not None:
            return self._failure
        event = await self._relay.next_within(seconds)
        if event is not None:
            return event
        end = self._end
        if end is not None and time.monotonic() - self._end_at >= END_GRACE:
            # Never stored (a stale copy's error) or not read yet: the owner's word for it.
            self._end = None
            return end
        return None

    def ready(self, limit: int | None = None) -> list[StreamEvent]:
        """Events available now without waiting."""
        if not self._known.is_set() or self._failure is not None:
            return []
        return self._relay.ready(limit)

    def close(self) -> None:
        """Stop following the session."""
        self._relay.close()
