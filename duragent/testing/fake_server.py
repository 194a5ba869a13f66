"""What every fake peer in `duragent.testing` is built on: an aiohttp server on a loopback port.

A fake subclasses `FakeServer`, adds its routes in `add_routes`, and gets

- `start()` / `stop()` / `async with`: listen on a free 127.0.0.1 port (or the one given);
  `port` and `root_url` say where;
- `wait_until(found)`: wait, without polling, until something the fake records shows up; the
  fake calls `notify()` whenever its state changes;
- failures on request: `_queue_failure(key, Failure(429, retry_after=1))` queues one for a
  method or route, `_next_failure(key)` takes it when that method is called, and the fake
  answers it in its platform's wire format;
- `serve_until_interrupted()`: run it by hand (`python -m duragent.testing.fake_...`).

Plugin authors can build a fake of their own platform the same way.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """A failure a test asked for: the HTTP status, when to retry (429) and the error's text."""

    status: int
    retry_after: float | None = None
    description: str | None = None


@dataclass(frozen=True)
class RecordedCall:
    """One API call the client made: the method's name, its parameters and when (monotonic)."""

    method: str
    params: dict[str, Any]
    at: float


class FakeServer:
    """An aiohttp server on 127.0.0.1 (a free port unless one is given) that tests can wait on."""

    #: The largest request body the fake accepts (file uploads need more than aiohttp's 1 MiB).
    client_max_size = 64 * 1024 * 1024

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._change = asyncio.Event()
        self._failures: dict[str, deque[Failure]] = {}

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT`, once started."""
        return f"http://{self.host}:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        """Add the fake's routes; every fake overrides it."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen (on a free port unless one was given)."""
        app = web.Application(client_max_size=self.client_max_size)
        self.add_routes(app)
        # handler_cancellation: a client hanging up cancels its handler (long polls end with it).
        # shutdown_timeout: stopping must not wait for a slow reply to play out.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ waiting

    def notify(self) -> None:
        """Wake everyone waiting in `wait_until` (or `next_change`) to look again."""
        self._change.set()
        self._change = asyncio.Event()

    async def next_change(self) -> None:
        """Return after the next `notify()`."""
        await self._change.wait()

    async def wait_until(self, found: Callable[[], T | None], within: float = 5.0) -> T:
        """Wait until `found()` returns something other than None (re-checked on every change)."""
        async with asyncio.timeout(within):
            while (value := found()) is None:
                await self.next_change()
            return value

    # ----------------------------------------------------------------- failures

    def _queue_failure(self, key: str, failure: Failure, times: int = 1) -> None:
        """Make the next `times` calls of `key` (a method or route) fail this way."""
        self._failures.setdefault(key, deque()).extend([failure] * times)

    def _next_failure(self, key: str) -> Failure | None:
        """The failure queued for this call of `key`, if any (taking it off the queue)."""
        queued = self._failures.get(key)
        return queued.popleft() if queued else None

    # ------------------------------------------------------------------ by hand

    async def serve_until_interrupted(
        self, announce: Callable[[], str], alongside: Callable[[], Coroutine[Any, Any, None]] | None = None
    ) -> None:
        """Start, print what `announce()` returns (it may set up the fake first), serve until
        SIGINT or SIGTERM, stop. `alongside()` runs meanwhile (a console for the user's side)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with self:
            print(announce(), flush=True)
            beside = asyncio.create_task(alongside()) if alongside is not None else None
            if beside is not None:
                beside.add_done_callback(_say_why_it_ended)
            await stop.wait()
            if beside is not None:
                beside.cancel()


def _say_why_it_ended(task: asyncio.Task[None]) -> None:
    """A console that failed says so (the fake goes on serving without it)."""
    if not task.cancelled() and task.exception() is not None:
        print(f"the console stopped: {task.exception()!r}", file=sys.stderr, flush=True)
