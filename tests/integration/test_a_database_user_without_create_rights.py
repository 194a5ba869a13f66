"""A database user that may not create schemas: it uses one a DBA made for it, else a clear error."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.stores.postgres.migrations import MigrationError, available_migrations
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.testing.postgres import postgres_test_url, temporary_schema


@pytest.fixture
async def role() -> AsyncIterator[str]:
    """A login role with no CREATE right on the test database (PostgreSQL's default for a role)."""
    name = f"duragent_test_role_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(parse_postgres_url(postgres_test_url()).dsn, timeout=5)
    await admin.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        yield name
    finally:
        await admin.execute(f'DROP OWNED BY "{name}"')
        await admin.execute(f'DROP ROLE "{name}"')
        await admin.close()


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{user}@{host}:{parts.port}" if parts.port else f"{user}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def db_upgrade(tmp_path: Path, url: str) -> tuple[str, BaseException | None]:
    config = tmp_path / "duragent.yaml"
    config.write_text(f"services:\n  session:\n    backend: postgres\n    url: '{url}'\n")
    result = CliRunner().invoke(build_app(), ["--config", str(config), "db", "upgrade"])
    return result.output, result.exception


async def test_a_schema_a_dba_created_for_the_user_is_migrated_without_create_on_the_database(
    role: str, tmp_path: Path
) -> None:
    async with temporary_schema() as admin_url:
        target = parse_postgres_url(admin_url)
        admin = await asyncpg.connect(target.dsn, timeout=5)
        try:
            await admin.execute(f'ALTER SCHEMA "{target.schema}" OWNER TO "{role}"')
        finally:
            await admin.close()

        # (the CLI runs its own event loop: off this one)
        output, error = await asyncio.to_thread(db_upgrade, tmp_path, as_user(admin_url, role))

        assert error is None, error
        versions = ", ".join(f"{migration.version:04d}" for migration in available_migrations())
        assert f"applied {versions}" in output


async def test_a_user_who_may_not_create_the_schema_gets_an_error_saying_what_to_grant(
    role: str, tmp_path: Path
) -> None:
    schema = f"duragent_test_{secrets.token_hex(6)}"
    url = as_user(postgres_test_url(), role) + f"?schema={schema}"

    _output, error = await asyncio.to_thread(db_upgrade, tmp_path, url)

    assert isinstance(error, MigrationError)  # the CLI prints it as one line, exit 1: no traceback
    assert f"cannot create schema {schema!r}" in str(error)
    assert "permission denied" in str(error)
    assert "CREATE" in str(error)
