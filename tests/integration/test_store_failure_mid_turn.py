"""A store that stops taking writes during a turn (PostgreSQL gone, the session deleted under
the server): clients waiting for the turn hear that it failed instead of waiting for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from duragent.sessions.manager import SessionManager
from duragent.sessions.stream import own_turn
from duragent.stores.base import SessionEvent
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import session_manager

pytest_plugins = ["duragent.testing.pytest_plugin"]


class RefusingStore(FilesystemSessionStore):
    """The file store, refusing every append once `refusing` is set."""

    refusing = False

    async def append(self, session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        if self.refusing:
            raise ConnectionError("the database went away")
        await super().append(session_id, events)

    async def append_unsynced(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent]
    ) -> asyncio.Future[None]:
        if self.refusing:
            raise ConnectionError("the database went away")
        return await super().append_unsynced(session_id, events)


@pytest.fixture
async def setup(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> AsyncIterator[tuple[SessionManager, RefusingStore]]:
    store = RefusingStore(tmp_path / "sessions", fsync="never")
    async with session_manager(tmp_path, fake_llm.url, store, max_background="1h") as manager:
        yield manager, store


async def test_a_turn_whose_store_refuses_every_write_ends_with_an_error_its_client_hears(
    setup: tuple[SessionManager, RefusingStore], fake_llm: FakeLLMServer
) -> None:
    manager, store = setup
    fake_llm.enqueue(text("never stored"))
    live = await manager.create("helper")
    subscription = await live.subscribe()
    store.refusing = True

    ticket = await live.queue("hello")
    async with asyncio.timeout(10):
        events = [event async for event in own_turn(subscription, ticket)]

    assert events[-1].event == "error"
    assert "the database went away" in events[-1].data["message"]
    subscription.close()
