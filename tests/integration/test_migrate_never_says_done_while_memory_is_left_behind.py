"""`duragent migrate --to postgres`: memory PostgreSQL would serve but cannot hold is a problem, not a note.

A MEMORY.md holding a NUL character or a day file that is not UTF-8 cannot be stored in
PostgreSQL. Reporting them as "not copied" and then "Done, flip the configuration" would lose
that memory for the agent; they must stop the migration from being called complete (exit 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.migrate import MigrationReport, MigrationRequest, migrate
from duragent.testing.postgres import temporary_schema


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


def workspace_with_memory(root: Path, files: dict[str, bytes]) -> Path:
    memory = root / ".duragent" / "memory"
    for path, data in files.items():
        (memory / path).parent.mkdir(parents=True, exist_ok=True)
        (memory / path).write_bytes(data)
    config = root / "duragent.yaml"
    config.write_text("data_dir: .duragent\ngit:\n  enabled: false\n")
    return config


async def migrate_memory_to(pg_url: str, config: Path) -> MigrationReport:
    return await migrate(
        load_config(config), MigrationRequest(to="postgres", url=pg_url, memory=True), env={}
    )


async def test_a_memory_md_postgresql_cannot_hold_keeps_the_migration_incomplete(
    pg_url: str, tmp_path: Path
) -> None:
    config = workspace_with_memory(
        tmp_path,
        {"assistant/MEMORY.md": b"paste with a NUL \x00 in it\n", "world/team.md": b"# Team\n"},
    )

    report = await migrate_memory_to(pg_url, config)

    assert not report.complete
    (problem,) = report.problems
    assert problem.startswith("memory assistant/MEMORY.md: not copied: PostgreSQL text cannot hold NUL")
    assert "would lose" in problem
    assert [entry.path for entry in report.memory if entry.verified] == ["world/team.md"]


async def test_a_day_file_that_is_not_utf8_keeps_the_migration_incomplete(
    pg_url: str, tmp_path: Path
) -> None:
    config = workspace_with_memory(tmp_path, {"assistant/2026-11-20.md": b"# 2026-11-20\n\n- caf\xe9\n"})

    report = await migrate_memory_to(pg_url, config)

    assert not report.complete
    (problem,) = report.problems
    assert problem.startswith("memory assistant/2026-11-20.md: not copied: not UTF-8 text")


async def test_a_file_postgresql_memory_has_no_place_for_stays_a_warning(pg_url: str, tmp_path: Path) -> None:
    config = workspace_with_memory(tmp_path, {"assistant/notes.md": b"# Notes \x00\n"})

    report = await migrate_memory_to(pg_url, config)

    assert report.complete
    (skipped,) = report.memory
    assert skipped.action == "skipped"
    assert "<agent>/MEMORY.md" in (skipped.problem or "")
