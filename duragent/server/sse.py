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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from duragent.sessions.live import EventFeed
from duragent.sessions.stream import StreamEvent

#: Seconds between keep-alive comments when nothing else is sent.
DEFAULT_KEEP_ALIVE = 15.0
#: How often an idle stream checks that its client is still connected.
DISCONNECT_CHECK = 0.5

#: Decides, per event, whether to send it and whether the stream ends after it.
EventFilter = Callable[[StreamEvent], tuple[bool, bool]]


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
                    chunks.append(frame(item))
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

    The wait runs in the caller's task: one timer per request checks the connection every
    `DISCONNECT_CHECK` seconds while a wait lasts (a task and a timer per event cost more than
    the event's own trip through the server).
    """

    def __init__(self, request: web.Request):
        self._request = request
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = False
        self._gone = False

    async def next_of(self, iterator: AsyncIterator[StreamEvent]) -> StreamEvent:
        """The next event (StopAsyncIteration at the end); ClientGone once the client has hung up."""
        self._task = asyncio.current_task()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DISCONNECT_CHECK, self._check)
        self._waiting = True
        try:
            return await anext(iterator)
        except asyncio.CancelledError:
            # Our own cancel alone becomes ClientGone; anyone else's stays a cancellation.
            if self._gone and self._task is not None and self._task.uncancel() == 0:
                raise ClientGone() from None
            raise
        finally:
            self._waiting = False

    def _check(self) -> None:
        self._timer = None
        if not self._waiting or self._task is None:
            return  # between two events: the next wait arms the timer again
        if client_gone(self._request):
            self._gone = True
            self._task.cancel()
        else:
            self._timer = asyncio.get_running_loop().call_later(DISCONNECT_CHECK, self._check)

    def close(self) -> None:
        """Stop checking."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
