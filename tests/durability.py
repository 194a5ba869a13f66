"""Holding or failing a session log's fsync in tests, and seeing the server wait for it."""

from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

import duragent.sessions.log


class HeldLogFsync:
    """Once armed, holds the next fsync of a session log (events.jsonl) until `release` is set.

    With `fail`, that fsync then fails as a dying disk's does. `durable` is set once it ended well.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.fail = False
        self.release, self.durable = threading.Event(), threading.Event()
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if not (self.armed and os.readlink(f"/proc/self/fd/{fd}").endswith("events.jsonl")):
                real_fsync(fd)
                return
            self.armed = False
            self.release.wait(30)
            if self.fail:
                raise OSError(errno.EIO, "Input/output error")
            real_fsync(fd)
            self.durable.set()

        monkeypatch.setattr(os, "fsync", fsync)


class DurabilityWaits:
    """Counts the server's waits for an unsynced event to become durable (before answering or acting)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real_until_durable = duragent.sessions.log._until_durable

        async def until_durable(synced: asyncio.Future[None]) -> None:
            if not synced.done():
                self.count += 1
            await real_until_durable(synced)

        monkeypatch.setattr(duragent.sessions.log, "_until_durable", until_durable)
