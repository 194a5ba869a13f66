"""The PostgreSQL MemoryStore: the same daily Markdown as on files, plus each entry's provenance.

`memory_days` holds each day's Markdown exactly as the filesystem store would have written it
(every `put` applies `duragent.memory.markdown.add_bullet` to the stored text under a row lock),
so `read_day` and `export` give byte-for-byte the files a filesystem store would hold, and a
day imported from files (hand edits included) comes back unchanged. `memory_entries` records
every put with its time and source, in writing order. Queries parse the Markdown as the
filesystem store does and rank with `duragent.memory.search.rank_entries`, so results do not
depend on the backend. MEMORY.md and world topics keep their replaced versions in history
tables. `on_change` is accepted and ignored: git does not cover PostgreSQL.
"""

from __future__ import annotations

import io
import tarfile
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING

from duragent.errors import InvalidName
from duragent.ids import check_name
from duragent.memory.markdown import add_bullet, normalize_entry_text, parse_daily, section_key, storable
from duragent.memory.search import rank_entries
from duragent.stores.base import (
    ChangeListener,
    ContextMemory,
    MemoryConflict,
    MemoryEntry,
    MemoryQuery,
    ignore_changes,
    utcnow,
)
from duragent.stores.postgres.pool import LazyPool, parse_postgres_url

if TYPE_CHECKING:
    import asyncpg

WORLD = "world"
LONG_TERM_FILE = "MEMORY.md"
EXPORT_CHUNK_SIZE = 64 * 1024
_FILE_MODE = 0o644

_LOCK_DAY = """
INSERT INTO memory_days (agent, day, markdown, updated_at) VALUES ($1, $2, '', $3)
ON CONFLICT (agent, day) DO UPDATE SET agent = EXCLUDED.agent
RETURNING markdown
"""
_DAYS_IN_RANGE = """
SELECT day, markdown FROM memory_days
WHERE agent = $1 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
ORDER BY day
"""
_ENTRIES_IN_RANGE = """
SELECT day, section, text, created_at, source FROM memory_entries
WHERE agent = $1 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
ORDER BY id
"""
_KEEP_OLD_LONG_TERM = """
INSERT INTO memory_long_term_history (agent, text, updated_at)
SELECT agent, text, updated_at FROM memory_long_term WHERE agent = $1
"""
_WRITE_LONG_TERM = """
INSERT INTO memory_long_term (agent, text, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (agent) DO UPDATE SET text = EXCLUDED.text, updated_at = EXCLUDED.updated_at
"""
_KEEP_OLD_WORLD = """
INSERT INTO memory_world_history (topic, text, updated_at)
SELECT topic, text, updated_at FROM memory_world WHERE topic = $1
"""
_WRITE_WORLD = """
INSERT INTO memory_world (topic, text, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (topic) DO UPDATE SET text = EXCLUDED.text, updated_at = EXCLUDED.updated_at
"""
#: Everything the context reads each turn in one round trip: (kind, key, text) rows.
_CONTEXT_MEMORY = """
SELECT 'long_term' AS kind, NULL::date AS day, NULL::text AS topic, text
  FROM memory_long_term WHERE agent = $1
UNION ALL
SELECT 'world', NULL, topic, text FROM memory_world
UNION ALL
SELECT 'day', day, NULL, markdown FROM memory_days WHERE agent = $1 AND day = ANY($2::date[])
"""
#: Every Markdown file of the tree as (path under memory/, kind, owner, day); `$1` NULL = all agents.
_EXPORT_FILES = """
SELECT agent || '/' || to_char(day, 'YYYY-MM-DD') || '.md' AS path, 'day' AS kind, agent AS owner, day
  FROM memory_days WHERE $1::text IS NULL OR agent = $1
UNION ALL
SELECT agent || '/MEMORY.md', 'long_term', agent, NULL
  FROM memory_long_term WHERE $1::text IS NULL OR agent = $1
UNION ALL
SELECT 'world/' || topic || '.md', 'world', topic, NULL FROM memory_world
"""


class PostgresMemoryStore:
    """MemoryStore on PostgreSQL (see the module docstring for the tables).

    `url` or `pool`/`schema` as for PostgresSessionStore; `redact` rewrites entry text before it
    is stored (the secret guard), as the filesystem store does.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str | None = None,
        redact: Callable[[str], str] | None = None,
        on_change: ChangeListener = ignore_changes,
        migrate: bool = True,
        max_connections: int = 10,
    ):
        target = parse_postgres_url(url, schema) if url is not None else None
        self._pool = LazyPool(target, pool, schema=schema, migrate=migrate, max_size=max_connections)
        self._redact = redact
        del on_change  # git does not version PostgreSQL; see the module docstring

    # --- daily memory --------------------------------------------------------------------

    async def put(self, agent_id: str, entry: MemoryEntry) -> None:
        """Add the entry as a bullet at the end of its section of its day, and record its provenance."""
        _check_agent(agent_id)
        key = section_key(entry.section)
        text = normalize_entry_text(self._redact(entry.text) if self._redact else entry.text)
        now = utcnow()
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            old = await connection.fetchval(_LOCK_DAY, agent_id, entry.day, now)
            new = add_bullet(old or None, entry.day, key, text)
            await connection.execute(
                "UPDATE memory_days SET markdown = $3, updated_at = $4 WHERE agent = $1 AND day = $2",
                agent_id,
                entry.day,
                new,
                now,
            )
            await connection.execute(
                "INSERT INTO memory_entries (agent, day, section, text, created_at, source)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                agent_id,
                entry.day,
                key,
                text,
                entry.created_at or now,
                entry.source,
            )

    async def query(self, agent_id: str, query: MemoryQuery) -> list[MemoryEntry]:
        """Entries of the agent's days matching the query, best first, with created_at and source."""
        _check_agent(agent_id)
        pool = await self._pool.get()
        async with pool.acquire() as connection:
            days = await connection.fetch(_DAYS_IN_RANGE, agent_id, query.since, query.until)
            recorded = await connection.fetch(_ENTRIES_IN_RANGE, agent_id, query.since, query.until)
        provenance = _Provenance(recorded)
        entries = [
            provenance.attach(parsed) for row in days for parsed in parse_daily(row["markdown"], row["day"])
        ]
        return rank_entries(entries, query)

    async def read_day(self, agent_id: str, day: date) -> str | None:
        """The Markdown of one day, or None when that day has none."""
        _check_agent(agent_id)
        pool = await self._pool.get()
        markdown: str | None = await pool.fetchval(
            "SELECT markdown FROM memory_days WHERE agent = $1 AND day = $2", agent_id, day
        )
        return markdown

    async def days(self, agent_id: str) -> list[date]:
        """The days that have memory, newest first."""
        _check_agent(agent_id)
        pool = await self._pool.get()
        rows = await pool.fetch("SELECT day FROM memory_days WHERE agent = $1 ORDER BY day DESC", agent_id)
        return [row["day"] for row in rows]

    async def replace_text(self, agent_id: str, day: date | None, expected: str | None, text: str) -> None:
        """Replace a day (MEMORY.md when `day` is None) if it still reads `expected`, in one transaction."""
        text = storable(text)
        _check_agent(agent_id)
        where = f"{agent_id}/{'MEMORY.md' if day is None else day.isoformat() + '.md'}"
        now = utcnow()
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            if day is None:
                current = await connection.fetchval(
                    "SELECT text FROM memory_long_term WHERE agent = $1 FOR UPDATE", agent_id
                )
            else:
                current = await connection.fetchval(
                    "SELECT markdown FROM memory_days WHERE agent = $1 AND day = $2 FOR UPDATE", agent_id, day
                )
            conflict = MemoryConflict(f"{where} changed while it was being edited; nothing was written")
            if current != expected:
                raise conflict
            if current is None:
                # FOR UPDATE locks no row that is not there yet: a put may create it meanwhile,
                # and an upsert would then write over what it added.
                if not await self._insert_new_text(connection, agent_id, day, text, now):
                    raise conflict
            elif day is None:
                await connection.execute(_KEEP_OLD_LONG_TERM, agent_id)
                await connection.execute(_WRITE_LONG_TERM, agent_id, text, now)
            else:
                await connection.execute(
                    "UPDATE memory_days SET markdown = $3, updated_at = $4 WHERE agent = $1 AND day = $2",
                    agent_id,
                    day,
                    text,
                    now,
                )

    @staticmethod
    async def _insert_new_text(
        connection: asyncpg.Connection, agent_id: str, day: date | None, text: str, now: datetime
    ) -> bool:
        """Store a day (MEMORY.md when `day` is None) that had no text; False when one appeared."""
        if day is None:
            inserted = await connection.fetchval(
                "INSERT INTO memory_long_term (agent, text, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (agent) DO NOTHING RETURNING true",
                agent_id,
                text,
                now,
            )
        else:
            inserted = await connection.fetchval(
                "INSERT INTO memory_days (agent, day, markdown, updated_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (agent, day) DO NOTHING RETURNING true",
                agent_id,
                day,
                text,
                now,
            )
        return bool(inserted)

    # --- long-term and world memory ------------------------------------------------------

    async def read_long_term(self, agent_id: str) -> str:
        """MEMORY.md ("" when there is none)."""
        _check_agent(agent_id)
        pool = await self._pool.get()
        text: str | None = await pool.fetchval("SELECT text FROM memory_long_term WHERE agent = $1", agent_id)
        return text or ""

    def _redacted(self, text: str) -> str:
        return storable(self._redact(text) if self._redact is not None else text)

    async def write_long_term(self, agent_id: str, text: str) -> None:
        """Replace MEMORY.md; the previous version goes to memory_long_term_history."""
        _check_agent(agent_id)
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(_KEEP_OLD_LONG_TERM, agent_id)
            await connection.execute(_WRITE_LONG_TERM, agent_id, self._redacted(text), utcnow())

    async def read_world(self) -> dict[str, str]:
        """The shared world memory: topic -> Markdown, sorted by topic."""
        pool = await self._pool.get()
        rows = await pool.fetch("SELECT topic, text FROM memory_world")
        return {row["topic"]: row["text"] for row in sorted(rows, key=lambda row: str(row["topic"]))}

    async def read_for_context(self, agent_id: str, days: Sequence[date]) -> ContextMemory:
        """MEMORY.md, world memory and the given days in one query (context assembly runs it every turn)."""
        _check_agent(agent_id)
        pool = await self._pool.get()
        rows = await pool.fetch(_CONTEXT_MEMORY, agent_id, list(days))
        long_term = ""
        world: dict[str, str] = {}
        found: dict[date, str] = {}
        for row in rows:
            if row["kind"] == "long_term":
                long_term = row["text"] or ""
            elif row["kind"] == "world":
                world[row["topic"]] = row["text"]
            else:
                found[row["day"]] = row["text"]
        return ContextMemory(long_term=long_term, world=dict(sorted(world.items())), days=found)

    async def write_world(self, topic: str, text: str) -> None:
        """Replace one world-memory topic; the previous version goes to memory_world_history."""
        check_name(topic, "world topic")
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(_KEEP_OLD_WORLD, topic)
            await connection.execute(_WRITE_WORLD, topic, self._redacted(text), utcnow())

    # --- export ---------------------------------------------------------------------------

    async def export(self, agent_id: str | None = None) -> AsyncGenerator[bytes, None]:
        """A tar.gz of the Markdown tree, laid out as the filesystem store's (`memory/<agent>/...`).

        With an agent, its files and the world's; with None, everything. Files are fetched one
        at a time and the archive is handed out in ~64 KiB chunks, so memory use stays flat.
        """
        if agent_id is not None:
            _check_agent(agent_id)
        pool = await self._pool.get()
        files = sorted(await pool.fetch(_EXPORT_FILES, agent_id), key=lambda row: str(row["path"]))
        sink = _ChunkSink()
        with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
            for row in files:
                exported = await self._export_file(pool, row["kind"], row["owner"], row["day"])
                if exported is None:  # removed since the listing
                    continue
                text, updated_at = exported
                data = text.encode("utf-8")
                info = tarfile.TarInfo(f"memory/{row['path']}")
                info.size, info.mode, info.mtime = len(data), _FILE_MODE, int(updated_at.timestamp())
                archive.addfile(info, io.BytesIO(data))
                for chunk in sink.take(EXPORT_CHUNK_SIZE):
                    yield chunk
        for chunk in sink.take(0):
            yield chunk

    async def close(self) -> None:
        """Close the pool if this store opened it."""
        await self._pool.close()

    async def _export_file(
        self, pool: asyncpg.Pool, kind: str, owner: str, day: date | None
    ) -> tuple[str, datetime] | None:
        if kind == "day":
            row = await pool.fetchrow(
                "SELECT markdown AS text, updated_at FROM memory_days WHERE agent = $1 AND day = $2",
                owner,
                day,
            )
        elif kind == "long_term":
            row = await pool.fetchrow("SELECT text, updated_at FROM memory_long_term WHERE agent = $1", owner)
        else:
            row = await pool.fetchrow("SELECT text, updated_at FROM memory_world WHERE topic = $1", owner)
        return None if row is None else (row["text"], row["updated_at"])


def _check_agent(agent_id: str) -> str:
    """A safe agent name that is not `world` (the shared memory's folder in the Markdown tree)."""
    check_name(agent_id, "agent name")
    if agent_id.casefold() == WORLD:
        raise InvalidName("invalid agent name 'world': memory/world/ is the memory shared by all agents")
    return agent_id


@dataclass(frozen=True)
class _Recorded:
    created_at: datetime
    source: str | None


class _Provenance:
    """Matches entries parsed from the Markdown to the puts that wrote them, in order."""

    def __init__(self, rows: list[asyncpg.Record]):
        self._by_text: dict[tuple[date, str, str], deque[_Recorded]] = defaultdict(deque)
        for row in rows:
            key = (row["day"], row["section"], row["text"])
            self._by_text[key].append(_Recorded(row["created_at"], row["source"]))

    def attach(self, entry: MemoryEntry) -> MemoryEntry:
        """The entry with created_at and source of its put; unchanged when it was written by hand."""
        try:
            key = section_key(entry.section)
        except InvalidName:  # a hand-written heading no put could have produced
            return entry
        waiting = self._by_text.get((entry.day, key, entry.text))
        if not waiting:
            return entry
        recorded = waiting.popleft()
        return replace(entry, created_at=recorded.created_at, source=recorded.source)


class _ChunkSink:
    """A file-like object tarfile writes into; the export hands its bytes out in chunks."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take(self, at_least: int) -> list[bytes]:
        """The buffered bytes as one chunk once there are `at_least` of them (0: whatever is left)."""
        if not self._buffer or len(self._buffer) < at_least:
            return []
        chunk = bytes(self._buffer)
        self._buffer.clear()
        return [chunk]
