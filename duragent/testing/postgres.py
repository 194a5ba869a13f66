"""A throwaway PostgreSQL schema per test, for our tests and for plugin authors' (needs asyncpg).

The server is the one at `DURAGENT_TEST_PG_URL` (default
`postgresql://postgres@127.0.0.1:5432/test`). Each `temporary_schema()` creates
`duragent_test_<random>`, yields a URL that selects it (`?schema=...`) and drops it afterwards,
so parallel runs (`pytest -n 2`, other checkouts) never see each other's rows.

When the server cannot be reached the test is skipped with the reason, except under `CI=true`,
where a missing database must fail the build rather than silently skip half the suite.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_TEST_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_test_url() -> str:
    """The PostgreSQL server tests use: `DURAGENT_TEST_PG_URL` or the local default."""
    return os.environ.get("DURAGENT_TEST_PG_URL") or DEFAULT_TEST_PG_URL


def with_schema(url: str, schema: str) -> str:
    """`url` with its `schema` query parameter set to `schema`."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "schema"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)])))


def unavailable(reason: str) -> None:
    """Skip the current test because PostgreSQL is missing, or fail it under CI=true."""
    import pytest

    message = f"PostgreSQL not reachable at DURAGENT_TEST_PG_URL ({reason})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


@asynccontextmanager
async def temporary_schema(url: str | None = None) -> AsyncIterator[str]:
    """A fresh, empty schema on the test server; yields a URL selecting it, drops it at the end."""
    import asyncpg

    from duragent.stores.postgres.pool import parse_postgres_url

    base = url or postgres_test_url()
    schema = f"duragent_test_{secrets.token_hex(6)}"
    dsn = parse_postgres_url(base).dsn
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        unavailable(str(error))
        raise  # unavailable() always raises; this keeps type checkers informed
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield with_schema(base, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()
