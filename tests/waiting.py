"""Waiting on a condition in tests (never a fixed sleep): poll it until it holds or time runs out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def until(condition: Callable[[], object], within: float = 15.0, every: float = 0.02) -> None:
    """Return once `condition()` is true; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(every)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 15.0, every: float = 0.02
) -> T:
    """The first value other than None that `probe()` (a request, say) resolves to; TimeoutError
    after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            value = await probe()
            if value is not None:
                return value
            await asyncio.sleep(every)


class Held:
    """`function`, whose `nth` call waits in the thread it runs in until `release` is set: work a
    test holds to see what goes on meanwhile (`entered`: the call is waiting; `returned`: done)."""

    def __init__(self, function: Callable[..., Any], nth: int = 1) -> None:
        self.function, self.nth, self.calls = function, nth, 0
        self.entered, self.release, self.returned = threading.Event(), threading.Event(), threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls != self.nth:
            return self.function(*args, **kwargs)
        self.entered.set()
        # (held on the event loop, it would hold the test with it: the test fails, never hangs)
        self.release.wait(timeout=10)
        try:
            return self.function(*args, **kwargs)
        finally:
            self.returned.set()
