"""The filesystem SessionStore: `<root>/<id>/events.jsonl` (append-only log) and `state.yaml` (snapshot).

Every event is one compact JSON line appended with a single `os.write` on an `O_APPEND` fd, so
`cat`, `tail -f` and `jq` read the log as it grows. The stdlib `json` module is used directly
rather than the jsonlines library: appends need the encoded bytes of a whole batch for one
write, and reading backwards from the end needs raw lines, neither of which jsonlines helps with.

Durability (`fsync`): "turn" fsyncs once at the end of each `append` call, "always" after every
event line, "never" not at all. When `append` returns, the batch is on disk per that mode.
`append_unsynced` writes the batch and fsyncs it in a worker thread while the caller goes on (a
turn builds its model request meanwhile); the session's next write waits for that fsync, and
one that fails cuts the batch off again, so the log ends on the events made durable before it.

Event loop: writing a few hundred bytes takes about a microsecond and runs inline. An fsync took
~150 us on the reference VM while a round trip through `asyncio.to_thread` alone cost ~100 us,
so always offloading fsync doubled append latency. The store therefore measures its fsyncs and
runs them inline while their moving average stays under `inline_fsync_max_seconds` (2 ms by
default: a stall no token stream would notice, and below a spinning disk's fsync, so slow disks
and overloaded ones move fsync to a worker thread until it is fast again). That holds for one
session at a time: with many, an fsync on the loop stalls every other session's stream, and the
fsyncs of turns that end together add up (200 sessions ending at once: 200 fsyncs back to back,
each 0.3-15 ms while git or another process writes to the disk). So while another session has
written within `_SHARED_WINDOW` seconds, fsync runs in a thread whatever its average. Anything
bigger (large batches, reads, list, snapshots, tail recovery) always runs in a thread.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import contextvars
import dataclasses
import functools
import heapq
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import yaml

from duragent.errors import InvalidName
from duragent.ids import check_name
from duragent.keyed_locks import KeyedLock, KeyedLocks
from duragent.stores.base import (
    FIRST_MESSAGE_WITHIN,
    Change,
    ChangeListener,
    ListKey,
    SequenceConflict,
    SessionEvent,
    SessionNotFound,
    SessionReadOptions,
    SessionSnapshot,
    SessionStatus,
    SessionSummary,
    already_durable,
    first_message,
    ignore_changes,
    list_key,
    session_name,
    storage_error,
)
from duragent.stores.filesystem.atomic import fsync_directory, write_all, write_atomic
from duragent.stores.filesystem.locks import SessionLock

try:
    from yaml import CSafeDumper as _YamlDumper
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _YamlDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]

if TYPE_CHECKING:
    from pydantic import TypeAdapter

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
SNAPSHOT_FILE = "state.yaml"
SNAPSHOT_SCHEMA_VERSION = 1
FsyncMode = Literal["turn", "always", "never"]
Redactor = Callable[[dict[str, Any]], dict[str, Any]]

#: Bytes read per step when scanning a log backwards from its end.
_BLOCK_SIZE = 64 * 1024
#: Batches bigger than this are written from a worker thread (measured: 64 KiB writes in ~20 us).
_INLINE_WRITE_MAX = 64 * 1024
#: How much of a log's end `list` looks at for the latest status and activity.
_SUMMARY_TAIL_BYTES = 64 * 1024
#: Weight of the newest fsync duration in the moving average that decides inline vs thread.
_FSYNC_AVERAGE_WEIGHT = 0.2
#: Threads fsyncing unsynced batches (`append_unsynced`): fsyncs of several sessions overlap.
_FSYNC_THREADS = 4
#: A job of an fsync thread (None: the thread is to end).
_FsyncJob = Callable[[], None] | None
#: After two sessions wrote within this many seconds of each other, fsyncs stay off the event
#: loop for this long: other sessions' streams may be running (a turn writes at its start and end).
_SHARED_WINDOW = 10.0
_STATUSES: frozenset[str] = frozenset(get_args(SessionStatus))
#: How far a session's activity may come after its files' modification time: the kernel stamps
#: files with a coarse clock (up to a tick behind the one events are stamped with), and a clock
#: may be stepped back a little. A page reads on until no session left can be newer than its own.
_MODIFIED_SLACK = timedelta(seconds=5)
#: Compact, UTF-8 as is (greppable), strict JSON (no NaN, so jq reads every line); built once.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

_T = TypeVar("_T")


@dataclass(frozen=True)
class RecoveredTail:
    """Bytes cut off the end of a session log when it was opened: a torn or corrupt last line."""

    session_id: str
    saved_to: Path
    size: int


@dataclass
class _Writer:
    """A session this process has opened for appending: its lock, its O_APPEND fd, where the log ends."""

    path: Path
    lock: SessionLock
    fd: int
    #: The last durable event and the log's size after it (a batch still fsyncing is not counted).
    last_seq: int
    size: int
    #: The fsync of a batch `append_unsynced` wrote, until it ends (it may still cut the batch off).
    syncing: _Fsync | None = None


@dataclass
class _Scan:
    """Events found while reading a log, plus the byte offsets of lines that were not valid events."""

    events: list[SessionEvent] = field(default_factory=list)
    corrupt_offsets: list[int] = field(default_factory=list)


# --- encoding and parsing lines ----------------------------------------------------------------


def encode_event(event: SessionEvent, payload: dict[str, Any] | None = None) -> bytes:
    """One events.jsonl line: compact JSON (UTF-8, no NaN) ending in a newline."""
    record = event.to_record()
    if payload is not None:
        record["payload"] = payload
    return (_JSON_ENCODER.encode(record) + "\n").encode()


def parse_event_line(line: bytes) -> SessionEvent | None:
    """The event stored on one line, or None when the line is not a valid event."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            return None
        return SessionEvent.from_record(record)
    except (ValueError, KeyError, TypeError):
        return None


# --- scanning a log file -----------------------------------------------------------------------


def _complete_end(fd: int, size: int) -> int:
    """Offset just past the last newline: where the complete lines end (0 when there is none)."""
    position = size
    while position > 0:
        start = max(0, position - _BLOCK_SIZE)
        newline = os.pread(fd, position - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _lines_backward(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The complete lines before `end` (which must follow a newline), last first, with start offsets.

    Reads blocks from the end towards the start, so stopping early costs only the tail.
    """
    if end <= 0:
        return
    # `buf` holds file[buf_start : buf_start + len(buf)]; the current line ends at buf[high] ("\n").
    buf_start, buf, high = end - 1, b"", 0
    while True:
        newline = buf.rfind(b"\n", 0, high)
        while newline < 0 and buf_start > 0:
            start = max(0, buf_start - _BLOCK_SIZE)
            block = os.pread(fd, buf_start - start, start)
            buf = block + buf[:high]
            high += len(block)
            buf_start = start
            newline = block.rfind(b"\n")
        yield buf_start + newline + 1, buf[newline + 1 : high]
        if newline < 0:
            return
        high = newline


def _lines_forward(fd: int, end: int, chunk_size: int = 1024 * 1024) -> Iterator[tuple[int, bytes]]:
    """The complete lines before `end`, first first, with start offsets; reads `chunk_size` at a time."""
    position, carry = 0, b""
    while position < end:
        chunk = os.pread(fd, min(chunk_size, end - position), position)
        if not chunk:
            return
        data = carry + chunk
        data_start = position - len(carry)
        position += len(chunk)
        line_start = 0
        while (newline := data.find(b"\n", line_start)) >= 0:
            yield data_start + line_start, data[line_start:newline]
            line_start = newline + 1
        carry = data[line_start:]


def _read_backward(fd: int, end: int, after_seq: int) -> _Scan:
    """Events after `after_seq`, found by walking back from the end; cost grows with the tail only."""
    scan = _Scan()
    for offset, line in _lines_backward(fd, end):
        if not line.strip():
            continue
        event = parse_event_line(line)
        if event is None:
            scan.corrupt_offsets.append(offset)
            continue
        if event.seq <= after_seq:
            break
        scan.events.append(event)
    scan.events.reverse()
    scan.corrupt_offsets.reverse()
    return scan


def _read_forward(fd: int, end: int, options: SessionReadOptions) -> _Scan:
    """Events after `options.after_seq` from the start of the log, stopping once `limit` match."""
    scan = _Scan()
    matched = 0
    for offset, line in _lines_forward(fd, end):
        if not line.strip():
            continue
        event = parse_event_line(line)
        if event is None:
            scan.corrupt_offsets.append(offset)
            continue
        if event.seq <= options.after_seq:
            continue
        scan.events.append(event)
        if options.types is None or event.type in options.types:
            matched += 1
            if options.limit is not None and matched >= options.limit:
                break
    return scan


def _last_event(fd: int, end: int) -> SessionEvent | None:
    """The last valid event of the log (corrupt trailing lines are skipped)."""
    for _offset, line in _lines_backward(fd, end):
        event = parse_event_line(line)
        if event is not None:
            return event
    return None


def _in_order(session_id: str, scan: _Scan, options: SessionReadOptions) -> list[SessionEvent]:
    """Apply the filters, dropping any event whose seq does not increase (a hand-edited log)."""
    result: list[SessionEvent] = []
    previous = options.after_seq
    for event in scan.events:
        if event.seq <= previous:
            log.warning("session %s: skipped event seq %d after seq %d", session_id, event.seq, previous)
            continue
        previous = event.seq
        if options.types is not None and event.type not in options.types:
            continue
        result.append(event)
        if options.limit is not None and len(result) >= options.limit:
            break
    return result


# --- snapshots -----------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _dump_yaml(value: Any) -> str:
    return yaml.dump(
        value, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


def _plain(value: Any) -> Any:
    """A fresh copy of nested dicts and lists (as `asdict` makes), so the YAML has no `&anchors`."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@dataclass
class ConversationYaml:
    """The YAML of a session's conversation entries, kept between snapshots.

    A session's conversation only grows and its entries are never changed in place, so the
    entries a snapshot adds are rendered once, in one `yaml.dump`, and appended to the UTF-8 text
    rendered before: writing state.yaml costs the new messages, not the whole conversation again.
    Whether the conversation still starts with what was rendered is one list comparison in C
    (an entry equal to the one rendered renders alike); a conversation that does not (rewritten,
    or replaced by a shorter one) is rendered afresh. The cache costs the text's bytes and a
    reference per entry.
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    #: The items of `conversation:` rendered so far, as UTF-8.
    text: bytearray = field(default_factory=bytearray)
    #: Applied to each entry before it is rendered (the secret guard); the cache keeps the originals.
    redact: Redactor | None = None

    def items(self, conversation: Sequence[dict[str, Any]]) -> bytes | bytearray:
        """The items of `conversation:` as UTF-8, exactly as `yaml.dump` writes them in a block
        mapping: the cache's own buffer (read it before the next call)."""
        known = len(self.entries)
        if known > len(conversation) or self.entries != conversation[:known]:
            self.entries, self.text, known = [], bytearray(), 0
        if known < len(conversation):
            added = conversation[known:]
            redact = self.redact
            shown = [_plain(redact(entry) if redact is not None else entry) for entry in added]
            # A list renders as "- key: ..." items at column 0, as items of a top-level key do.
            self.text += _dump_yaml(shown).encode()
            self.entries += added
        return self.text


def snapshot_to_yaml(snapshot: SessionSnapshot, conversation_yaml: ConversationYaml | None = None) -> bytes:
    """state.yaml: block-style YAML a person can read, timestamps as ISO 8601 strings.

    `conversation_yaml` keeps the rendered messages of earlier snapshots of the same session.
    """
    before: dict[str, Any] = {"schema_version": SNAPSHOT_SCHEMA_VERSION}
    after: dict[str, Any] = {}
    side = before
    for item in fields(snapshot):
        if item.name == "conversation":
            side = after
            continue
        side[item.name] = _plain(getattr(snapshot, item.name))
    before["created_at"] = _iso(snapshot.created_at)
    before["updated_at"] = _iso(snapshot.updated_at)
    conversation = snapshot.conversation
    items = (conversation_yaml or ConversationYaml()).items(conversation)
    heading = b"conversation:\n" if conversation else b"conversation: []\n"
    # one copy of the conversation's text, however long
    return b"".join((_dump_yaml(before).encode(), heading, items, _dump_yaml(after).encode()))


@functools.cache
def _snapshot_adapter() -> TypeAdapter[SessionSnapshot]:
    """The pydantic validator of state.yaml, built once (pydantic is imported only when needed)."""
    from pydantic import TypeAdapter

    return TypeAdapter(SessionSnapshot)


def snapshot_from_yaml(data: bytes) -> SessionSnapshot:
    """Parse and validate state.yaml; raises ValueError (or yaml.YAMLError) when it is not a snapshot."""
    from pydantic import ValidationError

    document = yaml.load(data, Loader=_YamlLoader)
    if not isinstance(document, dict):
        raise ValueError("not a mapping")
    document.pop("schema_version", None)
    try:
        return _snapshot_adapter().validate_python(document)
    except ValidationError as error:
        raise ValueError(str(error)) from error


def _corrupt_copy_path(events_path: Path) -> Path:
    """`events.jsonl.corrupt-<UTC timestamp>`, with a counter if that name is taken."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = events_path.with_name(f"{events_path.name}.corrupt-{stamp}")
    counter = 2
    while candidate.exists():
        candidate = events_path.with_name(f"{events_path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    return candidate


def _batch_change(
    events_path: Path, session_id: str, batch: Sequence[SessionEvent], appended_up_to: int
) -> Change:
    """What an append tells the committer: `turn K (+N events)` or `+N events`, details = the types,
    and where the log ends after it (`appended_up_to`)."""
    turn = None
    for event in batch:
        value = event.payload.get("turn")
        if type(value) is int and (turn is None or value > turn):  # (not a bool)
            turn = value
    count = "+1 event" if len(batch) == 1 else f"+{len(batch)} events"
    types = tuple([event.type for event in batch])
    return Change(
        paths=_paths_of(events_path),
        kind="session",
        subject=session_id,
        summary=count if turn is None else f"turn {turn} ({count})",
        details=_shared_details(types),
        appended_up_to=appended_up_to,
    )


#: The few event-type sequences batches have, one tuple each: a server keeps every change it
#: has not committed yet (up to `git.max_commit_delay` of them), two or three per turn.
_SHARED_DETAILS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared_details(types: tuple[str, ...]) -> tuple[str, ...]:
    """The one kept tuple equal to `types` (kept while fewer than 256 are: odd ones go unshared)."""
    shared = _SHARED_DETAILS.get(types)
    if shared is None and len(_SHARED_DETAILS) < 256:
        shared = _SHARED_DETAILS.setdefault(types, types)
    return types if shared is None else shared


@functools.lru_cache(maxsize=256)
def _paths_of(events_path: Path) -> tuple[Path]:
    """`(events_path,)`, one tuple per session file for all its changes (of the sessions
    written lately: an unloaded one's tuple is dropped as others come)."""
    return (events_path,)


class FilesystemSessionStore:
    """SessionStore on plain files: one folder per session under `root`.

    `fsync` is the durability mode (see the module docstring), `on_change` is told about every
    file this store changes (for the git committer), `redact` rewrites each payload before it
    reaches disk (the secret guard). `recovered` lists the torn or corrupt log tails this store
    cut off when it opened sessions. `inline_fsync_max_seconds` is the average fsync time under
    which fsync runs on the event loop instead of a thread (0 = always a thread).
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: FsyncMode = "turn",
        on_change: ChangeListener = ignore_changes,
        redact: Redactor | None = None,
        inline_fsync_max_seconds: float = 0.002,
    ):
        if fsync not in ("turn", "always", "never"):
            raise ValueError(f"fsync must be turn, always or never, not {fsync!r}")
        self.root = root
        self.fsync: FsyncMode = fsync
        self.recovered: list[RecoveredTail] = []
        self._on_change = on_change
        self._redact = redact
        self._inline_fsync_max = inline_fsync_max_seconds
        self._fsync_average: float | None = None  # unknown until the first fsync (done in a thread)
        self._last_writer: tuple[str, float] | None = None  # the session that appended last, and when
        self._shared_until = 0.0  # fsyncs stay off the loop until then (another session wrote lately)
        self._writers: dict[str, _Writer] = {}
        # (a session's locks live while in use: a server sees sessions without end)
        self._guards: KeyedLocks[str] = KeyedLocks()
        self._snapshot_guards: KeyedLocks[str] = KeyedLocks()
        self._conversation_yaml: dict[str, ConversationYaml] = {}
        self._fsync_threads: _FsyncThreads | None = None  # started on the first unsynced append

    # --- paths ---------------------------------------------------------------------------------

    def session_dir(self, session_id: str) -> Path:
        """The folder of one session (validated id: never escapes `root`)."""
        return self.root / check_name(session_id, "session id")

    def events_path(self, session_id: str) -> Path:
        """`<root>/<id>/events.jsonl`."""
        return self.session_dir(session_id) / EVENTS_FILE

    def snapshot_path(self, session_id: str) -> Path:
        """`<root>/<id>/state.yaml`."""
        return self.session_dir(session_id) / SNAPSHOT_FILE

    # --- SessionStore --------------------------------------------------------------------------

    async def append(self, session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        """Append one event or a batch; seqs must continue the log, else SequenceConflict (nothing written).

        Takes the session's lock on the first write from this process (SessionLocked if another
        process writes it). When this returns the batch is on disk, fsynced per the store's mode.
        """
        await self._append(session_id, events, unsynced=False)

    async def append_unsynced(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent]
    ) -> asyncio.Future[None]:
        """Append like `append`, returning once the batch is written; the future is done once it is
        fsynced (in a worker thread), or raises the fsync's error after cutting the batch off.

        The session's next append, release or delete waits for the fsync first. With fsync
        "never", or a batch that must be fsynced line by line ("always") or is too big to write
        on the event loop, this is `append` and the future is done at once.
        """
        synced = await self._append(session_id, events, unsynced=True)
        return already_durable() if synced is None else synced

    async def _append(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent], *, unsynced: bool
    ) -> asyncio.Future[None] | None:
        """Write a batch under the session's guard; the fsync still running when `unsynced` allows it."""
        if session_id not in self._writers:  # (an open log's id was checked when it was opened)
            check_name(session_id, "session id")
        batch = [events] if isinstance(events, SessionEvent) else list(events)
        if not batch:
            return None
        try:
            change, synced = await self._write_guarded(session_id, batch, unsynced=unsynced)
        except OSError as error:  # (a full, read-only or foreign-owned disk: a person can fix it)
            if batch[0].seq == 1:  # the session's creation: no empty folder stays behind
                await self._abandon_new_session(session_id)
            raise self._refused(session_id, error) from error
        if synced is None:
            self._on_change(change)
        elif not unsynced:
            await synced  # (cannot be cancelled: a cancelled caller stops once the fsync ended)
            return None
        return synced

    async def _write_guarded(
        self, session_id: str, batch: Sequence[SessionEvent], *, unsynced: bool
    ) -> tuple[Change, asyncio.Future[None] | None]:
        """Write a batch under the session's guard: its change, and its fsync's future if that
        still runs (None once the batch is durable)."""
        synced = None
        async with self._guard(session_id):
            writer = self._writers.get(session_id) or await self._open_writer(session_id)
            if writer.syncing is not None:
                await _wait_for_sync(writer)
                # A failed fsync that could not cut its batch off closed the log: open and repair it.
                writer = await self._open_writer(session_id)
            _check_sequence(session_id, writer.last_seq, batch)
            lines = [self._encode(event) for event in batch]
            size = sum(map(len, lines))
            change = _batch_change(writer.path, session_id, batch, writer.size + size)
            if unsynced and self._can_sync_later(len(lines), size):
                self._others_writing(session_id)
                synced = self._write_unsynced(writer, lines, batch[-1].seq, change)
            elif self._can_write_inline(session_id, len(lines), size):
                self._write_batch(writer, lines, size, batch[-1].seq)
            elif self._can_sync_later(len(lines), size):
                # Written here, fsynced in a thread and waited for below (the guard is free
                # meanwhile: the session's next write waits for this fsync anyway).
                synced = self._write_unsynced(writer, lines, batch[-1].seq, change)
            else:
                await _run_to_completion(lambda: self._write_batch(writer, lines, size, batch[-1].seq))
        return change, synced

    async def read(
        self, session_id: str, options: SessionReadOptions = SessionReadOptions()
    ) -> list[SessionEvent]:
        """Events in seq order after `options.after_seq`, of `options.types`, at most `options.limit`.

        With a large `after_seq` (resuming), only the end of the log is read. Corrupt lines are
        skipped with a warning; an incomplete last line (a write in progress or torn) is ignored.
        A batch still fsyncing (`append_unsynced`) is not read: it may yet be lost.
        """
        session_dir = self.session_dir(session_id)
        if not session_dir.is_dir():
            raise SessionNotFound(session_id)
        return await asyncio.to_thread(self._read_sync, session_id, options, self._durable_size(session_id))

    async def delete(self, session_id: str) -> None:
        """Remove the session's folder (log, snapshot, memory) under its lock; SessionNotFound if absent."""
        session_dir = self.session_dir(session_id)
        async with self._snapshot_guard(session_id), self._guard(session_id):
            if not session_dir.is_dir():
                raise SessionNotFound(session_id)
            writer = self._writers.get(session_id)
            if writer is not None and writer.syncing is not None:
                await _wait_for_sync(writer)
            writer = self._writers.pop(session_id, None)
            self._conversation_yaml.pop(session_id, None)
            if writer is not None:
                os.close(writer.fd)
                lock = writer.lock
            else:
                lock = SessionLock(session_dir, session_id)
                await asyncio.to_thread(lock.acquire)  # may wait out a child's copy of it
            try:
                await asyncio.to_thread(self._remove_dir, session_dir)
            finally:
                lock.release()
        self._on_change(Change(paths=(session_dir,), kind="session", subject=session_id, summary="deleted"))

    async def last_seq(self, session_id: str) -> int:
        """The highest stored seq; 0 for a session with no events or that does not exist yet."""
        check_name(session_id, "session id")
        writer = self._writers.get(session_id)
        if writer is not None:
            return writer.last_seq
        return await asyncio.to_thread(self._last_seq_sync, session_id)

    async def list(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        after: ListKey | None = None,
    ) -> builtins.list[SessionSummary]:
        """Sessions newest activity first (ties: greater id first), filtered, from after `after` on.

        Each session is read from its snapshot and the end of its log, never the whole log. A page
        (`limit`) reads sessions newest file first and stops once none left can be on it.
        """
        # (a snapshot of the dict in one C call: an fsync thread that fails may forget a writer)
        durable = {session_id: writer.size for session_id, writer in list(self._writers.items())}

        def wanted(summary: SessionSummary) -> bool:
            return (
                (agent is None or summary.agent == agent)
                and (status is None or summary.status == status)
                and (after is None or list_key(summary) < after)
            )

        return await asyncio.to_thread(self._list_sync, durable, wanted, limit)

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        """Write state.yaml atomically (temp file, fsync, rename, fsync dir) as this session's writer.

        Appends go on while it is written (it holds the session's snapshot guard, not its append
        guard): a snapshot only caches events the log already holds.
        """
        session_id = snapshot.session_id
        path = self.snapshot_path(session_id)
        durable = self.fsync != "never"
        async with self._snapshot_guard(session_id):
            async with self._guard(session_id):
                await self._open_writer(session_id)
            # Only the messages added since the last snapshot are rendered (under the snapshot
            # guard, so one thread at a time uses this session's cache); the write and its fsyncs
            # stay off the loop.
            rendered = self._conversation_yaml.setdefault(session_id, ConversationYaml(redact=self._redact))
            # Secrets stay out of state.yaml as out of the log (the conversation is redacted as rendered).
            shown = self._redacted_snapshot(snapshot)
            await _run_to_completion(
                lambda: write_atomic(path, snapshot_to_yaml(shown, rendered), durable=durable)
            )
        self._on_change(
            Change(
                paths=(path,),
                kind="session",
                subject=session_id,
                summary=f"snapshot at seq {snapshot.last_seq}",
            )
        )

    async def load_snapshot(self, session_id: str) -> SessionSnapshot | None:
        """state.yaml, or None when missing or unreadable (logged as a warning; rebuild from the log)."""
        path = self.snapshot_path(session_id)
        return await asyncio.to_thread(_load_snapshot_file, session_id, path)

    async def release(self, session_id: str) -> None:
        """Close the session's log, release its lock and drop its caches (reopened on next write)."""
        async with self._snapshot_guard(session_id), self._guard(session_id):
            writer = self._writers.get(session_id)
            if writer is not None and writer.syncing is not None:
                await _wait_for_sync(writer)
            writer = self._writers.pop(session_id, None)
            self._conversation_yaml.pop(session_id, None)
            if writer is not None:
                os.close(writer.fd)
                writer.lock.release()

    async def close(self) -> None:
        """Close every open log and release the session locks this store holds.

        Each session is released under its guards, so an append or snapshot still writing in a
        thread finishes with its descriptor open (closed under it, its fsync would fail and a
        later open could be handed the same number).
        """
        for session_id in list(self._writers):
            await self.release(session_id)
        self._conversation_yaml.clear()
        if self._fsync_threads is not None:
            self._fsync_threads.stop()  # idle: every release waited for its fsync
            self._fsync_threads = None

    # --- appending -----------------------------------------------------------------------------

    def _guard(self, session_id: str) -> KeyedLock[str]:
        """Serialises this process's writes to one session (appends, snapshots, delete)."""
        return self._guards(session_id)

    def _snapshot_guard(self, session_id: str) -> KeyedLock[str]:
        """Serialises one session's snapshot writes (and its release or delete after them).

        Taken before the append guard wherever both are held.
        """
        return self._snapshot_guards(session_id)

    async def _open_writer(self, session_id: str) -> _Writer:
        writer = self._writers.get(session_id)
        if writer is None:
            try:
                writer = await asyncio.to_thread(self._open_writer_sync, session_id)
            except OSError as error:  # (its lock or its log refused: named, as a write is)
                raise self._refused(session_id, error) from error
            self._writers[session_id] = writer
        return writer

    def _open_writer_sync(self, session_id: str) -> _Writer:
        """Create the folder if needed, take the lock, open the log and repair its tail."""
        session_dir = self.session_dir(session_id)
        created = not session_dir.is_dir()
        session_dir.mkdir(parents=True, exist_ok=True)
        events_path = session_dir / EVENTS_FILE
        lock = SessionLock(session_dir, session_id)
        lock.acquire()
        try:
            fd = os.open(events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                last_seq, size = self._recover_tail(session_id, fd)
                if created and self.fsync != "never":
                    fsync_directory(session_dir)
                    fsync_directory(self.root)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            lock.release()
            raise
        return _Writer(path=events_path, lock=lock, fd=fd, last_seq=last_seq, size=size)

    def _refused(self, session_id: str, error: OSError) -> OSError:
        """`error` of a write to a session, as `storage_error` names it: the file the call
        named (the session's lock, say), else the session's log."""
        path = Path(error.filename) if isinstance(error.filename, str) else self.events_path(session_id)
        return storage_error(error, path)

    async def _abandon_new_session(self, session_id: str) -> None:
        """Remove the folder of a session whose first event could not be written: its log
        holds nothing (a batch that failed is cut off), so it is no session at all."""
        writer = self._writers.get(session_id)
        if writer is not None:
            if writer.size or writer.syncing is not None:
                return  # (something was stored after all: kept)
            del self._writers[session_id]
            os.close(writer.fd)
            writer.lock.release()
        await asyncio.to_thread(_remove_empty_session_dir, self.session_dir(session_id))

    def _recover_tail(self, session_id: str, fd: int) -> tuple[int, int]:
        """Cut a torn or corrupt end off the log (saving the bytes); returns (last seq, new size).

        A complete valid event is never dropped: a valid last line that only lacks its newline
        gets the newline added instead.
        """
        size = os.fstat(fd).st_size
        end = _complete_end(fd, size)
        if end < size:
            trailing = os.pread(fd, size - end, end)
            event = parse_event_line(trailing)
            if event is not None:
                write_all(fd, b"\n")
                return event.seq, size + 1
        cut_from = end
        last_seq = 0
        for offset, line in _lines_backward(fd, end):
            event = parse_event_line(line)
            if event is not None:
                last_seq = event.seq
                break
            cut_from = offset
        if cut_from < size:
            self._cut_tail(session_id, fd, cut_from, size)
        return last_seq, cut_from

    def _cut_tail(self, session_id: str, fd: int, cut_from: int, size: int) -> None:
        events_path = self.events_path(session_id)
        saved_to = _corrupt_copy_path(events_path)
        write_atomic(saved_to, os.pread(fd, size - cut_from, cut_from), durable=self.fsync != "never")
        os.ftruncate(fd, cut_from)
        if self.fsync != "never":
            os.fsync(fd)
        self.recovered.append(RecoveredTail(session_id, saved_to, size - cut_from))
        log.warning(
            "session %s: cut %d bytes of torn or corrupt data off the end of %s; saved in %s",
            session_id,
            size - cut_from,
            events_path,
            saved_to,
        )

    def _redacted_snapshot(self, snapshot: SessionSnapshot) -> SessionSnapshot:
        """The snapshot with its pending approvals and metadata redacted (the conversation as is)."""
        if self._redact is None:
            return snapshot
        redact = self._redact
        return dataclasses.replace(
            snapshot,
            pending_approvals=[redact(approval) for approval in snapshot.pending_approvals],
            metadata=redact(snapshot.metadata),
        )

    def _encode(self, event: SessionEvent) -> bytes:
        payload = self._redact(event.payload) if self._redact is not None else None
        return encode_event(event, payload)

    def _can_write_inline(self, session_id: str, count: int, size: int) -> bool:
        """Whether a batch of `count` lines, `size` bytes, is written and fsynced on the event loop."""
        if size > _INLINE_WRITE_MAX:
            return False
        if self.fsync == "never":
            return True
        shared = self._others_writing(session_id)
        fsyncs = count if self.fsync == "always" else 1
        average = self._fsync_average
        return not shared and fsyncs == 1 and average is not None and average <= self._inline_fsync_max

    def _can_sync_later(self, count: int, size: int) -> bool:
        """Whether a batch can be written now and fsynced in a thread after: one fsync, written inline."""
        if self.fsync == "never" or (self.fsync == "always" and count > 1):
            return False
        return size <= _INLINE_WRITE_MAX

    def _write_unsynced(
        self, writer: _Writer, lines: Sequence[bytes], last_seq: int, change: Change
    ) -> _Fsync:
        """Write the lines now and start their fsync in a thread; the writer advances once it succeeds."""
        data = b"".join(lines)
        try:
            write_all(writer.fd, data)
        except OSError:
            self._undo_partial_write(writer)
            raise
        loop = asyncio.get_running_loop()
        synced = writer.syncing = _Fsync(loop=loop)
        if self._fsync_threads is None:
            self._fsync_threads = _FsyncThreads(_FSYNC_THREADS)
        # (run in the writer's context: the committer hears of the batch as made for whom it was,
        # a person's command or an agent's turn, see duragent.stores.base.person_acting)
        self._fsync_threads.run(
            functools.partial(
                contextvars.copy_context().run,
                self._sync_batch,
                loop,
                writer,
                synced,
                change,
                len(data),
                last_seq,
            )
        )
        return synced

    def _sync_batch(
        self,
        loop: asyncio.AbstractEventLoop,
        writer: _Writer,
        synced: _Fsync,
        change: Change,
        size: int,
        last_seq: int,
    ) -> None:
        """Worker thread: fsync a batch `_write_unsynced` wrote and advance the writer, or cut the
        batch off if the fsync fails; then tell the event loop. (Nothing else writes the log
        meanwhile: every write of the session waits for this first.)"""
        error: BaseException | None = None
        try:
            try:
                self._timed_fsync(writer.fd)
            except OSError:
                self._undo_partial_write(writer)
                raise
            writer.size += size
            writer.last_seq = last_seq
        except BaseException as failure:  # reported to whoever waits on `synced`
            error = failure
        loop.call_soon_threadsafe(self._fsynced, writer, synced, change, error)

    def _fsynced(self, writer: _Writer, synced: _Fsync, change: Change, error: BaseException | None) -> None:
        """On the loop: end an unsynced batch's wait; the committer hears of it once it is durable."""
        if writer.syncing is synced:
            writer.syncing = None
        if error is not None:
            synced.set_exception(storage_error(error, writer.path) if isinstance(error, OSError) else error)
            return
        synced.set_result(None)
        self._on_change(change)

    def _others_writing(self, session_id: str) -> bool:
        """Whether another session appended lately (its stream may be running); notes this append."""
        now = time.monotonic()
        last = self._last_writer
        if last is not None and last[0] != session_id and now - last[1] < _SHARED_WINDOW:
            self._shared_until = now + _SHARED_WINDOW
        self._last_writer = (session_id, now)
        return now < self._shared_until

    def _write_batch(self, writer: _Writer, lines: Sequence[bytes], size: int, last_seq: int) -> None:
        """Blocking: write the lines (`size` bytes), fsync per mode, advance the writer; undo on failure."""
        try:
            if self.fsync == "always":
                for line in lines:
                    write_all(writer.fd, line)
                    self._timed_fsync(writer.fd)
            else:
                write_all(writer.fd, b"".join(lines))
                if self.fsync == "turn":
                    self._timed_fsync(writer.fd)
        except OSError:
            self._undo_partial_write(writer)
            raise
        writer.size += size
        writer.last_seq = last_seq

    def _undo_partial_write(self, writer: _Writer) -> None:
        """Truncate what a failed batch left behind, so the log ends on an acknowledged event."""
        try:
            os.ftruncate(writer.fd, writer.size)
        except OSError:
            # The log's end is unknown now: forget the writer so the next append reopens and repairs it.
            for session_id, open_writer in list(self._writers.items()):
                if open_writer is writer:
                    del self._writers[session_id]
            os.close(writer.fd)
            writer.lock.release()

    def _timed_fsync(self, fd: int) -> None:
        started = time.perf_counter()
        os.fsync(fd)
        elapsed = time.perf_counter() - started
        previous = self._fsync_average
        self._fsync_average = (
            elapsed
            if previous is None
            else (1 - _FSYNC_AVERAGE_WEIGHT) * previous + _FSYNC_AVERAGE_WEIGHT * elapsed
        )

    # --- reading -------------------------------------------------------------------------------

    def _durable_size(self, session_id: str) -> int | None:
        """Where this process's log of the session ends durably (None: not open here, read it all)."""
        writer = self._writers.get(session_id)
        return None if writer is None else writer.size

    def _read_sync(
        self, session_id: str, options: SessionReadOptions, durable_size: int | None = None
    ) -> builtins.list[SessionEvent]:
        try:
            fd = os.open(self.events_path(session_id), os.O_RDONLY)
        except FileNotFoundError:
            if self.session_dir(session_id).is_dir():
                return []
            raise SessionNotFound(session_id) from None
        try:
            size = os.fstat(fd).st_size
            end = _complete_end(fd, size if durable_size is None else min(size, durable_size))
            scan = (
                _read_backward(fd, end, options.after_seq)
                if self._tail_is_shorter(fd, end, options.after_seq)
                else _read_forward(fd, end, options)
            )
        finally:
            os.close(fd)
        if scan.corrupt_offsets:
            log.warning(
                "session %s: skipped %d corrupt line(s) in %s at byte offset(s) %s",
                session_id,
                len(scan.corrupt_offsets),
                self.events_path(session_id),
                ", ".join(str(offset) for offset in scan.corrupt_offsets[:10]),
            )
        return _in_order(session_id, scan, options)

    def _tail_is_shorter(self, fd: int, end: int, after_seq: int) -> bool:
        """Whether the events after `after_seq` are likely in the second half of the log."""
        if after_seq <= 0:
            return False
        last = _last_event(fd, end)
        return last is not None and after_seq >= last.seq / 2

    def _last_seq_sync(self, session_id: str) -> int:
        try:
            fd = os.open(self.events_path(session_id), os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            last = _last_event(fd, _complete_end(fd, os.fstat(fd).st_size))
        finally:
            os.close(fd)
        return 0 if last is None else last.seq

    def _remove_dir(self, session_dir: Path) -> None:
        shutil.rmtree(session_dir)
        if self.fsync != "never":
            fsync_directory(self.root)

    # --- listing -------------------------------------------------------------------------------

    def _list_sync(
        self, durable: dict[str, int], wanted: Callable[[SessionSummary], bool], limit: int | None
    ) -> builtins.list[SessionSummary]:
        """The first `limit` wanted summaries; `durable` bounds the logs open here (`_durable_size`).

        A session's activity is never (much) later than its files' modification time, so reading
        them newest file first, a page is complete once its last session is newer than the next
        file: the rest of the sessions are never read.
        """
        best: builtins.list[tuple[ListKey, SessionSummary]] = []  # a min-heap of the page so far
        for modified_ns, session_id in self._by_modification():
            if limit is not None and len(best) == limit:
                modified = datetime.fromtimestamp(modified_ns / 1e9, UTC)
                if best[0][0][0] > modified + _MODIFIED_SLACK:
                    break
            summary = self._summarize(session_id, durable.get(session_id))
            if summary is None or not wanted(summary):
                continue
            # (keys are unique, so summaries are never compared)
            if limit is None or len(best) < limit:
                heapq.heappush(best, (list_key(summary), summary))
            elif list_key(summary) > best[0][0]:
                heapq.heapreplace(best, (list_key(summary), summary))
        return [summary for _, summary in sorted(best, reverse=True)]

    def _by_modification(self) -> builtins.list[tuple[int, str]]:
        """(modification time of its log in ns, id) of every session, newest first.

        The log holds every event a snapshot covers, so its time is the session's; state.yaml's
        only stands in for a log that is missing.
        """
        try:
            entries = builtins.list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                check_name(entry.name, "session id")
            except InvalidName:
                continue
            for name in (EVENTS_FILE, SNAPSHOT_FILE):
                try:
                    found.append((os.stat(f"{entry.path}/{name}").st_mtime_ns, entry.name))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                break
        found.sort(reverse=True)
        return found

    def _summarize(self, session_id: str, durable_size: int | None = None) -> SessionSummary | None:
        """A session's row from its snapshot, corrected by the events at the end of its log."""
        snapshot = _load_snapshot_file(session_id, self.snapshot_path(session_id))
        first, message, tail = _head_and_tail(self.events_path(session_id), durable_size)
        status: SessionStatus
        if snapshot is not None:
            agent, status, last_seq = snapshot.agent, snapshot.status, snapshot.last_seq
            created_at, updated_at = snapshot.created_at, snapshot.updated_at
        elif first is not None:
            agent, status, last_seq = _agent_of(first), "active", 0
            created_at, updated_at = first.ts, first.ts
        else:
            return None
        for event in tail:
            if event.seq <= last_seq:
                continue
            status = _status_after(status, event)
            last_seq, updated_at = event.seq, max(updated_at, event.ts)
        return SessionSummary(
            session_id, agent, status, created_at, updated_at, last_seq, session_name(first), message
        )


def _check_sequence(session_id: str, last_seq: int, batch: Sequence[SessionEvent]) -> None:
    expected = last_seq + 1
    for event in batch:
        if event.seq != expected:
            raise SequenceConflict(session_id, expected, event.seq)
        expected += 1


async def _run_to_completion(call: Callable[[], _T]) -> _T:
    """Run blocking `call` in a thread; if the caller is cancelled, still wait for it to finish.

    The thread cannot be stopped, so returning early would let the next append race a write
    still in flight; waiting keeps the per-session guard held until the log's state is known.
    """
    task = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


async def _wait_for_sync(writer: _Writer) -> None:
    """Wait for the fsync of the writer's unsynced batch to end (its error is its caller's)."""
    syncing = writer.syncing
    if syncing is not None and not syncing.done():
        await asyncio.wait({syncing})


class _FsyncThreads:
    """Up to `count` threads that run the fsyncs of unsynced batches.

    Lighter than a ThreadPoolExecutor (no concurrent future per job): a turn's fsync
    hands over one call and hears back through `call_soon_threadsafe`. Each thread waits on an
    inbox of its own and a job goes to one idle thread: with one queue shared by all, a job also
    woke another idle thread, which took the GIL from the event loop to find nothing (strace: two
    threads' futex calls per fsync). A thread starts only when none is idle, so one session's
    turns keep one thread.
    """

    def __init__(self, count: int):
        self._count = count
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        #: The inboxes of the threads waiting for a job (the last to finish is woken first).
        self._idle: list[queue.SimpleQueue[_FsyncJob]] = []
        #: Jobs given while every thread was busy (None: a thread is to end).
        self._pending: collections.deque[_FsyncJob] = collections.deque()

    def run(self, job: Callable[[], None]) -> None:
        """Run `job` in one of the threads (it reports its own outcome)."""
        with self._lock:
            if self._idle:
                inbox = self._idle.pop()
            elif len(self._threads) < self._count:
                thread = threading.Thread(
                    target=self._work, args=(job,), name=f"duragent-fsync-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                inbox = None
            else:
                self._pending.append(job)
                return
        if inbox is not None:
            inbox.put(job)
            return
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads.remove(thread)
            raise

    def stop(self) -> None:
        """Let the threads end once the jobs given before are done."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._pending.extend([None] * (len(self._threads) - len(idle)))
        for inbox in idle:
            inbox.put(None)

    def _work(self, job: _FsyncJob) -> None:
        inbox: queue.SimpleQueue[_FsyncJob] = queue.SimpleQueue()
        while job is not None:
            try:
                job()
            except BaseException:  # a job reports its errors; this is a bug (or the loop closed)
                log.exception("fsync thread: a job failed")
            job = self._next_job(inbox)

    def _next_job(self, inbox: queue.SimpleQueue[_FsyncJob]) -> _FsyncJob:
        """A pending job, else the next one `run` gives this thread (waited for)."""
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            self._idle.append(inbox)
        return inbox.get()


class _Fsync(asyncio.Future[None]):
    """Done when an unsynced batch's fsync (in a worker thread) has ended; it cannot be cancelled,
    since the fsync cannot: a task cancelled while awaiting it stops once the fsync has ended."""

    def cancel(self, msg: Any = None) -> bool:
        return False


def _remove_empty_session_dir(session_dir: Path) -> None:
    """Remove a session folder holding only its lock and an empty log; else leave it."""
    events = session_dir / EVENTS_FILE
    with contextlib.suppress(OSError):  # (what cannot go stays: it is only litter)
        if events.exists() and events.stat().st_size:
            return
        events.unlink(missing_ok=True)
        (session_dir / SessionLock.FILE_NAME).unlink(missing_ok=True)
        session_dir.rmdir()  # (fails, keeping it, if it holds anything else)


def _load_snapshot_file(session_id: str, path: Path) -> SessionSnapshot | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("session %s: cannot read %s (%s); rebuilding from the log", session_id, path, error)
        return None
    try:
        snapshot = snapshot_from_yaml(data)
    except (ValueError, yaml.YAMLError) as error:
        log.warning("session %s: ignoring corrupt %s (%s); rebuilding from the log", session_id, path, error)
        return None
    if snapshot.session_id != session_id:
        log.warning(
            "session %s: %s is for session %s; rebuilding from the log", session_id, path, snapshot.session_id
        )
        return None
    return snapshot


def _head_and_tail(
    events_path: Path, durable_size: int | None = None
) -> tuple[SessionEvent | None, str | None, list[SessionEvent]]:
    """The first valid event, the first message a person sent among the first
    `FIRST_MESSAGE_WITHIN` events (`first_message`), and the valid events in the last 64 KiB of
    a log (in order), up to `durable_size` bytes when given."""
    try:
        fd = os.open(events_path, os.O_RDONLY)
    except FileNotFoundError:
        return None, None, []
    try:
        size = os.fstat(fd).st_size
        end = _complete_end(fd, size if durable_size is None else min(size, durable_size))
        first: SessionEvent | None = None
        message: str | None = None
        read = 0
        for _offset, line in _lines_forward(fd, end, chunk_size=4096):
            event = parse_event_line(line)
            if event is None:
                continue
            first = first or event
            message = first_message(event.type, event.payload)
            read += 1
            if message is not None or read == FIRST_MESSAGE_WITHIN:
                break
        tail: list[SessionEvent] = []
        for offset, line in _lines_backward(fd, end):
            event = parse_event_line(line)
            if event is not None:
                tail.append(event)
            if offset < end - _SUMMARY_TAIL_BYTES:
                break
    finally:
        os.close(fd)
    tail.reverse()
    return first, message, tail


def _agent_of(first: SessionEvent | None) -> str:
    """The agent named by a session_start event ("" when the log does not start with one)."""
    if first is not None and first.type == "session_start":
        agent = first.payload.get("agent")
        if isinstance(agent, str):
            return agent
    return ""


def _status_after(status: SessionStatus, event: SessionEvent) -> SessionStatus:
    """The status once `event` has happened: status_change moves it, session_end ends it."""
    if event.type == "session_end":
        return "ended"
    if event.type == "status_change":
        target = event.payload.get("to")
        if isinstance(target, str) and target in _STATUSES:
            return target  # type: ignore[return-value]  # checked against SessionStatus above
    return status
