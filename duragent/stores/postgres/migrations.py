"""Versioned schema migrations: the SQL files in `migrations/`, applied in order under an advisory lock.

Files are named `<version>_<name>.sql` (`0001_initial.sql`); each is applied once and recorded
in `schema_migrations(version, name, applied_at)`. The pending ones are applied in one
transaction, so a failing file leaves the database as it was before the upgrade.
`ensure_schema` holds a transaction-scoped advisory lock keyed by the schema while it looks at
and applies migrations, so any number of workers may start together: the first applies, the
others wait on the lock and then find nothing left to do.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from duragent.errors import DuragentError
from duragent.stores.postgres.pool import (
    QUERY_TIMEOUT,
    PostgresTarget,
    check_schema_name,
    create_pool,
    parse_postgres_url,
)

if TYPE_CHECKING:
    import asyncpg

    from duragent.config import DuragentConfig

#: First key of the advisory lock (ASCII "DRGM"); the second is a hash of the schema name.
_LOCK_CLASS = 0x4452474D
#: Seconds a migration (or the wait for another worker's) may take: far beyond a store's query
#: timeout, since a migration may rewrite or index every event.
MIGRATION_TIMEOUT = 24 * 3600.0
#: Seconds between tries for the migration lock while another process migrates.
_LOCK_RETRY_DELAY = 0.2
_FILE_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql")


class MigrationError(DuragentError):
    """The database schema is newer than this version of Duragent, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version number, its name and its statements."""

    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationStatus:
    """Where a database stands: applied versions (with times) and what this Duragent ships."""

    schema: str
    applied: dict[int, datetime]
    available: list[Migration]

    @property
    def current(self) -> int:
        """The highest applied version (0 for an empty database)."""
        return max(self.applied, default=0)

    @property
    def latest(self) -> int:
        """The highest version this Duragent ships."""
        return max((migration.version for migration in self.available), default=0)

    @property
    def unknown(self) -> list[int]:
        """Applied versions this Duragent does not ship: a newer Duragent migrated the database."""
        known = {migration.version for migration in self.available}
        return sorted(set(self.applied) - known)

    @property
    def pending(self) -> list[Migration]:
        """Migrations `db upgrade` would apply, in order."""
        return [migration for migration in self.available if migration.version not in self.applied]


def available_migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    folder = resources.files("duragent.stores.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    return found


async def applied_versions(connection: asyncpg.Connection | asyncpg.Pool, schema: str) -> dict[int, datetime]:
    """Version -> when it was applied, in `schema` ({} when Duragent's tables were never created)."""
    check_schema_name(schema)
    exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.schema_migrations")
    if not exists:
        return {}
    rows = await connection.fetch(f'SELECT version, applied_at FROM "{schema}".schema_migrations')
    return {int(row["version"]): row["applied_at"] for row in rows}


async def migration_status(pool: asyncpg.Pool, schema: str) -> MigrationStatus:
    """What is applied in `schema` and what this Duragent ships (changes nothing).

    MigrationError, saying what to grant, when the database user may not read the schema.
    """
    async with pool.acquire() as connection:
        await _check_access(connection, schema, "USAGE")
        try:
            applied = await applied_versions(connection, schema)
        except _postgres_error_type() as error:
            raise MigrationError(f"cannot read the migrations of schema {schema!r}: {error}") from error
    return MigrationStatus(schema, applied, available_migrations())


async def _check_access(connection: Any, schema: str, *privileges: str) -> None:
    """MigrationError saying what to grant when `schema` exists but the database user lacks
    `privileges` on it (another user made it: a DBA, or a worker running under another role)."""
    row = await connection.fetchrow(
        "SELECT current_user AS role, "
        + ", ".join(f"has_schema_privilege(oid, '{privilege}') AS {privilege}" for privilege in privileges)
        + " FROM pg_namespace WHERE nspname = $1",
        schema,
    )
    if row is None or all(row[privilege.lower()] for privilege in privileges):
        return
    role = row["role"]
    raise MigrationError(
        f"permission denied for schema {schema}: database user {role!r} may not use it. Grant it"
        f" (GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}; GRANT ALL ON ALL TABLES IN SCHEMA"
        f" {schema} TO {role}; GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}),"
        " or give this database user a schema of its own (?schema=<name> in the URL)"
    )


async def ensure_schema(pool: asyncpg.Pool, schema: str) -> list[int]:
    """Create `schema` and apply every pending migration; returns the versions applied now.

    Safe to call from many processes at once (advisory lock). MigrationError when the database
    has versions this Duragent does not know (a newer Duragent migrated it).
    """
    check_schema_name(schema)
    migrations = available_migrations()
    applied_now: list[int] = []
    async with pool.acquire() as connection, connection.transaction():
        await _lock_schema(connection, schema)
        await _prepare_schema(connection, schema)
        applied = await applied_versions(connection, schema)
        _refuse_unknown_versions(applied, migrations, schema)
        for migration in migrations:
            if migration.version in applied:
                continue
            await _apply(connection, migration)
            applied_now.append(migration.version)
    return applied_now


async def _lock_schema(connection: Any, schema: str) -> None:
    """Take the schema's migration lock for this transaction, waiting while another process holds
    it (its migrations may take long), one bounded try at a time: a database gone silent fails
    within QUERY_TIMEOUT rather than holding the start for a day."""
    deadline = time.monotonic() + MIGRATION_TIMEOUT
    while not await connection.fetchval(
        "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, schema, timeout=QUERY_TIMEOUT
    ):
        if time.monotonic() >= deadline:
            raise MigrationError(f"schema {schema}: another process has been migrating it for a day")
        await asyncio.sleep(_LOCK_RETRY_DELAY)


async def _prepare_schema(connection: Any, schema: str) -> None:
    """The schema and its `schema_migrations` table, created when missing (MigrationError when the
    user may not: the first thing a database user without CREATE rights meets)."""
    asyncpg_error = _postgres_error_type()
    try:
        # Looked up first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
        # schema exists, and a schema a DBA made for the user is how many databases are set up.
        if not await connection.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await connection.execute(f'CREATE SCHEMA "{schema}"')
        await _check_access(connection, schema, "USAGE", "CREATE")
        await connection.execute(f'SET LOCAL search_path TO "{schema}"')
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    except asyncpg_error as error:
        raise MigrationError(
            f"cannot create schema {schema!r} and its tables: {error}. Grant the database user"
            f" CREATE on the database (or create schema {schema!r} owned by it), or run"
            " `duragent db upgrade` once as a user who may"
        ) from error


async def _apply(connection: Any, migration: Migration) -> None:
    """Run one migration inside the caller's transaction (a savepoint names the failing file)."""
    asyncpg_error = _postgres_error_type()
    try:
        async with connection.transaction():
            await connection.execute(migration.sql, timeout=MIGRATION_TIMEOUT)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    except asyncpg_error as error:
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name}.sql failed: {error}"
        ) from error


def _refuse_unknown_versions(applied: dict[int, datetime], migrations: list[Migration], schema: str) -> None:
    known = {migration.version for migration in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        versions = ", ".join(f"{version:04d}" for version in unknown)  # (as `duragent db status` names them)
        raise MigrationError(
            f"schema {schema!r} has migration(s) {versions} that this version of Duragent does not know:"
            " upgrade Duragent"
        )


def _postgres_error_type() -> type[Exception]:
    import asyncpg

    error_type: type[Exception] = asyncpg.PostgresError
    return error_type


# --- operators' view: every database the configuration uses ------------------------------------


def configured_databases(config: DuragentConfig) -> dict[PostgresTarget, list[str]]:
    """The PostgreSQL databases (URL + schema) `services.*` use, each with the services on it."""
    from duragent.stores.factory import postgres_url

    databases: dict[PostgresTarget, list[str]] = {}
    for service in ("session", "memory"):
        if getattr(config.services, service).backend == "postgres":
            target = parse_postgres_url(postgres_url(config, service))
            databases.setdefault(target, []).append(service)
    return databases


async def database_status(target: PostgresTarget) -> MigrationStatus:
    """Connect to one database and report its migrations (changes nothing)."""
    pool = await create_pool(target, min_size=1, max_size=1)
    try:
        return await migration_status(pool, target.schema)
    finally:
        await pool.close()


async def upgrade_database(target: PostgresTarget) -> list[int]:
    """Connect to one database and apply its pending migrations; the versions applied."""
    pool = await create_pool(target, min_size=1, max_size=1)
    try:
        return await ensure_schema(pool, target.schema)
    finally:
        await pool.close()
