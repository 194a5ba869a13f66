"""PostgreSQL memory gives the very files and answers the filesystem store gives, plus provenance."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest

from duragent.stores.base import MemoryEntry, MemoryQuery, MemoryStore
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.stores.postgres.memory import PostgresMemoryStore
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.testing.postgres import temporary_schema

D1, D2 = date(2026, 11, 24), date(2026, 11, 25)

#: Sections out of canonical order, a custom heading, multi-line text: where layouts could differ.
PUTS = [
    ("assistant", MemoryEntry("User's blog is example.com", "fact", D1)),
    ("assistant", MemoryEntry("Chose Telegram as primary interface", "decision", D1)),
    ("assistant", MemoryEntry("Open questions:\n  which VPS?", "Open Questions", D1)),
    ("assistant", MemoryEntry("User prefers bullet points", "preferences", D1)),
    ("assistant", MemoryEntry("Prefers short replies", "Preferences Learned", D1)),
    ("assistant", MemoryEntry("blog moved to blog.example.com", "fact", D2)),
    ("helper", MemoryEntry("helper's own note", "fact", D2)),
]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def fill(store: MemoryStore) -> None:
    for agent, entry in PUTS:
        await store.put(agent, entry)
    await store.write_long_term("assistant", "# Long-term\n\n- The user is Ada\n")
    await store.write_world("team", "# Team\n\n- Ada leads\n")


async def archive_files(store: MemoryStore, agent: str | None) -> dict[str, str]:
    data = b"".join([chunk async for chunk in store.export(agent)])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            member.name: archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in archive.getmembers()
        }


async def test_export_and_daily_markdown_equal_the_filesystem_stores_for_the_same_puts(
    pg_url: str, tmp_path: Path
) -> None:
    fs_store = FilesystemMemoryStore(tmp_path / "memory")
    pg_store = PostgresMemoryStore(pg_url)
    try:
        await fill(fs_store)
        await fill(pg_store)
        for agent in ("assistant", None):
            assert await archive_files(pg_store, agent) == await archive_files(fs_store, agent)
        assert (
            await pg_store.read_day("assistant", D1)
            == (tmp_path / "memory/assistant/2026-11-24.md").read_text()
        )
    finally:
        await pg_store.close()


@pytest.mark.parametrize("text", [None, "blog", "prefer", "which", "user bullet"])
async def test_queries_rank_exactly_as_on_files(pg_url: str, tmp_path: Path, text: str | None) -> None:
    fs_store = FilesystemMemoryStore(tmp_path / "memory")
    pg_store = PostgresMemoryStore(pg_url)
    try:
        await fill(fs_store)
        await fill(pg_store)
        query = MemoryQuery(text=text)
        found_fs = await fs_store.query("assistant", query)
        found_pg = await pg_store.query("assistant", query)
    finally:
        await pg_store.close()
    assert [(e.text, e.section, e.day) for e in found_pg] == [(e.text, e.section, e.day) for e in found_fs]


async def test_query_results_carry_the_source_and_time_they_were_put_with(pg_url: str) -> None:
    store = PostgresMemoryStore(pg_url)
    written_at = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    try:
        await store.put("assistant", MemoryEntry("likes tea", "preference", D1, written_at, "s_0001"))
        await store.put("assistant", MemoryEntry("likes tea", "preference", D1, None, "human"))
        found = await store.query("assistant", MemoryQuery(text="tea"))
    finally:
        await store.close()
    assert [(entry.source, entry.created_at == written_at) for entry in found] == [
        ("human", False),
        ("s_0001", True),
    ]


async def test_replaced_long_term_and_world_memory_stay_in_history_tables(pg_url: str) -> None:
    store = PostgresMemoryStore(pg_url)
    try:
        await store.write_long_term("assistant", "v1\n")
        await store.write_long_term("assistant", "v2\n")
        await store.write_world("team", "old team\n")
        await store.write_world("team", "new team\n")
    finally:
        await store.close()
    target = parse_postgres_url(pg_url)
    connection = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
    try:
        long_term = await connection.fetch("SELECT text FROM memory_long_term_history ORDER BY id")
        world = await connection.fetch("SELECT text FROM memory_world_history ORDER BY id")
    finally:
        await connection.close()
    assert [row["text"] for row in long_term] == ["v1\n"]
    assert [row["text"] for row in world] == ["old team\n"]


async def test_entry_text_is_redacted_before_it_is_stored(pg_url: str) -> None:
    store = PostgresMemoryStore(pg_url, redact=lambda text: text.replace("hunter2", "[REDACTED]"))
    try:
        await store.put("assistant", MemoryEntry("password is hunter2", "fact", D1))
        markdown = await store.read_day("assistant", D1)
        found = await store.query("assistant", MemoryQuery(text="password"))
    finally:
        await store.close()
    assert markdown is not None
    assert "hunter2" not in markdown
    assert [entry.text for entry in found] == ["password is [REDACTED]"]
