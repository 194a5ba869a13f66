"""Session ownership between workers on the real PostgreSQL: one owner at a time, failover, and
two processes appending to one session."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from duragent.cluster.node import ClusterNode
from duragent.cluster.ownership import SessionOwnedElsewhere
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.postgres import temporary_schema


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture
async def two_workers(pg_url: str) -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    first = await ClusterNode.open(pg_url, release_wait=0.3, scan_interval=60)
    second = await ClusterNode.open(pg_url, release_wait=0.3, scan_interval=60)
    yield first, second
    await first.close()
    await second.close()


async def test_a_session_is_owned_by_one_worker_at_a_time(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    a, b = two_workers
    await a.ownership.claim("s_one")
    with pytest.raises(SessionOwnedElsewhere, match="another worker"):
        await b.ownership.claim("s_one")
    await b.ownership.claim("s_two")  # other sessions are not affected

    await a.ownership.release("s_one")
    await b.ownership.claim("s_one")
    assert b.ownership.owns("s_one")
    assert not a.ownership.owns("s_one")


async def test_a_cleanly_released_session_is_not_taken_for_an_orphan(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    a, b = two_workers
    await a.ownership.claim("s_calm")
    assert await b.ownership.adopt_orphans() == []  # its owner is alive
    await a.ownership.release("s_calm")
    assert await b.ownership.adopt_orphans() == []  # released: nobody needs to recover it


async def test_the_sessions_of_a_worker_whose_connection_died_are_adopted_by_another(
    pg_url: str, two_workers: tuple[ClusterNode, ClusterNode]
) -> None:
    a, b = two_workers
    await a.ownership.claim("s_orphan")
    # What SIGKILL does to the worker's connection: the server ends its backend.
    await b.pool.execute("SELECT pg_terminate_backend($1)", a.connection.get_server_pid())

    adopted: list[str] = []
    for _ in range(50):
        adopted = await b.ownership.adopt_orphans()
        if adopted:
            break
        await asyncio.sleep(0.05)
    assert adopted == ["s_orphan"]
    assert b.ownership.owns("s_orphan")
    for _ in range(50):
        if a.ownership.lost:
            break
        await asyncio.sleep(0.05)
    assert a.ownership.lost
    assert not a.ownership.owns("s_orphan")


class HandsOver:
    """Stands in for a worker's session manager: lets a session go whenever asked (no turn runs)."""

    def __init__(self, node: ClusterNode):
        self.node = node

    async def release_if_idle(self, session_id: str, wait: float = 0.0) -> bool:
        await self.node.ownership.release(session_id)
        return True


async def test_a_third_worker_waiting_for_a_session_asks_whoever_owns_it_now(pg_url: str) -> None:
    """A hands the session to B, who was also waiting; C asked A only, and got a 409 after the
    whole wait although nobody was using the session."""
    nodes = [await ClusterNode.open(pg_url, release_wait=3, scan_interval=60) for _ in range(3)]
    try:
        for node in nodes:
            node.start(HandsOver(node))  # type: ignore[arg-type]
        a, b, c = nodes
        await a.ownership.claim("s_busy")

        await asyncio.wait_for(asyncio.gather(b.ownership.claim("s_busy"), c.ownership.claim("s_busy")), 10)

        assert b.ownership.owns("s_busy") or c.ownership.owns("s_busy")
    finally:
        for node in nodes:
            await node.close()


_APPENDER = """
import asyncio, sys
from datetime import UTC, datetime
from duragent.stores.base import SequenceConflict, SessionEvent
from duragent.stores.postgres.sessions import PostgresSessionStore

async def main(url: str, writer: str, count: int) -> None:
    store = PostgresSessionStore(url)
    written = 0
    while written < count:
        seq = await store.last_seq("s_shared") + 1
        payload = {"writer": writer}
        event = SessionEvent(seq, f"e_{writer}_{written}", datetime.now(UTC), "notification", payload)
        try:
            await store.append("s_shared", event)
        except SequenceConflict:
            continue  # the other process won this seq: read again and retry
        written += 1
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow
async def test_two_processes_appending_to_one_session_never_duplicate_or_skip_a_seq(pg_url: str) -> None:
    store = PostgresSessionStore(pg_url)
    await store.last_seq("s_shared")  # migrate before the writers race
    writers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _APPENDER, pg_url, name, "60")
        for name in ("one", "two")
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in writers)), 30)
    assert codes == [0, 0]

    events = await store.read("s_shared")
    assert [e.seq for e in events] == list(range(1, 121))
    by_writer = [e.payload["writer"] for e in events]
    assert by_writer.count("one") == 60
    assert by_writer.count("two") == 60
    await store.close()
