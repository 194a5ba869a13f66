"""MemoryStore on Markdown files: one file per agent per day, MEMORY.md, and the shared world folder.

Layout under `root` (the data directory's `memory/`)::

    <agent>/YYYY-MM-DD.md     daily memory, sections as in duragent.memory.markdown
    <agent>/MEMORY.md         curated long-term memory
    world/<topic>.md          shared by every agent (so `world` is not an agent name)
    .locks/                   lock files, never committed

Every write re-reads the file under a lock (an asyncio lock per file for this process, an fcntl
lock on `.locks/...` for other processes, including a person's `duragent memory add`), applies
the smallest change, and replaces the file atomically; so concurrent writers never lose each
other's entries and a person's edits survive.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import shutil
import stat
import tarfile
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from duragent.errors import DuragentError, InvalidName
from duragent.ids import check_name, ulid
from duragent.memory.markdown import (
    add_bullet,
    normalize_entry_text,
    parse_daily,
    section_key,
    section_plural,
)
from duragent.memory.search import rank_entries
from duragent.stores.base import (
    Change,
    ChangeListener,
    ContextMemory,
    MemoryConflict,
    MemoryEntry,
    MemoryQuery,
    ignore_changes,
)

WORLD = "world"
LONG_TERM_FILE = "MEMORY.md"
EXPORT_CHUNK_SIZE = 64 * 1024
_LOCKS_DIR = ".locks"
_EXPORT_QUEUE_DEPTH = 8
#: Context reads up to this many bytes in all run on the event loop: from the page cache they take
#: microseconds, while each hop to a worker thread costs ~100 us (far more on a busy machine), and
#: the memory slot is read every turn. Bigger memory is read in a thread.
_INLINE_CONTEXT_READ_MAX = 256 * 1024


class MemoryExportFailed(DuragentError):
    """Writing the export archive stopped before it was complete."""


class FilesystemMemoryStore:
    """The default MemoryStore: Markdown files a person can read, edit and `git log`."""

    def __init__(
        self,
        root: Path,
        *,
        on_change: ChangeListener = ignore_changes,
        redact: Callable[[str], str] | None = None,
    ):
        self.root = root
        self._on_change = on_change
        self._redact = redact
        self._file_locks: dict[Path, asyncio.Lock] = {}

    # --- daily memory --------------------------------------------------------------------

    async def put(self, agent_id: str, entry: MemoryEntry) -> None:
        """Add the entry as a bullet at the end of its section in its day's file."""
        agent_dir = self._agent_dir(agent_id)
        key = section_key(entry.section)
        text = normalize_entry_text(self._redact(entry.text) if self._redact else entry.text)
        path = agent_dir / f"{entry.day.isoformat()}.md"

        def update(old: str | None) -> str:
            return add_bullet(old, entry.day, key, text)

        async with self._file_lock(path):
            await asyncio.to_thread(self._update_file, path, update)
        summary = f"{entry.day.isoformat()} {section_plural(key)} +1"
        self._on_change(Change(paths=(path,), kind="memory", subject=agent_id, summary=summary))

    async def query(self, agent_id: str, query: MemoryQuery) -> list[MemoryEntry]:
        """Entries of the agent's daily files matching the query, best first (see memory.search)."""
        agent_dir = self._agent_dir(agent_id)
        entries = await asyncio.to_thread(self._read_entries, agent_dir, query)
        return rank_entries(entries, query)

    async def read_day(self, agent_id: str, day: date) -> str | None:
        """The Markdown of one daily file, or None when that day has none."""
        path = self._agent_dir(agent_id) / f"{day.isoformat()}.md"
        return await asyncio.to_thread(_read_text_or_none, path)

    async def days(self, agent_id: str) -> list[date]:
        """The days that have a daily file, newest first."""
        agent_dir = self._agent_dir(agent_id)
        found = await asyncio.to_thread(_daily_files, agent_dir)
        return sorted(found, reverse=True)

    async def replace_text(self, agent_id: str, day: date | None, expected: str | None, text: str) -> None:
        """Replace a daily file (MEMORY.md when `day` is None) if it still reads `expected`."""
        name = LONG_TERM_FILE if day is None else f"{day.isoformat()}.md"
        path = self._agent_dir(agent_id) / name

        def update(old: str | None) -> str:
            if old != expected:
                raise MemoryConflict(f"{path} changed while it was being edited; nothing was written")
            return text

        async with self._file_lock(path):
            await asyncio.to_thread(self._update_file, path, update)
        self._on_change(Change(paths=(path,), kind="memory", subject=agent_id, summary=f"{name} edited"))

    # --- long-term and world memory ------------------------------------------------------

    async def read_long_term(self, agent_id: str) -> str:
        """MEMORY.md ("" when there is none)."""
        path = self._agent_dir(agent_id) / LONG_TERM_FILE
        return await asyncio.to_thread(_read_text_or_none, path) or ""

    async def write_long_term(self, agent_id: str, text: str) -> None:
        """Replace MEMORY.md atomically."""
        path = self._agent_dir(agent_id) / LONG_TERM_FILE
        await self._replace(path, self._redact(text) if self._redact else text)
        self._on_change(Change(paths=(path,), kind="memory", subject=agent_id, summary="MEMORY.md updated"))

    async def read_world(self) -> dict[str, str]:
        """The shared world memory: topic (file stem) -> Markdown, sorted by topic."""
        return await asyncio.to_thread(_read_world, self.root / WORLD)

    async def write_world(self, topic: str, text: str) -> None:
        """Replace one world-memory topic (`world/<topic>.md`) atomically."""
        path = self.root / WORLD / f"{check_name(topic, 'world topic')}.md"
        await self._replace(path, self._redact(text) if self._redact else text)
        self._on_change(Change(paths=(path,), kind="memory", subject=WORLD, summary=f"{topic} updated"))

    async def read_for_context(self, agent_id: str, days: Sequence[date]) -> ContextMemory:
        """MEMORY.md, the world folder and the given days' files, re-read from disk every call."""
        agent_dir = self._agent_dir(agent_id)
        files = _context_files(agent_dir, self.root / WORLD, days)
        if sum(size for _kind, _key, _path, size in files) <= _INLINE_CONTEXT_READ_MAX:
            return _read_context_files(files)
        return await asyncio.to_thread(_read_context_files, files)

    # --- export ---------------------------------------------------------------------------

    async def export(self, agent_id: str | None = None) -> AsyncGenerator[bytes, None]:
        """A tar.gz of the Markdown tree (`memory/<agent>/...` and `memory/world/...`), in chunks.

        With an agent, its folder and the world folder; with None, every agent's. The archive is
        written by a thread into a small bounded queue, so memory use stays flat however big it is.
        """
        folders = [self._agent_dir(agent_id), self.root / WORLD] if agent_id is not None else [self.root]
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_EXPORT_QUEUE_DEPTH)
        stop = threading.Event()
        writer = threading.Thread(
            target=_write_archive, args=(self.root, folders, chunks, stop), name="memory-export", daemon=True
        )
        writer.start()
        try:
            while True:
                item = await asyncio.to_thread(_next_item, chunks, writer)
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # Unblock a writer waiting on a full queue so it can see `stop` and exit.
            while writer.is_alive():
                _drain(chunks)
                await asyncio.to_thread(writer.join, 0.05)

    async def close(self) -> None:
        """Nothing to release: files are opened and closed per operation."""

    # --- internals ------------------------------------------------------------------------

    def _agent_dir(self, agent_id: str) -> Path:
        check_name(agent_id, "agent name")
        if agent_id.casefold() == WORLD:
            raise InvalidName("invalid agent name 'world': memory/world/ is the memory shared by all agents")
        return self.root / agent_id

    @contextmanager
    def _cross_process_lock(self, path: Path) -> Iterator[None]:
        """An fcntl lock on `.locks/<relative path>.lock`, held while a file is re-read and replaced."""
        lock_path = self.root / _LOCKS_DIR / f"{path.relative_to(self.root)}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _file_lock(self, path: Path) -> asyncio.Lock:
        # Threads of one process would also exclude each other through flock (separate open
        # file descriptions), but the asyncio lock keeps waiting writers off the thread pool.
        return self._file_locks.setdefault(path, asyncio.Lock())

    def _update_file(self, path: Path, change: Callable[[str | None], str]) -> None:
        """Re-read `path` under the cross-process lock, apply `change`, replace it atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._cross_process_lock(path):
            new_text = change(_read_text_or_none(path))
            _write_atomically(path, new_text.encode("utf-8"))

    async def _replace(self, path: Path, text: str) -> None:
        async with self._file_lock(path):
            await asyncio.to_thread(self._update_file, path, lambda _old: text)

    def _read_entries(self, agent_dir: Path, query: MemoryQuery) -> list[MemoryEntry]:
        """Entries of the daily files within the query's dates, oldest day first, file order within."""
        entries: list[MemoryEntry] = []
        for day in sorted(_daily_files(agent_dir)):
            if (query.since and day < query.since) or (query.until and day > query.until):
                continue
            text = _read_text_or_none(agent_dir / f"{day.isoformat()}.md")
            if text is not None:
                entries.extend(parse_daily(text, day))
        return entries


def _read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _daily_files(agent_dir: Path) -> list[date]:
    """Days that have a `YYYY-MM-DD.md` file in the folder (other files are ignored)."""
    days: list[date] = []
    try:
        names = os.listdir(agent_dir)
    except FileNotFoundError:
        return days
    for name in names:
        if not name.endswith(".md") or len(name) != len("YYYY-MM-DD.md"):
            continue
        try:
            days.append(date.fromisoformat(name[:-3]))
        except ValueError:
            continue
    return days


def _read_world(world_dir: Path) -> dict[str, str]:
    try:
        files = sorted(path for path in world_dir.glob("*.md") if path.is_file())
    except FileNotFoundError:
        return {}
    return {path.stem: path.read_text(encoding="utf-8") for path in files}


_ContextFile = tuple[str, str, str, int]


def _context_files(agent_dir: Path, world_dir: Path, days: Sequence[date]) -> list[_ContextFile]:
    """(kind, key, path, size) of each context file that exists: long_term, world topics, days.

    Plain `os` calls on strings: this runs every turn and pathlib's object churn cost more than the stats.
    """
    agent, world = os.fspath(agent_dir), os.fspath(world_dir)
    candidates: list[tuple[str, str, str]] = [("long_term", "", os.path.join(agent, LONG_TERM_FILE))]
    try:
        with os.scandir(world) as entries:
            topics = sorted(entry.name for entry in entries if entry.name.endswith(".md"))
    except FileNotFoundError:
        topics = []
    candidates += [("world", name.removesuffix(".md"), os.path.join(world, name)) for name in topics]
    candidates += [("day", day.isoformat(), os.path.join(agent, f"{day.isoformat()}.md")) for day in days]
    found: list[_ContextFile] = []
    for kind, key, path in candidates:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(status.st_mode):
            found.append((kind, key, path, status.st_size))
    return found


def _read_context_files(files: Sequence[_ContextFile]) -> ContextMemory:
    """Read the files `_context_files` found (one deleted meanwhile is treated as absent)."""
    long_term = ""
    world: dict[str, str] = {}
    days: dict[date, str] = {}
    for kind, key, path, _size in files:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        if kind == "long_term":
            long_term = text
        elif kind == "world":
            world[key] = text
        else:
            days[date.fromisoformat(key)] = text
    return ContextMemory(long_term=long_term, world=world, days=days)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a temp file beside `path`, fsync it, rename it over `path`; readers see old or new."""
    temp = path.with_name(f".{path.name}.{ulid()}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            # Keep the permissions a person gave the file.
            shutil.copymode(path, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- export (runs in a thread) ------------------------------------------------------------


class _ChunkWriter:
    """A file-like sink for tarfile that hands ~64 KiB chunks to the exporting coroutine."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event):
        self._chunks = chunks
        self._stop = stop
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= EXPORT_CHUNK_SIZE:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._send(bytes(self._buffer))
            self._buffer.clear()

    def _send(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        raise _ExportAbandoned

    def finish(self, error: BaseException | None = None) -> None:
        if error is None:
            self.flush()
        self._send(error)


class _ExportAbandoned(Exception):
    """The consumer stopped reading the export; the writer thread ends quietly."""


def _write_archive(
    root: Path,
    folders: list[Path],
    chunks: queue.Queue[bytes | BaseException | None],
    stop: threading.Event,
) -> None:
    sink = _ChunkWriter(chunks, stop)
    try:
        with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
            for path in _markdown_files(root, folders):
                archive.add(path, arcname=f"memory/{path.relative_to(root).as_posix()}", filter=_anonymous)
        sink.finish()
    except _ExportAbandoned:
        return
    except Exception as error:  # handed to the consumer, which raises it
        try:
            sink.finish(error)
        except _ExportAbandoned:
            return


def _markdown_files(root: Path, folders: list[Path]) -> list[Path]:
    """Every `.md` file under the folders, skipping hidden folders/files (locks, temp files), sorted."""
    found: set[Path] = set()
    for folder in folders:
        for directory, subdirs, files in os.walk(folder):
            subdirs[:] = [name for name in subdirs if not name.startswith(".")]
            for name in files:
                if name.endswith(".md") and not name.startswith("."):
                    found.add(Path(directory) / name)
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive entries without the exporting machine's user and group names."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _next_item(
    chunks: queue.Queue[bytes | BaseException | None], writer: threading.Thread
) -> bytes | BaseException | None:
    """The next chunk; polls so a cancelled export never leaves a thread blocked on the queue."""
    while True:
        try:
            return chunks.get(timeout=0.1)
        except queue.Empty:
            if not writer.is_alive() and chunks.empty():
                return MemoryExportFailed("the export stopped before the archive was complete")


def _drain(chunks: queue.Queue[bytes | BaseException | None]) -> None:
    while True:
        try:
            chunks.get_nowait()
        except queue.Empty:
            return
