"""`duragent db status` and `duragent db upgrade` against a real PostgreSQL schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.stores.postgres.migrations import available_migrations
from duragent.testing.postgres import temporary_schema


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "duragent.yaml"
    config.write_text(
        "services:\n"
        f"  session:\n    backend: postgres\n    url: '{url}'\n"
        f"  memory:\n    backend: postgres\n    url: '{url}'\n"
    )
    return config


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), ["--config", str(config), "db", *args])
    return result.exit_code, result.output


def test_status_shows_pending_migrations_and_upgrade_applies_them_once(pg_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, pg_url)
    latest = available_migrations()[-1].version

    code, before = run(config, "status")
    assert code == 0, before
    assert "session, memory: postgresql://postgres@" in before
    assert f"version 0 of {latest}" in before
    assert "run `duragent db upgrade`" in before

    code, upgraded = run(config, "upgrade")
    assert code == 0, upgraded
    assert "applied 0001" in upgraded

    code, again = run(config, "upgrade")
    assert (code, "already up to date" in again) == (0, True)

    code, after = run(config, "status", "--json")
    assert code == 0, after
    (report,) = json.loads(after)
    assert report["services"] == ["session", "memory"]
    assert (report["current"], report["latest"], report["pending"]) == (latest, latest, [])
    assert report["schema"].startswith("duragent_test_")


def test_status_without_postgres_services_says_so(tmp_path: Path) -> None:
    config = tmp_path / "duragent.yaml"
    config.write_text("services:\n  session:\n    backend: filesystem\n")
    code, output = run(config, "status")
    assert code == 0
    assert "No service uses PostgreSQL" in output
    code, output = run(config, "status", "--json")
    assert json.loads(output) == []


def test_the_password_of_the_url_is_never_printed(pg_url: str, tmp_path: Path) -> None:
    url_with_password = pg_url.replace("postgres@", "postgres:s3cret@")
    config = write_config(tmp_path, url_with_password)
    _code, output = run(config, "status")
    assert "s3cret" not in output


def test_status_of_a_schema_newer_than_this_duragent_says_so_and_exits_non_zero(
    pg_url: str, tmp_path: Path
) -> None:
    import asyncio
    from urllib.parse import parse_qs, urlsplit

    import asyncpg

    config = write_config(tmp_path, pg_url)
    assert run(config, "upgrade")[0] == 0
    schema = parse_qs(urlsplit(pg_url).query)["schema"][0]

    async def migrate_from_the_future() -> None:
        connection = await asyncpg.connect(pg_url.split("?")[0])
        try:
            await connection.execute(
                f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES (9999, $1)',
                "from_the_future",
            )
        finally:
            await connection.close()

    asyncio.run(migrate_from_the_future())
    code, output = run(config, "status")
    assert code == 1, output
    assert "up to date" not in output
    assert "newer than this Duragent" in output
    assert "9999" in output
    code, output = run(config, "status", "--json")
    assert code == 1
    assert json.loads(output)[0]["newer"] == [9999]


@pytest.fixture
async def user_without_access(pg_url: str) -> AsyncIterator[str]:
    """`pg_url` as a database user who may log in but was granted nothing on its schema."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    role = f"duragent_test_role_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    admin = await asyncpg.connect(pg_url.split("?")[0])
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        parts = urlsplit(pg_url)
        host = parts.netloc.rpartition("@")[2]
        yield urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@pytest.mark.parametrize("command", ["status", "upgrade"])
def test_db_commands_for_a_user_without_rights_on_the_schema_say_what_to_grant(
    pg_url: str, user_without_access: str, tmp_path: Path, command: str
) -> None:
    import subprocess
    import sys
    from urllib.parse import parse_qs, urlsplit

    assert run(write_config(tmp_path, pg_url), "upgrade")[0] == 0  # the schema exists, made by its owner
    schema = parse_qs(urlsplit(pg_url).query)["schema"][0]
    config = write_config(tmp_path, user_without_access)

    refused = subprocess.run(
        [sys.executable, "-m", "duragent", "-c", str(config), "db", command],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"{config}:4:" in refused.stderr
    assert "services.session.url, services.memory.url:" in refused.stderr
    assert f"permission denied for schema {schema}" in refused.stderr
    assert f"GRANT USAGE, CREATE ON SCHEMA {schema} TO" in refused.stderr
