"""A schedule's run claimed by a worker that cannot run its session yet waits until it can, on
the real PostgreSQL: a worker reconnecting to PostgreSQL (a database restart, a network blip), or
one whose session runs a turn on another worker. Both used to record the run as failed at once
("send the request again in a moment", "running a turn on another worker"), and without `retry`
the slot was lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.scheduling.delivery import SessionDelivery
from duragent.scheduling.spec import Destination, ScheduleRequest
from duragent.stores.base import utcnow
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.postgres import temporary_schema
from tests.integration.test_cluster_sessions import worker
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def test_a_run_due_while_its_worker_reconnects_is_delivered_once_the_worker_is_back(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    async with worker(tmp_path, "a", fake_llm.url, pg_url) as (manager, node):
        session_id = (await manager.create("helper")).session_id
        may_reconnect = asyncio.Event()
        connect = node._connect
        assert connect is not None

        async def reconnect_when_allowed() -> object:
            await may_reconnect.wait()
            return await connect()

        node._connect = reconnect_when_allowed  # type: ignore[assignment]
        await node.pool.execute("SELECT pg_terminate_backend($1)", node.connection.get_server_pid())
        await until(lambda: node.ownership.lost)

        schedule = ScheduleRequest.model_validate({"every": "1h", "message": "stand-up"}).build(
            "helper", destination=Destination(session_id=session_id), created_by="test", now=utcnow()
        )
        run = asyncio.create_task(SessionDelivery(manager)(schedule, schedule.created_at))
        may_reconnect.set()  # (the worker is back no sooner than its first backoff, 0.2 s)

        assert await asyncio.wait_for(run, 30) == session_id
        assert node.reconnects == 1
        store = PostgresSessionStore(pg_url)
        try:
            events = await store.read(session_id)
        finally:
            await store.close()
        notes = [e.payload for e in events if e.type == "notification"]
        assert [(note["message"], note["schedule_id"]) for note in notes] == [("stand-up", schedule.id)]


async def test_a_run_claimed_by_a_worker_whose_session_runs_a_turn_elsewhere_waits_for_that_turn(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """It used to fail after the 3 s the owner is given to let go ("running a turn on another
    worker"): two runs in three were lost on a cluster of three whose session was busy."""
    slow = " ".join(f"w{i}" for i in range(30))
    fake_llm.enqueue(text(slow, chunks=30, chunk_delay=0.15))  # ~4.5 s, beyond the owner's 2 s wait
    async with (
        worker(tmp_path, "a", fake_llm.url, pg_url) as (a, _),
        worker(tmp_path, "b", fake_llm.url, pg_url) as (b, _),
    ):
        live = await a.create("helper")
        await live.queue("one")
        await until(lambda: len(fake_llm.requests) == 1)
        schedule = ScheduleRequest.model_validate({"every": "1h", "message": "stand-up"}).build(
            "helper", destination=Destination(session_id=live.session_id), created_by="test", now=utcnow()
        )

        assert await SessionDelivery(b)(schedule, schedule.created_at) == live.session_id

        store = PostgresSessionStore(pg_url)
        try:
            events = await store.read(live.session_id)
        finally:
            await store.close()
        kinds = [e.type for e in events if e.type in ("user_message", "assistant_message", "notification")]
        assert kinds == ["user_message", "assistant_message", "notification"]
        assert [e.payload["content"] for e in events if e.type == "assistant_message"] == [slow]
