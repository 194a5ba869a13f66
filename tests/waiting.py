"""Waiting on a condition in tests (never a fixed sleep): poll it until it holds or time runs out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

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
