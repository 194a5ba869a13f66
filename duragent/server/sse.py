"""Server-sent events: a session's events written as `id:`/`event:`/`data:` frames, plus keep-alives.

A burst of events (a model streaming tokens) is written in one `write`, so relaying stays cheap
with hundreds of streams. When the client hangs up the pump returns; the caller closes its
subscription, which detaches it from the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from duragent.sessions.live import EventFeed
from duragent.sessions.stream import StreamEvent

#: Seconds between keep-alive comments when nothing else is sent.
DEFAULT_KEEP_ALIVE = 15.0
#: How often an idle stream checks that its client is still connected.
DISCONNECT_CHECK = 0.5

#: Decides, per event, whether to send it (True: its frame; bytes: these instead, a comment say)
#: and whether the stream ends after it.
EventFilter = Callable[[StreamEvent], tuple[bool | bytes, bool]]


#: The `/stream` comment sent when a turn ahead of the message asks a person (read by
#: `duragent.client.sse.comment_event`): the stream goes on, but its turn waits for that answer.
BEHIND_APPROVAL_COMMENT = "queued behind an approval of call {call_id}"


def behind_approval(call_id: object) -> bytes:
    """The comment saying a turn ahead asks a person about `call_id` (a model's id: anything that
    could end the comment line is left out, so it cannot write events into the stream)."""
    shown = "".join(char for char in str(call_id) if char.isprintable() and not char.isspace())
    return f": {BEHIND_APPROVAL_COMMENT.format(call_id=shown or '-')}\n\n".encode()


#: Built once: json.dumps with options makes a new encoder per call, and this runs per token.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def frame(event: StreamEvent, *, with_id: bool = True) -> bytes:
    """One SSE frame."""
    data = event.data
    if event.event == "token" and len(data) == 1 and isinstance(content := data.get("content"), str):
        encoded = '{"content":' + _ENCODER.encode(content) + "}"  # the common case, without a dict walk
    else:
        encoded = _ENCODER.encode(data)
    head = f"id: {event.id}\n" if with_id else ""
    return f"{head}event: {event.event}\ndata: {encoded}\n\n".encode()


async def open_stream(request: web.Request) -> web.StreamResponse:
    """Send the headers of an event stream."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


def client_gone(request: web.Request) -> bool:
    """True once the client's connection is closed."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def pump(
    request: web.Request,
    response: web.StreamResponse,
    subscription: EventFeed,
    accept: EventFilter,
    *,
    keep_alive: float = DEFAULT_KEEP_ALIVE,
) -> bool:
    """Relay events until `accept` says the stream ends (True) or the client or session goes (False)."""
    last_write = time.monotonic()
    try:
        while True:
            event = await subscription.next_within(min(keep_alive, DISCONNECT_CHECK))
            if event is None:
                if subscription.closed:
                    return False
                if client_gone(request):
                    return False
                if time.monotonic() - last_write >= keep_alive:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                continue
            chunks: list[bytes] = []
            ended = False
            for item in [event, *subscription.ready()]:
                send, ends = accept(item)
                if send:
                    chunks.append(send if isinstance(send, bytes) else frame(item))
                if ends:
                    ended = True
                    break
            if chunks:
                await response.write(b"".join(chunks))
                last_write = time.monotonic()
            if ended:
                return True
    except ConnectionResetError:
        return False


class ClientGone(Exception):
    """The client hung up while waiting for its turn."""


async def while_connected(
    request: web.Request,
    events: AsyncIterator[StreamEvent],
    *,
    on_idle: Callable[[], Awaitable[None]] | None = None,
    idle_every: float = DEFAULT_KEEP_ALIVE,
) -> AsyncGenerator[StreamEvent, None]:
    """`events`, until the client hangs up (then ClientGone, so the handler detaches at once).

    aiohttp does not cancel a handler whose client went away, so a waiting request checks.
    `on_idle` is awaited after every `idle_every` seconds without an event (a keep-alive).
    Close it (`contextlib.aclosing`) when leaving early: it closes `events` too.
    """
    iterator = aiter(events)
    try:
        if on_idle is not None:
            async for event in _with_keep_alive(request, iterator, on_idle, idle_every):
                yield event
            return
        watch = _HangUpWatch(request)
        try:
            while True:
                try:
                    event = await watch.next_of(iterator)
                except StopAsyncIteration:
                    return
                yield event
        finally:
            watch.close()
    finally:
        if isinstance(iterator, AsyncGenerator):
            await iterator.aclose()


class _HangUpWatch:
    """Cancels the wait for the next event once the client hangs up, then raises ClientGone.

    The wait runs in the caller's task, and the loop's `_HangUpPatrol` checks the connection while
    it lasts (a task and a timer per event, or a timer per request, cost more than the event's
    own trip through the server).
    """

    def __init__(self, request: web.Request):
        self.request = request
        self._patrol = _patrol_of_this_loop()
        self._task: asyncio.Task[Any] | None = None
        self._gone = False

    async def next_of(self, iterator: AsyncIterator[StreamEvent]) -> StreamEvent:
        """The next event (StopAsyncIteration at the end); ClientGone once the client has hung up."""
        self._task = asyncio.current_task()
        self._patrol.watch(self)
        try:
            return await anext(iterator)
        except asyncio.CancelledError:
            # Our own cancel alone becomes ClientGone; anyone else's stays a cancellation.
            if self._gone and self._task is not None and self._task.uncancel() == 0:
                raise ClientGone() from None
            raise
        finally:
            self._patrol.waiting.discard(self)

    def hung_up(self) -> None:
        """The client is gone: end the wait."""
        self._gone = True
        if self._task is not None:
            self._task.cancel()

    def close(self) -> None:
        """Stop checking."""
        self._patrol.waiting.discard(self)


class _HangUpPatrol:
    """Every `DISCONNECT_CHECK` seconds while requests of its loop wait (`_HangUpWatch`), looks
    whether their clients hung up: one timer for all of them, armed only while any waits."""

    def __init__(self) -> None:
        self.waiting: set[_HangUpWatch] = set()
        # (a flag, not the timer: the patrol holds nothing of its loop, see `_patrol_of_this_loop`)
        self._armed = False

    def watch(self, watch: _HangUpWatch) -> None:
        """Check `watch`'s client until it leaves `waiting`."""
        self.waiting.add(watch)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        self._armed = True
        asyncio.get_running_loop().call_later(DISCONNECT_CHECK, self._check)

    def _check(self) -> None:
        self._armed = False
        for watch in [watch for watch in self.waiting if client_gone(watch.request)]:
            self.waiting.discard(watch)
            watch.hung_up()
        if self.waiting:
            self._arm()


#: The patrol of each running loop (a server has one loop; tests start many).
_PATROLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _HangUpPatrol] = weakref.WeakKeyDictionary()


def _patrol_of_this_loop() -> _HangUpPatrol:
    loop = asyncio.get_running_loop()
    patrol = _PATROLS.get(loop)
    if patrol is None:
        patrol = _PATROLS[loop] = _HangUpPatrol()
    return patrol


async def _with_keep_alive(
    request: web.Request,
    iterator: AsyncIterator[StreamEvent],
    on_idle: Callable[[], Awaitable[None]],
    idle_every: float,
) -> AsyncGenerator[StreamEvent, None]:
    """`while_connected` with keep-alives: each next event is awaited in a task, so the wait can
    be interrupted for `on_idle` and taken up again."""
    upcoming: asyncio.Future[StreamEvent] | None = None
    try:
        while True:
            upcoming = asyncio.ensure_future(anext(iterator))
            quiet_since = time.monotonic()
            while not upcoming.done():
                await asyncio.wait({upcoming}, timeout=DISCONNECT_CHECK)
                if not upcoming.done() and time.monotonic() - quiet_since >= idle_every:
                    quiet_since = time.monotonic()
                    await on_idle()
                if not upcoming.done() and client_gone(request):
                    raise ClientGone()
            try:
                event = upcoming.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        # Left mid-wait (the client hung up, or the handler was cancelled): the wait ends with us.
        if upcoming is not None and not upcoming.done():
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upcoming
