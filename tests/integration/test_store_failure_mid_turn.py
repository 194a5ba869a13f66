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
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import session_manager
from tests.waiting import until

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


class RefusingOneToolResult(FilesystemSessionStore):
    """The file store, refusing the first write of a tool's result (a database that blinked)."""

    refused = False

    async def append(self, session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        batch = [events] if isinstance(events, SessionEvent) else list(events)
        if not self.refused and any(event.type == "tool_result" for event in batch):
            self.refused = True
            raise ConnectionError("the database went away")
        await super().append(session_id, events)


async def test_a_turn_that_failed_with_a_tool_call_left_open_can_be_retried(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    # Its call has no result, so the model does not owe the next word: the failure was taken
    # for one that kept a partial reply (`retryable: false`, retry refused "send it again").
    store = RefusingOneToolResult(tmp_path / "sessions", fsync="never")
    async with session_manager(tmp_path, fake_llm.url, store, max_background="1h") as manager:
        fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]))
        live = await manager.create("helper")
        subscription = await live.subscribe()
        ticket = await live.queue("say hi")
        async with asyncio.timeout(10):
            events = [event async for event in own_turn(subscription, ticket)]
        assert events[-1].event == "error", events
        assert events[-1].data["retryable"] is True, events[-1].data
        assert live.last_turn_retryable

        fake_llm.enqueue(text("it was interrupted"))
        await live.retry()

        def answered() -> bool:
            return live.status == "active" and live.log.state.conversation[-1]["role"] == "assistant"

        await until(answered)
        subscription.close()

    asked = fake_llm.requests[-1].messages
    assert asked[-1]["role"] == "tool", asked
    assert asked[-1]["content"].startswith("interrupted"), asked
    assert live.log.state.conversation[-1]["content"] == "it was interrupted"
