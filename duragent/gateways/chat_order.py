"""One chat's incoming messages handled in arrival order, chats side by side (for plugins)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class ChatOrder:
    """Runs the handling of each chat's incoming messages one after another, in arrival order.

    Platform libraries (discord.py, slack-bolt) handle every incoming event in a task of its own:
    a photo whose file is still downloading would be overtaken by the question sent after it.
    Call `in_turn` in the event handler before anything it awaits, so turns are taken in the
    order the events came in. Other chats are not held up.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    async def settle(self, within: float) -> None:
        """Wait (at most `within` seconds) until the messages being handled now are handled:
        a plugin stopping finishes passing on what the platform will not send again."""
        if self._tails:
            await asyncio.wait(set(self._tails.values()), timeout=within)

    async def in_turn(self, chat: str, handle: Callable[[], Awaitable[None]]) -> None:
        """Await `handle()` once every earlier message of `chat` has been handled."""
        previous = self._tails.get(chat)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[chat] = mine
        try:
            if previous is not None:
                await asyncio.wait({previous})  # how it ended is its own business
            await handle()
        finally:
            mine.set_result(None)
            if self._tails.get(chat) is mine:
                del self._tails[chat]
