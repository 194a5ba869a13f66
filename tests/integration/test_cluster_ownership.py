"""Session ownership between workers on the real PostgreSQL: one owner at a time, failover, and
two processes appending to one session."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from duragent.cluster.node import ClusterNode
from duragent.cluster.ownership import SessionOwnedElsewhere, SessionOwnership
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.postgres import temporary_schema
from tests.waiting import eventually, until


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
    await until(lambda: a.reconnects == 1)
    assert not a.ownership.owns("s_orphan")


async def test_a_worker_whose_lock_connection_dropped_reconnects_and_takes_sessions_afresh(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    """It answered 503 for every session until someone restarted it."""
    a, b = two_workers
    await a.ownership.claim("s_held")
    term_before = a.ownership.term("s_held")
    await b.pool.execute("SELECT pg_terminate_backend($1)", a.connection.get_server_pid())

    await until(lambda: a.reconnects == 1 and not a.ownership.lost)

    # Nothing it held is its own any more: a copy loaded before writes nothing (its term is gone).
    assert a.ownership.term("s_held") is None
    assert not a.ownership.held
    await a.ownership.claim("s_new")  # new sessions are served again
    assert a.ownership.owns("s_new")
    await a.ownership.claim("s_held")  # and old ones are taken afresh, under a new term
    assert a.ownership.term("s_held") not in (None, term_before)
    with pytest.raises(SessionOwnedElsewhere):
        await b.ownership.claim("s_held", ask_owner=False)


async def test_a_lock_connection_that_stops_answering_is_dropped_and_its_locks_freed(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    """A connection whose peer is gone without a word never reports it: its backend kept every
    lock, no worker could take those sessions, and the worker waited on it for ever."""
    a, b = two_workers
    await a.ownership.claim("s_stuck")
    stuck = a.connection
    # The backend is busy (stands for a peer that no longer answers): the ping gets no answer.
    sleeping = asyncio.create_task(stuck.execute("SELECT pg_sleep(60)"))

    async def asleep() -> bool | None:
        query = "SELECT true FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'"
        return await b.pool.fetchval(query, stuck.get_server_pid())

    await eventually(asleep)

    assert await a.ownership.ping(within=0.5) is False
    assert not a.ownership.owns("s_stuck")

    async def taken_by_b() -> bool | None:
        return await b.ownership.try_acquire("s_stuck") or None

    # Reconnected, the worker ends its old backend: the lock is free at once, not in 60 s.
    assert await eventually(taken_by_b, within=15)
    assert a.reconnects == 1
    sleeping.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await sleeping


class ClaimsCannotBeDeleted:
    """A pool whose DELETE of a claim row fails (the database went away for a moment)."""

    def __init__(self, pool: Any):
        self._pool = pool

    async def execute(self, query: str, *args: Any) -> str:
        if query.startswith("DELETE FROM session_claims"):
            raise ConnectionResetError("the database went away")
        return str(await self._pool.execute(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._pool.fetchval(query, *args)


async def test_a_session_let_go_while_its_claim_row_cannot_be_deleted_is_unlocked_all_the_same(
    pg_url: str, two_workers: tuple[ClusterNode, ClusterNode]
) -> None:
    """The lock stayed held by a worker that no longer knew it held it: no worker could ever run
    the session again while that worker lived."""
    import asyncpg

    from duragent.stores.postgres.pool import parse_postgres_url

    _, b = two_workers
    connection = await asyncpg.connect(parse_postgres_url(pg_url).dsn)
    try:
        flaky = SessionOwnership(connection, ClaimsCannotBeDeleted(b.pool), schema=b.schema, worker="flaky")  # type: ignore[arg-type]
        await flaky.claim("s_flaky")

        with pytest.raises(ConnectionResetError):
            await flaky.release("s_flaky")

        assert await b.ownership.try_acquire("s_flaky")
    finally:
        await connection.close()


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
