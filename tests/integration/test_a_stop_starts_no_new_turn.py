"""A server that stops lets running turns end within its grace, and starts no new one: the
messages queued behind a turn are recorded and run at the next start, and new work is refused
before anything is stored."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from duragent.sessions.live import ServerClosing
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, held, text
from tests.e2e.server_harness import session_manager
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_a_message_queued_behind_a_turn_a_stop_lets_end_runs_at_the_next_start(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    """The turn that ended within the grace started the next one, which the stop then left
    running while it let the session go."""
    reply = threading.Event()
    fake_llm.enqueue(held(reply, text("first reply")), text("second reply"))
    sessions = tmp_path / "sessions"
    store = FilesystemSessionStore(sessions, fsync="never")
    async with session_manager(tmp_path / "first", fake_llm.url, store, max_background="1h") as manager:
        live = await manager.create("helper")
        await live.submit("one")
        await until(lambda: len(fake_llm.requests) == 1)
        assert (await live.queue("two")).ahead == 1

        stopping = asyncio.create_task(manager.close(grace=30))
        await until(lambda: manager.closing)
        with pytest.raises(ServerClosing, match="shutting down: nothing was stored"):
            await live.queue("three")
        reply.set()
        await asyncio.wait_for(stopping, 10)

        assert len(fake_llm.requests) == 1  # "two" did not start while the server stopped
        assert [q["content"] for q in live.log.state.queued] == ["two"]
        assert live.log.state.conversation[-1]["content"] == "first reply"

    store = FilesystemSessionStore(sessions, fsync="never")
    async with session_manager(tmp_path / "second", fake_llm.url, store, max_background="1h") as manager:
        report = await manager.recover()
        assert report.resumed == (live.session_id,)
        restarted = manager.live[live.session_id]
        await until(lambda: restarted.log.state.conversation[-1]["content"] == "second reply")
        said = [(m["role"], m["content"]) for m in restarted.log.state.conversation]
        assert said == [
            ("user", "one"),
            ("assistant", "first reply"),
            ("user", "two"),
            ("assistant", "second reply"),
        ]
