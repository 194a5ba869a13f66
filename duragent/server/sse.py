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
from collections.abc import AsyncIterator, Awaitable, Callable

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
) -> AsyncIterator[StreamEvent]:
    """`events`, until the client hangs up (then ClientGone, so the handler detaches at once).

    aiohttp does not cancel a handler whose client went away, so a waiting request checks.
    `on_idle` is awaited after every `idle_every` seconds without an event (a keep-alive).
    """
    iterator = aiter(events)
    while True:
        upcoming = asyncio.ensure_future(anext(iterator))
        quiet_since = time.monotonic()
        while not upcoming.done():
            await asyncio.wait({upcoming}, timeout=DISCONNECT_CHECK)
            if not upcoming.done() and on_idle is not None and time.monotonic() - quiet_since >= idle_every:
                quiet_since = time.monotonic()
                await on_idle()
            if not upcoming.done() and client_gone(request):
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upcoming
                raise ClientGone()
        try:
            event = upcoming.result()
        except StopAsyncIteration:
            return
        yield event
