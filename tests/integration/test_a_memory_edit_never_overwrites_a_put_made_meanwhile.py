"""PostgreSQL memory: a person's edit of a day (or MEMORY.md) that had no text yet never writes over
what the agent stored for it in the same moment; the edit is refused as a conflict instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from duragent.stores.base import MemoryConflict, utcnow
from duragent.stores.postgres.memory import PostgresMemoryStore
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.testing.postgres import temporary_schema
from tests.waiting import eventually

DAY = date(2026, 11, 27)
PUT_BY_THE_AGENT = "# 2026-11-27\n\n## Facts\n\n- put by the agent meanwhile\n"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def waiting_on(connection: asyncpg.Connection, blocker: int) -> bool | None:
    """True once a query waits for a lock the connection `blocker` holds."""
    waiting = await connection.fetchval(
        "SELECT true FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", blocker
    )
    return waiting


async def store_as_the_agent(connection: asyncpg.Connection, day: date | None) -> None:
    """What a put (or the memory tool's MEMORY.md write) stores in its transaction."""
    if day is None:
        await connection.execute(
            "INSERT INTO memory_long_term (agent, text, updated_at) VALUES ('assistant', $1, $2)",
            PUT_BY_THE_AGENT,
            utcnow(),
        )
    else:
        await connection.execute(
            "INSERT INTO memory_days (agent, day, markdown, updated_at) VALUES ('assistant', $1, $2, $3)",
            day,
            PUT_BY_THE_AGENT,
            utcnow(),
        )


@pytest.mark.parametrize("day", [DAY, None], ids=["day", "MEMORY.md"])
async def test_an_edit_of_a_missing_text_racing_a_put_is_refused_and_the_put_is_kept(
    pg_url: str, day: date | None
) -> None:
    store = PostgresMemoryStore(pg_url)
    target = parse_postgres_url(pg_url)
    await store.days("assistant")  # opens the pool and creates the tables
    agent = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
    observer = await asyncpg.connect(target.dsn)
    try:
        # The agent's write has stored the row and is committing while the person saves an edit
        # made from the empty text.
        writing = agent.transaction()
        await writing.start()
        await store_as_the_agent(agent, day)
        edit = asyncio.ensure_future(store.replace_text("assistant", day, None, "written by a person\n"))
        await eventually(lambda: waiting_on(observer, agent.get_server_pid()))
        await writing.commit()

        with pytest.raises(MemoryConflict, match="changed while it was being edited"):
            await edit
        stored = (
            await store.read_long_term("assistant") if day is None else await store.read_day("assistant", DAY)
        )
        assert stored == PUT_BY_THE_AGENT
    finally:
        await agent.close()
        await observer.close()
        await store.close()
