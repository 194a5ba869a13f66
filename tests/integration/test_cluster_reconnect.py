"""A worker whose lock connection (its session locks and LISTEN) dropped, on the real PostgreSQL:
what it was not told while it reconnected is caught up once it is back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from duragent.agents.catalog import AgentNotFound
from duragent.cluster.node import ClusterNode
from duragent.cluster.ownership import OwnershipLost
from duragent.testing.postgres import temporary_schema
from tests.waiting import until


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


class DeployedAgents:
    """Stands in for a worker's agent registry: the deployed agents' files by name."""

    def __init__(self) -> None:
        self.deployed: dict[str, dict[str, str]] = {}

    def names(self) -> list[str]:
        return list(self.deployed)

    def source(self, name: str) -> str:
        if name not in self.deployed:
            raise AgentNotFound(name, self.names(), Path("agents"))
        return "dynamic"

    def files(self, name: str) -> dict[str, str]:
        if name not in self.deployed:
            raise AgentNotFound(name, self.names(), Path("agents"))
        return dict(self.deployed[name])

    def deploy(self, name: str, files: Mapping[str, str]) -> None:
        self.deployed[name] = dict(files)


async def test_an_agent_deployed_while_a_worker_was_reconnecting_is_served_there_once_it_is_back(
    pg_url: str,
) -> None:
    """The deploy's notification reached nobody on that worker: it never had the agent (404 for
    every session of it) until restarted."""
    a = await ClusterNode.open(pg_url, scan_interval=60)
    b = await ClusterNode.open(pg_url, scan_interval=60)
    try:
        registry = DeployedAgents()
        await a.agents.attach(registry)  # type: ignore[arg-type]
        may_reconnect = asyncio.Event()
        connect = a._connect
        assert connect is not None

        async def reconnect_when_allowed() -> object:
            await may_reconnect.wait()
            return await connect()

        a._connect = reconnect_when_allowed  # type: ignore[assignment]
        await b.pool.execute("SELECT pg_terminate_backend($1)", a.connection.get_server_pid())
        await until(lambda: a.ownership.lost)

        files = {"agent.yaml": "kind: Agent\n"}
        await b.pool.execute(
            "INSERT INTO dynamic_agents (name, files, updated_by) VALUES ($1, $2::json, 'b')",
            "late",
            json.dumps(files),
        )
        await b.pool.execute("SELECT pg_notify($1, $2)", b.agents.channel, "late")
        may_reconnect.set()

        await until(lambda: a.reconnects == 1)
        await until(lambda: registry.deployed.get("late") == files)
    finally:
        await a.close()
        await b.close()


async def test_a_worker_refuses_sessions_while_it_reconnects_and_takes_them_once_back(pg_url: str) -> None:
    a = await ClusterNode.open(pg_url, scan_interval=60)
    b = await ClusterNode.open(pg_url, scan_interval=60)
    try:
        may_reconnect = asyncio.Event()
        connect = a._connect
        assert connect is not None

        async def reconnect_when_allowed() -> object:
            await may_reconnect.wait()
            return await connect()

        a._connect = reconnect_when_allowed  # type: ignore[assignment]
        await a.ownership.claim("s_one")
        await b.pool.execute("SELECT pg_terminate_backend($1)", a.connection.get_server_pid())
        await until(lambda: a.ownership.lost)

        with pytest.raises(OwnershipLost, match="reconnecting; send the request again in a moment"):
            await a.ownership.claim("s_one")
        await b.ownership.claim("s_one", ask_owner=False)  # nobody holds it: another worker may
        may_reconnect.set()
        await until(lambda: a.reconnects == 1)

        await a.ownership.claim("s_two")
        assert a.ownership.held == {"s_two"}
    finally:
        await a.close()
        await b.close()


async def test_an_unexpected_error_while_reconnecting_is_retried_and_does_not_break_close(
    pg_url: str,
) -> None:
    """An error asyncpg does not wrap (its InternalClientError is a plain Exception) ended the
    reconnect for good: the worker answered 503 until restarted."""
    a = await ClusterNode.open(pg_url, scan_interval=60)
    b = await ClusterNode.open(pg_url, scan_interval=60)
    try:
        connect = a._connect
        assert connect is not None
        tries = 0

        async def failing_once() -> object:
            nonlocal tries
            tries += 1
            if tries == 1:
                raise RuntimeError("not an error asyncpg wraps")
            return await connect()

        a._connect = failing_once  # type: ignore[assignment]
        await b.pool.execute("SELECT pg_terminate_backend($1)", a.connection.get_server_pid())

        await until(lambda: a.reconnects == 1)
        assert tries == 2
        await a.ownership.claim("s_one")
        assert a.ownership.held == {"s_one"}
    finally:
        await a.close()
        await b.close()


async def test_a_reconnect_that_times_out_says_so_in_the_log(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncpg's timeouts carry no message: the log read `reconnecting to PostgreSQL failed ()`."""
    a = await ClusterNode.open(pg_url, scan_interval=60)
    b = await ClusterNode.open(pg_url, scan_interval=60)
    try:
        connect = a._connect
        assert connect is not None
        tries = 0

        async def timing_out_once() -> object:
            nonlocal tries
            tries += 1
            if tries == 1:
                raise TimeoutError
            return await connect()

        a._connect = timing_out_once  # type: ignore[assignment]
        await b.pool.execute("SELECT pg_terminate_backend($1)", a.connection.get_server_pid())

        await until(lambda: a.reconnects == 1)
        failed = [
            r.getMessage() for r in caplog.records if "reconnecting to PostgreSQL failed" in r.getMessage()
        ]
        assert failed, caplog.text
        assert failed[0].startswith("reconnecting to PostgreSQL failed (no answer in time); trying again in")
    finally:
        await a.close()
        await b.close()
