"""A database that goes silent (a network partition, a failover that drops the old address's
packets) fails a store's queries within the store's query timeout, on the real PostgreSQL, instead
of holding them (and the pool connections they use) until the operating system gives up on the TCP
connection, a quarter of an hour later. /readyz and every read waited that long."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.postgres import temporary_schema


class SilentRelay:
    """A TCP relay to PostgreSQL that can go silent: it keeps every connection open but passes
    no byte on (and opens no new upstream connection) until it speaks again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.speaking = asyncio.Event()
        self.speaking.set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.speaking.set()
        if self.server is not None:
            self.server.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self.speaking.wait()
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.speaking.wait()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[tuple[SilentRelay, str]]:
    """A relay to the test server and `pg_url` going through it."""
    parts = urlsplit(pg_url)
    relay = SilentRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    port = await relay.start()
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield relay, urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
    finally:
        await relay.close()


async def test_a_query_to_a_database_gone_silent_fails_in_time_and_the_store_answers_once_it_is_back(
    relay: tuple[SilentRelay, str],
) -> None:
    silent, url = relay
    store = PostgresSessionStore(url, query_timeout=1.0)
    try:
        assert await store.list(limit=1) == []  # connected and migrated while the database speaks

        silent.speaking.clear()
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # (an OSError from asyncpg: the server answers 503)
            await asyncio.wait_for(store.list(limit=1), 15)
        assert time.monotonic() - started < 5

        # A caller that stops waiting first (/readyz gives a store 2 s) gets its answer in time
        # too: cancelling the query does not wait for the silent server to acknowledge it.
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.wait_for(store.list(limit=1), 0.2), 15)
        assert time.monotonic() - started < 5

        silent.speaking.set()
        assert await asyncio.wait_for(store.list(limit=1), 15) == []
    finally:
        silent.speaking.set()
        await store.close()
