"""`duragent migrate --to filesystem --path X` where X (or a folder in it) is a file: a usage
error naming the file, before anything is read or written, dry run included (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.testing.postgres import temporary_schema
from tests.integration.test_migrate import postgres_services, run_cli, seed_workspace, write_config


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture(autouse=True)
def no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)


def on_postgres(pg_url: str, tmp_path: Path) -> Path:
    """A workspace whose sessions and memory are in PostgreSQL (migrated there from files)."""
    config, _ids = asyncio.run(seed_workspace(tmp_path / "ws"))
    code, output = run_cli(config, "--to", "postgres", "--url", pg_url)
    assert code == 0, output
    return write_config(tmp_path / "ws", postgres_services(pg_url))


def test_a_path_that_is_a_file_is_refused_by_name_and_nothing_is_written(pg_url: str, tmp_path: Path) -> None:
    config = on_postgres(pg_url, tmp_path)
    in_the_way = tmp_path / "backup"
    in_the_way.write_text("not a folder\n")

    code, output = run_cli(config, "--to", "filesystem", "--path", str(in_the_way))
    dry_code, dry_output = run_cli(config, "--to", "filesystem", "--path", str(in_the_way), "--dry-run")

    expected = (
        f"error: cannot write the sessions to {in_the_way}/sessions: {in_the_way} is a file, not a folder"
    )
    assert (code, dry_code) == (2, 2)
    assert expected in output
    assert expected in dry_output
    assert "Traceback" not in output + dry_output
    assert in_the_way.read_text() == "not a folder\n"


def test_a_service_folder_that_is_a_file_is_refused_by_name(pg_url: str, tmp_path: Path) -> None:
    config = on_postgres(pg_url, tmp_path)
    target = tmp_path / "back"
    target.mkdir()
    (target / "memory").write_text("a file where the memory folder goes\n")

    code, output = run_cli(config, "--to", "filesystem", "--path", str(target))

    assert code == 2
    assert f"cannot write the memory to {target}/memory: {target}/memory is a file, not a folder" in output
    assert not (target / "sessions").exists()  # refused before anything was written
