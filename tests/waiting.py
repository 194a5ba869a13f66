"""Waiting on a condition in tests (never a fixed sleep): poll it until it holds or time runs out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], within: float = 15.0, every: float = 0.02) -> None:
    """Return once `condition()` is true; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(every)
