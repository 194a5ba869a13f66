"""Schema migrations: applied once, safe when workers start together, refused when too new."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from duragent.stores.postgres.migrations import (
    MigrationError,
    available_migrations,
    ensure_schema,
    migration_status,
)
from duragent.stores.postgres.pool import PostgresTarget, create_pool, parse_postgres_url
from duragent.testing.postgres import temporary_schema


@pytest.fixture
async def target() -> AsyncIterator[PostgresTarget]:
    """A fresh schema's target whose schema does not exist yet (ensure_schema must create it)."""
    async with temporary_schema() as url:
        base = parse_postgres_url(url)
        yield PostgresTarget(base.dsn, f"{base.schema}_new")
        pool = await create_pool(base)
        try:
            await pool.execute(f'DROP SCHEMA IF EXISTS "{base.schema}_new" CASCADE')
        finally:
            await pool.close()


def test_the_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [migration.version for migration in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert available_migrations()[0].name == "initial"


async def test_ensure_schema_creates_the_schema_and_a_second_call_applies_nothing(
    target: PostgresTarget,
) -> None:
    pool = await create_pool(target)
    try:
        first = await ensure_schema(pool, target.schema)
        second = await ensure_schema(pool, target.schema)
        status = await migration_status(pool, target.schema)
        tables = await pool.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", target.schema
        )
    finally:
        await pool.close()
    latest = available_migrations()[-1].version
    assert first == list(range(1, latest + 1))
    assert second == []
    assert (status.current, status.latest, status.pending) == (latest, latest, [])
    assert tables >= 10


async def test_two_workers_migrating_at_the_same_moment_apply_each_migration_once(
    target: PostgresTarget,
) -> None:
    pools = [await create_pool(target) for _ in range(3)]
    try:
        results = await asyncio.gather(*(ensure_schema(pool, target.schema) for pool in pools))
        recorded = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        for pool in pools:
            await pool.close()
    applied = sorted(version for result in results for version in result)
    assert applied == [migration.version for migration in available_migrations()]
    assert [row["version"] for row in recorded] == applied


async def test_a_database_migrated_by_a_newer_duragent_is_refused(target: PostgresTarget) -> None:
    pool = await create_pool(target)
    try:
        await ensure_schema(pool, target.schema)
        await pool.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
        with pytest.raises(MigrationError, match="9999"):
            await ensure_schema(pool, target.schema)
    finally:
        await pool.close()


async def test_status_of_an_empty_database_lists_every_migration_as_pending(target: PostgresTarget) -> None:
    pool = await create_pool(target)
    try:
        status = await migration_status(pool, target.schema)
    finally:
        await pool.close()
    assert status.current == 0
    assert [migration.version for migration in status.pending] == [
        migration.version for migration in available_migrations()
    ]
