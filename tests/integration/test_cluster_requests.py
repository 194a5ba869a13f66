"""Requests one worker hands to the owner of a session (`session_requests`), on the real PostgreSQL:
the owner's answer comes back, a request nobody takes is withdrawn, an owner that stops is reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from duragent.cluster.node import ClusterNode
from duragent.cluster.requests import OwnerStopped, Tell
from duragent.testing.postgres import temporary_schema
from tests.waiting import until


@pytest.fixture
async def two_workers() -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    async with temporary_schema() as url:
        owner = await ClusterNode.open(url, scan_interval=60, worker="owner")
        asker = await ClusterNode.open(url, scan_interval=60, worker="asker")
        yield owner, asker
        await owner.close()
        await asker.close()


async def rows(node: ClusterNode) -> int:
    return int(await node.pool.fetchval("SELECT count(*) FROM session_requests"))


async def test_the_owner_of_a_session_serves_a_request_another_worker_got(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    owner, asker = two_workers
    served: list[tuple[str, str, dict[str, Any]]] = []

    async def serve(session_id: str, action: str, body: dict[str, Any], tell: Tell) -> dict[str, Any]:
        served.append((session_id, action, body))
        return {"status": 200, "text": "x" * 20_000}  # more than a notification holds

    owner.requests.serve(serve)
    await owner.ownership.claim("s_busy")

    answer = await asyncio.wait_for(asker.requests.ask("s_busy", "approve", {"call_id": "c1"}), 10)

    assert answer == {"status": 200, "text": "x" * 20_000}
    assert served == [("s_busy", "approve", {"call_id": "c1"})]
    assert await rows(asker) == 0


async def test_a_request_no_worker_takes_is_withdrawn_so_the_asker_looks_for_the_owner_again(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    _owner, asker = two_workers
    # Nobody owns the session (its owner let it go a moment ago): nobody takes the request.
    answer = await asyncio.wait_for(asker.requests.ask("s_free", "cancel", {}), 10)
    assert answer is None
    assert await rows(asker) == 0


async def test_an_owner_that_stops_while_serving_a_request_is_reported_not_waited_for(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    owner, asker = two_workers
    taken = asyncio.Event()

    async def serve_for_ever(
        session_id: str, action: str, body: dict[str, Any], tell: Tell
    ) -> dict[str, Any]:
        taken.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    owner.requests.serve(serve_for_ever)
    await owner.ownership.claim("s_busy")
    asking = asyncio.create_task(asker.requests.ask("s_busy", "message", {"content": "hello"}))
    await asyncio.wait_for(taken.wait(), 10)
    # The body is gone from the table once the owner took it.
    assert await asker.pool.fetchval("SELECT body::text FROM session_requests") == "{}"

    # What SIGKILL does to the owner: its connection (and lock) go with it.
    await asker.pool.execute("SELECT pg_terminate_backend($1)", owner.connection.get_server_pid())

    with pytest.raises(OwnerStopped, match="before sending it again"):
        await asyncio.wait_for(asking, 10)
    assert await rows(asker) == 0


async def test_an_owner_serving_a_long_request_tells_its_asker_how_it_goes_before_answering(
    two_workers: tuple[ClusterNode, ClusterNode],
) -> None:
    """A streamed turn's asker must open its stream once the message is queued, and know where the
    turn starts, long before the turn ends (the one answer a request has)."""
    owner, asker = two_workers
    go_on = asyncio.Event()

    async def serve(session_id: str, action: str, body: dict[str, Any], tell: Tell) -> dict[str, Any]:
        await tell({"ahead": 1})
        await tell({"start": "7"})
        await go_on.wait()
        return {"status": 200}

    owner.requests.serve(serve)
    await owner.ownership.claim("s_busy")
    heard: list[dict[str, Any]] = []
    asking = asyncio.create_task(asker.requests.ask("s_busy", "stream", {"content": "hi"}, heard.append))

    await until(lambda: heard and heard[-1] == {"ahead": 1, "start": "7"})
    assert not asking.done()
    go_on.set()
    assert await asyncio.wait_for(asking, 10) == {"status": 200}
    assert await rows(asker) == 0
