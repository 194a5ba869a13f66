"""Workers of a cluster running one session in turn, in this process on the real PostgreSQL: a
worker's copy of a session never falls behind the stored log unnoticed, and never writes to a
session another worker runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.cluster.node import ClusterNode
from duragent.sessions.live import LiveSession
from duragent.sessions.manager import SessionManager
from duragent.sessions.stream import own_turn
from duragent.stores.base import SessionLocked
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import session_manager
from tests.waiting import eventually, until

pytest_plugins = ["duragent.testing.pytest_plugin"]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@contextlib.asynccontextmanager
async def worker(
    root: Path, name: str, llm_url: str, pg_url: str
) -> AsyncIterator[tuple[SessionManager, ClusterNode]]:
    """One worker in this process: its session manager and cluster node (locks, release requests)."""
    node = await ClusterNode.open(pg_url, release_wait=2, scan_interval=60)
    node.worker = node.ownership.worker = name  # both workers live in this process
    try:
        async with session_manager(
            root / name, llm_url, PostgresSessionStore(pg_url), max_background="1h", ownership=node.ownership
        ) as manager:
            node.start(manager)
            yield manager, node
    finally:
        await node.close()


async def stored(pg_url: str, session_id: str) -> list[tuple[str, str]]:
    """(type, content) of every message stored, in seq order; fails if a seq repeats or is missing."""
    store = PostgresSessionStore(pg_url)
    try:
        events = await store.read(session_id)
    finally:
        await store.close()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = ("user_message", "assistant_message")
    return [(e.type, str(e.payload["content"])) for e in events if e.type in kinds]


async def turn(live: LiveSession, content: str) -> int:
    """Send `content` and wait for the turn it starts to end; what `submit` returned."""
    queued = await live.submit(content)
    await asyncio.wait_for(live.turn_finished.wait(), 10)
    return queued


async def test_a_worker_that_handed_a_session_over_stores_nothing_from_the_copy_it_had(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """A request on A took the session just before A handed it to B: it used A's copy, which ran
    a turn without the lock, and B's copy fell behind the log (every later message a conflict)."""
    fake_llm.enqueue(text("first"), text("answered on B"))
    async with (
        worker(tmp_path, "a", fake_llm.url, pg_url) as (a, _),
        worker(tmp_path, "b", fake_llm.url, pg_url) as (b, _),
    ):
        live = await a.create("helper")
        await turn(live, "one")
        held = await a.get(live.session_id)  # a request on A has the session ...
        on_b = await b.get(live.session_id)  # ... when B asks for it: A lets the idle session go

        with pytest.raises(SessionLocked, match="another worker"):
            await held.queue("sent through A's old copy")

        assert await turn(on_b, "two") == 0
        assert await stored(pg_url, live.session_id) == [
            ("user_message", "one"),
            ("assistant_message", "first"),
            ("user_message", "two"),
            ("assistant_message", "answered on B"),
        ]


async def test_an_owner_whose_copy_fell_behind_the_log_loads_it_again_and_the_next_message_works(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    fake_llm.enqueue(text("first"), text("answered elsewhere"), text("answered by the owner"))
    async with worker(tmp_path, "owner", fake_llm.url, pg_url) as (owner, _):
        live = await owner.create("helper")
        await turn(live, "one")
        # A worker that lost the session but has not noticed yet (its lock connection gone, the
        # news not in) runs a turn on it: the owner's copy is now behind the stored log.
        async with session_manager(
            tmp_path / "unaware", fake_llm.url, PostgresSessionStore(pg_url), max_background="1h"
        ) as unaware:
            elsewhere = await unaware.get(live.session_id)
            await turn(elsewhere, "from elsewhere")

        subscription = await live.subscribe()
        ticket = await live.queue("lost in the conflict")
        async with asyncio.timeout(10):
            events = [event async for event in own_turn(subscription, ticket)]
        subscription.close()
        assert events[-1].event == "error"
        assert events[-1].data["code"] == "conflict"
        assert "another worker" in events[-1].data["message"]

        again = await owner.get(live.session_id)
        assert again is not live
        assert await turn(again, "three") == 0
        assert await stored(pg_url, live.session_id) == [
            ("user_message", "one"),
            ("assistant_message", "first"),
            ("user_message", "from elsewhere"),
            ("assistant_message", "answered elsewhere"),
            ("user_message", "three"),
            ("assistant_message", "answered by the owner"),
        ]


async def test_a_session_a_worker_takes_again_after_another_wrote_to_it_is_loaded_again(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """A's copy outlived its lock (a takeover that failed midway lets the lock go and kept the
    copy); B ran a turn and died; A's failover scan took the session back, and used the old copy."""
    fake_llm.enqueue(text("first"), text("answered on B"), text("answered on A again"))
    async with (
        worker(tmp_path, "a", fake_llm.url, pg_url) as (a, a_node),
        worker(tmp_path, "b", fake_llm.url, pg_url) as (b, b_node),
    ):
        live = await a.create("helper")
        await turn(live, "one")
        await a_node.ownership.release(live.session_id)  # what `scan_once` does when a takeover fails
        on_b = await b.get(live.session_id)
        await turn(on_b, "two")
        # B dies (what SIGKILL does to its lock connection): its claim stays, its lock is free.
        await a_node.pool.execute("SELECT pg_terminate_backend($1)", b_node.connection.get_server_pid())

        async def adopted_by_a() -> list[str] | None:
            return await a_node.scan_once() or None

        assert await eventually(adopted_by_a) == [live.session_id]

        again = await a.get(live.session_id)
        assert again is not live
        assert await turn(again, "three") == 0
        assert await stored(pg_url, live.session_id) == [
            ("user_message", "one"),
            ("assistant_message", "first"),
            ("user_message", "two"),
            ("assistant_message", "answered on B"),
            ("user_message", "three"),
            ("assistant_message", "answered on A again"),
        ]


async def test_a_worker_that_lost_its_lock_connection_stops_its_turns_and_serves_again_once_reconnected(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """It answered 503 until restarted, and its turn ran on without the lock (writing nothing,
    but streaming and calling the model), while another worker could take the session over."""
    slow = " ".join(f"w{i}" for i in range(40))
    fake_llm.enqueue(text(slow, chunks=40, chunk_delay=0.2), text("resumed reply"), text("second reply"))
    async with worker(tmp_path, "a", fake_llm.url, pg_url) as (a, node):
        live = await a.create("helper")
        await live.queue("one")
        await until(lambda: len(fake_llm.requests) == 1)

        await node.pool.execute("SELECT pg_terminate_backend($1)", node.connection.get_server_pid())

        await until(lambda: not live.busy, within=4)  # stopped, not streamed on for 8 s
        assert await stored(pg_url, live.session_id) == [("user_message", "one")]
        await until(lambda: node.reconnects == 1 and not node.ownership.lost)
        # Taken afresh (what a request, or the failover scan, does): the turn resumes from the log.
        assert await a.recover_session(live.session_id) == "resumed"
        again = a.live[live.session_id]
        assert again is not live
        await until(lambda: not again.busy)
        assert await turn(again, "two") == 0
        assert await stored(pg_url, live.session_id) == [
            ("user_message", "one"),
            ("assistant_message", "resumed reply"),
            ("user_message", "two"),
            ("assistant_message", "second reply"),
        ]
