"""MemoryStore on Markdown files: one file per agent per day, MEMORY.md, and the shared world folder.

Layout under `root` (the data directory's `memory/`)::

    <agent>/YYYY-MM-DD.md     daily memory, sections as in duragent.memory.markdown
    <agent>/MEMORY.md         curated long-term memory
    world/<topic>.md          shared by every agent (so `world` is not an agent name)
    .locks/                   lock files, never committed

Every write re-reads the file under a lock (an asyncio lock per file for this process, an fcntl
lock on `.locks/...` for other processes: a person's `duragent memory add`, `duragent revert`,
`duragent memory import`), applies the smallest change, and replaces the file atomically; so
concurrent writers never lose each other's entries and a person's edits survive.

A person who does not take the lock (`echo ... >> file`, an editor) is merged too: the file is
compared again just before it is replaced (changed: start over from the new text), and bytes
appended to the old file after that look are carried over to the new one. A whole-file
replacement (MEMORY.md, world topics) keeps the lines a person added since the store last read
the file. Each write reports the exact bytes written, and a person's change it found first as a
separate "edit" change, so the committer can attribute each line to whoever wrote it.

A file a person saved in another encoding (a Latin-1 `é`, a stray binary byte) is read with each
invalid byte shown as U+FFFD, so turns, `recall` and `duragent memory show` still work; a write
keeps those bytes exactly as they were (it edits the text decoded with `surrogateescape`).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import queue
import re
import shutil
import signal
import stat
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from duragent.errors import DuragentError, InvalidName
from duragent.file_stamps import ABSENT, Stamp, settled, stamp
from duragent.ids import check_name, ulid
from duragent.keyed_locks import KeyedLock, KeyedLocks
from duragent.memory.markdown import (
    add_bullet,
    keep_added_lines,
    normalize_entry_text,
    parse_daily,
    section_key,
    section_plural,
    storable,
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
    storage_error,
)
from duragent.stores.filesystem.locks import memory_file_lock

if TYPE_CHECKING:
    import tarfile

WORLD = "world"
LONG_TERM_FILE = "MEMORY.md"
EXPORT_CHUNK_SIZE = 64 * 1024
_EXPORT_QUEUE_DEPTH = 8
#: Context reads up to this many bytes in all run on the event loop: from the page cache they take
#: microseconds, while each hop to a worker thread costs ~100 us (far more on a busy machine), and
#: the memory slot is read every turn. Bigger memory is read in a thread.
_INLINE_CONTEXT_READ_MAX = 256 * 1024
#: How long a write waits for a person's `>>` into the file it just replaced to finish.
_LATE_WRITER_WAIT = 2.0
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class MemoryExportFailed(DuragentError):
    """Writing the export archive stopped before it was complete."""


@dataclass(frozen=True)
class _Version:
    """One version of a file a write went through: the store's own, or a person's it found."""

    by_person: bool
    data: bytes


class FilesystemMemoryStore:
    """The default MemoryStore: Markdown files a person can read, edit and `git log`."""

    def __init__(
        self,
        root: Path,
        *,
        on_change: ChangeListener = ignore_changes,
        redact: Callable[[str], str] | None = None,
        before_write: Callable[[Path], object] | None = None,
    ):
        self.root = root
        self._on_change = on_change
        self._redact = redact
        #: Called with a file about to be replaced, holding its cross-process lock (a person's
        #: command beside a server commits the agent's uncommitted write there first).
        self._before_write = before_write
        self._file_locks: KeyedLocks[Path] = KeyedLocks()
        # each file's bytes as this store last wrote or read them: what a person changed since
        self._seen: dict[Path, bytes] = {}
        # what read_for_context read, per agent: path -> (stamp, text or None when it vanished)
        self._context_texts: dict[str, dict[str, tuple[Stamp, str | None]]] = {}
        self._context_paths: dict[str, tuple[str, str]] = {}
        # per agent: the days and world topics asked for last, and the paths of their files
        self._context_candidates: dict[str, tuple[tuple[date, ...], list[str], list[_Candidate]]] = {}
        # per agent: the files found last and what read_for_context made of them (while settled)
        self._last_memory: dict[str, tuple[list[_ContextFile], ContextMemory]] = {}
        self._topic_names: tuple[Stamp, list[str]] | None = None
        _survive_lease_breaks()

    # --- daily memory --------------------------------------------------------------------

    async def put(self, agent_id: str, entry: MemoryEntry) -> None:
        """Add the entry as a bullet at the end of its section in its day's file."""
        agent_dir = self._agent_dir(agent_id)
        key = section_key(entry.section)
        text = normalize_entry_text(_unicode(self._redact(entry.text) if self._redact else entry.text))
        path = agent_dir / f"{entry.day.isoformat()}.md"

        def update(old: str | None) -> str:
            return add_bullet(old, entry.day, key, text)

        summary = f"{entry.day.isoformat()} {section_plural(key)} +1"
        async with self._file_lock(path):
            await asyncio.to_thread(self._update_file, path, update, agent_id, summary)

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
        text = storable(_unicode(text))
        name = LONG_TERM_FILE if day is None else f"{day.isoformat()}.md"
        path = self._agent_dir(agent_id) / name

        def update(old: str | None) -> str:
            if old != expected:
                raise MemoryConflict(f"{path} changed while it was being edited; nothing was written")
            return text

        async with self._file_lock(path):
            await asyncio.to_thread(self._update_file, path, update, agent_id, f"{name} edited")

    # --- long-term and world memory ------------------------------------------------------

    async def read_long_term(self, agent_id: str) -> str:
        """MEMORY.md ("" when there is none)."""
        path = self._agent_dir(agent_id) / LONG_TERM_FILE
        return await asyncio.to_thread(self._read_noting, path) or ""

    async def write_long_term(self, agent_id: str, text: str) -> None:
        """Replace MEMORY.md atomically."""
        path = self._agent_dir(agent_id) / LONG_TERM_FILE
        await self._replace(
            path,
            storable(_unicode(self._redact(text) if self._redact else text)),
            agent_id,
            "MEMORY.md updated",
        )

    async def read_world(self) -> dict[str, str]:
        """The shared world memory: topic (file stem) -> Markdown, sorted by topic."""
        world = await asyncio.to_thread(_read_world, self.root / WORLD)
        for topic, data in world.items():
            self._seen[self.root / WORLD / f"{topic}.md"] = data
        return {topic: _read_as_text(data) for topic, data in world.items()}

    async def write_world(self, topic: str, text: str) -> None:
        """Replace one world-memory topic (`world/<topic>.md`) atomically."""
        path = self.root / WORLD / f"{check_name(topic, 'world topic')}.md"
        await self._replace(
            path, storable(_unicode(self._redact(text) if self._redact else text)), WORLD, f"{topic} updated"
        )

    async def read_for_context(self, agent_id: str, days: Sequence[date]) -> ContextMemory:
        """MEMORY.md, the world folder and the given days' files as they are on disk now.

        Every file is stat'ed each call and read again only when its stamp changed
        (`duragent.file_stamps`), so a person's edit is what the next turn sees. While none
        changed, the same ContextMemory is returned: treat it as read-only.
        """
        files = _context_files(self._candidates(agent_id, days))
        known = self._context_texts.get(agent_id, {})
        texts: dict[str, tuple[Stamp, str | None]] = {}
        stale: list[_ContextFile] = []
        for file in files:
            cached = known.get(file[2])
            if cached is not None and cached[0] == file[3]:
                texts[file[2]] = cached
            else:
                stale.append(file)
        if not stale:
            # every text as kept (settled): the same files make the same memory as last time
            last = self._last_memory.get(agent_id)
            if last is None or last[0] != files:
                last = self._last_memory[agent_id] = (files, _context_memory(files, texts))
            return last[1]
        if sum(file[3][2] for file in stale) <= _INLINE_CONTEXT_READ_MAX:
            read = _read_context_files(stale)
        else:
            read = await asyncio.to_thread(_read_context_files, stale)
        texts.update((file[2], (file[3], read.get(file[2]))) for file in stale)
        # (texts read within the last few seconds are not kept: see file_stamps.SETTLE_NS)
        self._context_texts[agent_id] = {path: entry for path, entry in texts.items() if settled((entry[0],))}
        self._last_memory.pop(agent_id, None)
        return _context_memory(files, texts)

    def _candidates(self, agent_id: str, days: Sequence[date]) -> list[_Candidate]:
        """The context files the agent may have (`_context_candidates`), worked out again only
        when the days asked for or the world topics changed."""
        agent, world = self._context_dirs(agent_id)
        topics = self._world_topics(world)
        asked = tuple(days)  # (the runtime asks with the same tuple all day: no copy)
        known = self._context_candidates.get(agent_id)
        if known is not None and known[0] == asked and known[1] == topics:
            return known[2]
        candidates = _context_candidates(agent, world, topics, asked)
        self._context_candidates[agent_id] = (asked, topics, candidates)
        return candidates

    def _context_dirs(self, agent_id: str) -> tuple[str, str]:
        """The agent's memory folder and the world folder, as strings (worked out once per agent)."""
        dirs = self._context_paths.get(agent_id)
        if dirs is None:
            dirs = self._context_paths[agent_id] = (
                os.fspath(self._agent_dir(agent_id)),
                os.fspath(self.root / WORLD),
            )
        return dirs

    def _world_topics(self, world: str) -> list[str]:
        """The `.md` names in the world folder, listed again only when the folder changed."""
        current = stamp(world)
        if current == ABSENT:
            return []
        cached = self._topic_names
        if cached is not None and cached[0] == current:
            return cached[1]
        try:
            with os.scandir(world) as entries:
                # (hidden names are an editor's or macOS's copies, `._team.md`: not the agent's memory)
                names = sorted(e.name for e in entries if e.name.endswith(".md") and e.name[0] != ".")
        except (FileNotFoundError, NotADirectoryError):
            names = []
        self._topic_names = (current, names) if settled((current,)) else None
        return names

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

    def _file_lock(self, path: Path) -> KeyedLock[Path]:
        # Threads of one process would also exclude each other through flock (separate open
        # file descriptions), but the asyncio lock keeps waiting writers off the thread pool.
        return self._file_locks(path)

    def _update_file(
        self, path: Path, change: Callable[[str | None], str], subject: str, summary: str
    ) -> None:
        """Re-read `path` under the cross-process lock, apply `change`, replace it atomically.

        The versions the file went through (a person's change found first, the store's own, a
        person's append carried over afterwards) are reported while the lock is still held, so
        the committer knows of this write before anyone holding the lock next looks at the file.
        """
        path.parent.mkdir(parents=True, exist_ok=True)

        def apply(old: bytes | None) -> bytes:
            return _encode_kept(change(None if old is None else _decode_kept(old)))

        with memory_file_lock(self.root, path):
            if self._before_write is not None:
                self._before_write(path)
            self._report(path, subject, summary, self._replace_merging(path, apply))

    def _replace_merging(self, path: Path, apply: Callable[[bytes | None], bytes]) -> list[_Version]:
        versions: list[_Version] = []
        ours = True
        # (one wait for other writers in all, before the read and for late appends: a process that
        # keeps the file open for writing for good delays a write by _LATE_WRITER_WAIT, not twice)
        deadline = time.monotonic() + _LATE_WRITER_WAIT
        while True:
            # the old file stays open: what a person appends to it after our last look still
            # reaches it, and is read back from it once the new file is in place
            with _open_or_none(path) as old_file:
                if old_file is not None:
                    # An editor that truncates the file and then writes its buffer (nano, a plain
                    # `open(path, "w")`) leaves it empty or half written until it closes it.
                    _wait_for_writers(old_file, deadline)
                old = old_file.read() if old_file is not None else None
                seen = self._seen.get(path)
                if ours and old is not None and seen is not None and old != seen:
                    versions.append(_Version(by_person=True, data=old))
                new = apply(old)
                if not _replace_if_unchanged(path, old, new):
                    continue  # changed while we worked: again, from the new text
                late = _late_appends(old_file, deadline) if old_file is not None else b""
            self._seen[path] = new
            versions.append(_Version(by_person=not ours, data=new))
            if not late:
                return versions
            ours = False

            def apply(current: bytes | None, late: bytes = late) -> bytes:
                return (current or b"") + late

    async def _replace(self, path: Path, text: str, subject: str, summary: str) -> None:
        def merge(current: str | None) -> str:
            seen = self._seen.get(path)
            if current is None or seen is None:
                return text
            return keep_added_lines(_decode_kept(seen), current, text)

        async with self._file_lock(path):
            await asyncio.to_thread(self._update_file, path, merge, subject, summary)

    def _read_noting(self, path: Path) -> str | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        self._seen[path] = data
        return _read_as_text(data)

    def _report(self, path: Path, subject: str, summary: str, versions: list[_Version]) -> None:
        """Tell the committer about each version in order: a person's as an "edit", ours as memory."""
        for version in versions:
            if version.by_person:
                change = Change((path,), "edit", subject, "edited by hand", content=version.data)
            else:
                change = Change((path,), "memory", subject, summary, content=version.data)
            self._on_change(change)

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
    """The file's text as `_read_as_text` reads it (None when it is missing)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _read_as_text(data: bytes) -> str:
    """A file's bytes as `Path.read_text` reads them (universal newlines), each byte that is not
    UTF-8 shown as U+FFFD."""
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _unicode(text: str) -> str:
    """New text to write with each lone surrogate (JSON's `"\\udce9"`) as U+FFFD: `_encode_kept`
    would otherwise turn it into a raw byte, or fail."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _decode_kept(data: bytes) -> str:
    """A file's text to edit and write back: bytes that are not UTF-8 become lone surrogates."""
    return data.decode("utf-8", errors="surrogateescape")


def _encode_kept(text: str) -> bytes:
    """The bytes of text from `_decode_kept`: a person's non-UTF-8 bytes come back unchanged."""
    return text.encode("utf-8", errors="surrogateescape")


@contextmanager
def _open_or_none(path: Path) -> Iterator[BinaryIO | None]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the replacement
    except FileNotFoundError:
        yield None
        return
    with handle:
        yield handle


def _replace_if_unchanged(path: Path, old: bytes | None, new: bytes) -> bool:
    """Replace `path` with `new` unless its bytes are no longer `old`; whether it was replaced."""
    temp = path.with_name(f".{path.name}.{ulid()}.tmp")
    try:
        return _replace_with_temp(path, temp, old, new)
    except OSError as error:  # (a full or read-only disk: `path` still holds its old bytes)
        raise storage_error(error, path) from error


def _replace_with_temp(path: Path, temp: Path, old: bytes | None, new: bytes) -> bool:
    """`_replace_if_unchanged` through the temp file `temp`, removed whatever happens."""
    try:
        with open(temp, "wb") as handle:
            handle.write(new)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            # Keep the permissions a person gave the file.
            shutil.copymode(path, temp)
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != old:
            return False
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


def _survive_lease_breaks() -> None:
    """Catch SIGIO with a handler that does nothing, unless the program handles it already.

    The store takes a read lease for a moment to learn whether a writer still has a file open
    (`_wait_for_writers`); a process that opens the file for writing in that moment has the
    kernel break the lease with SIGIO, whose default action ends the whole server. A handler,
    not SIG_IGN: an ignored signal stays ignored in every program the server starts (tools,
    processes, plugins), a handler is reset to the default by exec. Handlers can be set from
    the main thread only: the store is made there (a server's start, a command), its writes
    then run in worker threads.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGIO) == signal.SIG_DFL:
        signal.signal(signal.SIGIO, _lease_broken)


def _lease_broken(signum: int, frame: object) -> None:
    """SIGIO: a lease of ours was broken; the store drops its leases at once anyway."""


def _wait_for_writers(handle: BinaryIO, deadline: float) -> bool:
    """Wait (until `deadline`, a `time.monotonic()`) until no process has the file open for
    writing; whether none has. On Linux a read lease is refused exactly while some process does;
    where leases are not supported (or the file is another user's), True at once."""
    while True:
        try:
            fcntl.fcntl(handle.fileno(), fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as error:
            if error.errno != errno.EAGAIN:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
            continue
        fcntl.fcntl(handle.fileno(), fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True


def _late_appends(old_file: BinaryIO, deadline: float) -> bytes:
    """What was appended to a file after it was read and replaced (a person's `>>` in flight).

    A process may have opened the file just before the replacement and write to it later, so
    this waits (until `deadline`) until nobody has it open for writing: on Linux a read lease is
    refused exactly while some process does. Where leases are not supported, what was appended
    so far.
    """
    late = old_file.read()
    while True:
        try:
            fcntl.fcntl(old_file.fileno(), fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as error:
            if error.errno != errno.EAGAIN or time.monotonic() >= deadline:
                return late + old_file.read()
            time.sleep(0.001)
            late += old_file.read()
            continue
        fcntl.fcntl(old_file.fileno(), fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return late + old_file.read()


_DAY_FILE = re.compile(r"\d{4}-\d{2}-\d{2}\.md")


def _daily_files(agent_dir: Path) -> list[date]:
    """Days that have a `YYYY-MM-DD.md` file in the folder (other files, and folders, are ignored)."""
    days: list[date] = []
    try:
        with os.scandir(agent_dir) as entries:
            # (the pattern: fromisoformat alone reads `2026-W01-1` as a day; a folder named like a
            # day is a person's, not a day: reading it would fail every search)
            names = [entry.name for entry in entries if _DAY_FILE.fullmatch(entry.name) and entry.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return days
    for name in names:
        try:
            days.append(date.fromisoformat(name[:-3]))
        except ValueError:
            continue
    return days


def _read_world(world_dir: Path) -> dict[str, bytes]:
    try:
        files = sorted(p for p in world_dir.glob("*.md") if p.is_file() and not p.name.startswith("."))
    except FileNotFoundError:
        return {}
    return {path.stem: path.read_bytes() for path in files}


#: (kind, key, path) of a file that may be in the context: ("long_term", "", ...), ("world",
#: topic, ...), ("day", "YYYY-MM-DD", ...).
_Candidate = tuple[str, str, str]
#: (kind, key, path, stamp) of a context file found.
_ContextFile = tuple[str, str, str, Stamp]


def _context_candidates(
    agent: str, world: str, topics: Sequence[str], days: Sequence[date]
) -> list[_Candidate]:
    """The files the context reads if they exist: long_term, world topics, days.

    Plain `os` calls on strings: pathlib's object churn costs more than the stats of a turn.
    """
    candidates: list[_Candidate] = [("long_term", "", os.path.join(agent, LONG_TERM_FILE))]
    candidates += [("world", name.removesuffix(".md"), os.path.join(world, name)) for name in topics]
    for day in days:
        name = day.isoformat()
        candidates.append(("day", name, os.path.join(agent, f"{name}.md")))
    return candidates


def _context_files(candidates: Sequence[_Candidate]) -> list[_ContextFile]:
    """The candidates that exist as regular files, with their stamps."""
    found: list[_ContextFile] = []
    for kind, key, path in candidates:
        current = stamp(path)
        if stat.S_ISREG(current[0]):
            found.append((kind, key, path, current))
    return found


def _read_context_files(files: Sequence[_ContextFile]) -> dict[str, str]:
    """The text of each file `_context_files` found, by path (one deleted meanwhile is left out)."""
    texts: dict[str, str] = {}
    for _kind, _key, path, _stamp in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts[path] = handle.read()
        except FileNotFoundError:
            continue
    return texts


def _context_memory(
    files: Sequence[_ContextFile], texts: dict[str, tuple[Stamp, str | None]]
) -> ContextMemory:
    long_term = ""
    world: dict[str, str] = {}
    days: dict[date, str] = {}
    for kind, key, path, _stamp in files:
        text = texts[path][1]
        if text is None:
            continue
        if kind == "long_term":
            long_term = text
        elif kind == "world":
            world[key] = text
        else:
            days[date.fromisoformat(key)] = text
    return ContextMemory(long_term=long_term, world=world, days=days)


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
    import tarfile  # here, not at import: only an export needs it

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
