"""PostgreSQL backends: session and memory stores, the connection pool and schema migrations.

Needs the `postgres` extra (`pip install 'duragent[postgres]'`, which brings asyncpg). Importing
this package is cheap; asyncpg is imported when a pool is opened.
"""

from __future__ import annotations

from duragent.stores.postgres.migrations import (
    Migration,
    MigrationStatus,
    applied_versions,
    available_migrations,
    ensure_schema,
    migration_status,
)
from duragent.stores.postgres.pool import DEFAULT_SCHEMA, PostgresTarget, create_pool, parse_postgres_url

__all__ = [
    "DEFAULT_SCHEMA",
    "Migration",
    "MigrationStatus",
    "PostgresTarget",
    "applied_versions",
    "available_migrations",
    "create_pool",
    "ensure_schema",
    "migration_status",
    "parse_postgres_url",
]
