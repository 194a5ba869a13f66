"""While PostgreSQL is gone, a worker's pools log no traceback after traceback.

asyncpg 0.32 keeps a pool's `min_size` connections open in the background: each failed attempt
to reopen them logs a full traceback ("Failed to restore the pool connection floor"), for every
pool, until the database is back. The worker's own reconnect already says, in one line, that the
database is gone; the pools must open connections only when a query needs one.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from duragent.stores.postgres.pool import create_pool, parse_postgres_url
from duragent.testing.postgres import postgres_test_url, temporary_schema
from tests.waiting import until


@pytest.fixture
async def role_url() -> AsyncIterator[tuple[str, str]]:
    """A URL logging in as a role of its own, which the test can shut out; and the role's name."""
    name = f"duragent_test_role_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(parse_postgres_url(postgres_test_url()).dsn, timeout=5)
    await admin.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        async with temporary_schema() as url:
            parts = urlsplit(url)
            netloc = f"{name}@{parts.hostname}:{parts.port}" if parts.port else f"{name}@{parts.hostname}"
            yield urlunsplit(parts._replace(netloc=netloc)), name
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await admin.execute(f'DROP ROLE "{name}"')
        await admin.close()


async def test_a_pool_whose_database_went_away_logs_no_traceback_while_it_is_gone(
    role_url: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, role = role_url
    admin = await asyncpg.connect(parse_postgres_url(postgres_test_url()).dsn, timeout=5)
    pool = await create_pool(parse_postgres_url(url))
    try:
        assert await pool.fetchval("SELECT 1") == 1
        caplog.set_level(logging.WARNING, logger="asyncpg.pool")

        # The database goes away for this pool: its connections are cut, new ones refused.
        await admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await until(lambda: pool.get_size() == 0)  # the pool saw its connection go
        with pytest.raises(asyncpg.PostgresError, match="not permitted to log in"):
            await pool.fetchval("SELECT 1")  # the query that meets the outage reports it

        await admin.execute(f'ALTER ROLE "{role}" LOGIN')
        assert await pool.fetchval("SELECT 2") == 2  # and the pool works again once it is back
    finally:
        await pool.close()
        await admin.close()

    retries = [record for record in caplog.records if record.name == "asyncpg.pool"]
    assert retries == []
