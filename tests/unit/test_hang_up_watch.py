"""A request waiting for a session's events ends once its client hangs up; the others wait on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web

from duragent.server import sse
from duragent.sessions.stream import Position, StreamEvent
from tests.waiting import until


class Transport:
    def __init__(self) -> None:
        self.closed = False
        self.checked = 0  # how often the server looked whether its client hung up

    def is_closing(self) -> bool:
        self.checked += 1
        return self.closed


def request_over(transport: Transport) -> web.Request:
    return cast(web.Request, SimpleNamespace(transport=transport))


async def events_after(wait: asyncio.Event) -> AsyncIterator[StreamEvent]:
    await wait.wait()
    yield StreamEvent(Position(1), "done", {})


async def first_of(request: web.Request, events: AsyncIterator[StreamEvent]) -> Any:
    async with contextlib.aclosing(sse.while_connected(request, events)) as watched:
        return await anext(watched)


async def test_only_the_request_whose_client_hung_up_stops_waiting() -> None:
    gone, connected = Transport(), Transport()
    event_comes = asyncio.Event()
    leaving = asyncio.ensure_future(first_of(request_over(gone), events_after(event_comes)))
    staying = asyncio.ensure_future(first_of(request_over(connected), events_after(event_comes)))
    await until(lambda: gone.checked and connected.checked)  # (checked once: both connected)

    gone.closed = True
    with pytest.raises(sse.ClientGone):
        await asyncio.wait_for(leaving, 3 * sse.DISCONNECT_CHECK)
    checked_before = connected.checked
    await until(lambda: connected.checked > checked_before)  # checked again since: still waiting
    assert not staying.done()

    event_comes.set()
    assert (await asyncio.wait_for(staying, 1)).event == "done"


async def test_a_cancel_from_elsewhere_stays_a_cancellation() -> None:
    transport = Transport()
    waiting = asyncio.ensure_future(first_of(request_over(transport), events_after(asyncio.Event())))
    await until(lambda: transport.checked)  # waiting, and watched
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
