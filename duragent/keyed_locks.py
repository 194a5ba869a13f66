"""asyncio locks by key (a session, a file) that are dropped once nobody holds or awaits them.

A dict of `asyncio.Lock` kept per key grows with every session or file a long-running server
has ever touched. Here a key's lock exists only while some task holds it or waits for it; the
next task to ask gets a fresh one. Taking a key's lock is `async with locks(key):`, with no
await between the call and the `async with` (so the lock cannot be dropped in between).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyedLocks(Generic[K]):
    """One lock per key, alive while in use."""

    __slots__ = ("_in_use",)

    def __init__(self) -> None:
        self._in_use: dict[K, KeyedLock[K]] = {}

    def __call__(self, key: K) -> KeyedLock[K]:
        """The key's lock, to take with `async with`."""
        lock = self._in_use.get(key)
        if lock is None:
            lock = self._in_use[key] = KeyedLock(self._in_use, key)
        return lock

    def __len__(self) -> int:
        """Keys whose lock is held or awaited now."""
        return len(self._in_use)


class KeyedLock(Generic[K]):
    """The lock of one key; it leaves its `KeyedLocks` when its last user has left.

    Its `asyncio.Lock` is made only once a second task comes while the first holds the key: most
    keys are never contended (a session's appends come one at a time), and a hold nobody else
    wants costs a count, not a lock's acquire and release.
    """

    __slots__ = ("_in_use", "_key", "_lock", "_users")

    def __init__(self, in_use: dict[K, KeyedLock[K]], key: K):
        self._in_use = in_use
        self._key = key
        self._lock: asyncio.Lock | None = None
        self._users = 0  # tasks holding or waiting for it

    def locked(self) -> bool:
        return self._users > 0 if self._lock is None else self._lock.locked()

    async def __aenter__(self) -> None:
        self._users += 1
        if self._lock is None:
            if self._users == 1:
                return  # nobody else holds or awaits it: held, no lock needed
            # The holder took the key before there was a lock: the lock is taken for it now (at
            # once, being free), and released when it leaves, so this task waits for that.
            self._lock = asyncio.Lock()
            await self._lock.acquire()
        try:
            await self._lock.acquire()
        except BaseException:  # cancelled while waiting: it never held the lock
            self._leave()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._lock is not None:
            self._lock.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if not self._users and self._in_use.get(self._key) is self:
            del self._in_use[self._key]
