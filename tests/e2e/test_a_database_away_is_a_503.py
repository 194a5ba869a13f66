"""PostgreSQL going away under a worker (a restart, a network cut) answers requests with a 503
worth retrying, not a 500 that reads as the server's own bug."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import start_serve, write_workspace
from tests.e2e.test_workers_failover import API_HEADERS, worker_config

pytest_plugins = ["duragent.testing.pytest_plugin"]


class CuttableLink:
    """A TCP relay to PostgreSQL on a port of its own, which the test can cut: every connection
    through it closed, new ones refused."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


@pytest.fixture
async def link_url() -> AsyncIterator[tuple[CuttableLink, str]]:
    async with temporary_schema() as url:
        parts = urlsplit(url)
        link = CuttableLink(parts.hostname or "127.0.0.1", parts.port or 5432)
        port = await link.start()
        netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
        yield link, urlunsplit(parts._replace(netloc=netloc))
        with contextlib.suppress(Exception):
            await link.cut()


async def test_reading_a_session_while_the_database_is_away_is_a_503_to_retry(
    tmp_path: Path, fake_llm: FakeLLMServer, link_url: tuple[CuttableLink, str]
) -> None:
    link, url = link_url
    worker = await asyncio.to_thread(
        start_serve, worker_config(tmp_path / "w", fake_llm.url, url), tmp_path / "w.log"
    )
    try:
        fake_llm.enqueue(text("hello"))
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            async with http.post(f"{worker.url}/api/v1/sessions", json={"agent": "helper"}) as made:
                session_id = (await made.json())["session_id"]
            async with http.post(
                f"{worker.url}/api/v1/sessions/{session_id}/messages", json={"content": "hi"}
            ) as sent:
                assert sent.status == 200, await sent.text()

            await link.cut()
            async with http.get(f"{worker.url}/api/v1/sessions?limit=5") as listed:
                problem = await listed.json(content_type=None)
                assert listed.status == 503, problem
                assert listed.headers["Retry-After"] == "5"
                assert listed.content_type == "application/problem+json"
                assert problem["detail"].startswith("the database is not reachable")
    finally:
        worker.terminate()
    # Logged once, as the outage it is (what to check), not as a server bug with its traceback.
    logged = worker.log()
    assert "WARNING duragent.server.problems: GET /api/v1/sessions answered 503" in logged, logged
    assert "check that PostgreSQL is running and reachable" in logged, logged
    assert "ERROR duragent.server.problems" not in logged, logged
    assert "Traceback" not in logged, logged


async def test_memory_in_a_database_that_went_away_makes_the_worker_not_ready(
    tmp_path: Path, fake_llm: FakeLLMServer, link_url: tuple[CuttableLink, str]
) -> None:
    """Sessions in files answer, but every turn would fail reading memory: not ready, and why.
    (A memory database that cannot be reached at start stops `serve` there, naming its line.)"""
    link, url = link_url
    config = write_workspace(tmp_path / "w", fake_llm.url, git=False)
    with config.open("a") as file:
        file.write(f"services:\n  memory:\n    backend: postgres\n    url: {url}\n")
    worker = await asyncio.to_thread(start_serve, config, tmp_path / "w.log")
    try:
        await link.cut()
        async with aiohttp.ClientSession() as http, http.get(f"{worker.url}/readyz") as ready:
            health = await ready.json()
        assert ready.status == 503, health
        assert health["status"] == "unavailable"
        assert any(problem.startswith("memory store unreachable") for problem in health["problems"]), health
    finally:
        worker.terminate()
