"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.sessions import FilesystemSessionStore


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[SessionLog]:
    """A new session of the agent `helper`, in a filesystem store under `tmp_path` (no fsync)."""
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    yield await SessionLog.create(store, agent="helper")
    await store.close()
