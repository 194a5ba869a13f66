"""Copy sessions and memory between the filesystem and PostgreSQL backends (`duragent migrate`).

The source of each service is the backend `services.<service>` uses now; the target is the other
one. After a complete migration the user points `services.*` at the target (`services_yaml`).

Idempotent and resumable by construction, without a ledger:

- a session is copied by appending, in batches, only the events after the target's last seq;
  each batch is one durable append, so an interrupted run leaves a clean prefix that the next
  run continues. A target log that is longer than the source's or differs from it at its last
  seq is a conflict: it is left alone (history is never rewritten) unless `overwrite` is given.
- a memory file (daily file, MEMORY.md, world topic) is compared by sha256 and written whole,
  atomically, when missing or different: the target is a copy of the source until the flip.

At the end every copied session is verified (number of events and a sha256 over the canonical
event records, on both sides; snapshots equal) and every memory file (sha256 of its Markdown).

Not migrated: artifacts (their backends are filesystem and S3; copy them with storage tools),
a session's working memory (`sessions/<id>/memory/working.md`, which only exists on files),
and the provenance rows of PostgreSQL memory (`memory_entries`), which Markdown files cannot hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from duragent.errors import DuragentError, InvalidName, UsageError
from duragent.ids import check_name
from duragent.stores.base import (
    SequenceConflict,
    SessionEvent,
    SessionNotFound,
    SessionReadOptions,
    SessionStore,
    utcnow,
)

if TYPE_CHECKING:
    from types import TracebackType

    import asyncpg

    from duragent.config import DuragentConfig
    from duragent.stores.postgres.memory import PostgresMemoryStore
    from duragent.stores.postgres.pool import PostgresTarget

Backend = Literal["filesystem", "postgres"]
Service = Literal["session", "memory"]
SessionAction = Literal["copy", "up_to_date", "conflict", "replace"]
MemoryAction = Literal["copy", "update", "unchanged", "skipped"]
Progress = Callable[[str], None]

#: Events read and appended per batch: one durable append (one transaction) each.
DEFAULT_BATCH_SIZE = 500
#: Where each service's files go under a `--path` data directory.
SERVICE_FOLDERS: dict[Service, str] = {"session": "sessions", "memory": "memory"}
ARTIFACTS_NOT_MIGRATED = (
    "artifacts: copy them with your storage tools "
    "(e.g. `aws s3 sync <data_dir>/artifacts s3://bucket/prefix`)"
)
WORKING_MEMORY_NOT_MIGRATED = "session working memory (sessions/<id>/memory/working.md exists only on files)"
PROVENANCE_NOT_MIGRATED = (
    "memory provenance (PostgreSQL's memory_entries rows): Markdown files have no place for it"
)
_DAILY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.md$")
_LONG_TERM_FILE = "MEMORY.md"
_WORLD = "world"
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


class MigrationIncomplete(DuragentError):
    """Conflicts or a verification mismatch: the target is not (yet) a copy of the source."""


class SourceLogGap(Exception):
    """The source's log jumps over a seq (a line of a filesystem log that cannot be read is
    skipped when read): the events from there on cannot be appended in order."""

    def __init__(self, after_seq: int, next_seq: int):
        super().__init__(
            f"the source log skips from seq {after_seq} to seq {next_seq} (a line it cannot read?): "
            f"copied up to seq {after_seq}; repair the source log and run `duragent migrate` again"
        )


# --- what moves where ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One side of a migration: a PostgreSQL URL or a folder."""

    backend: Backend
    url: str | None = None
    path: Path | None = None

    def describe(self) -> str:
        """The URL without its password, or the folder."""
        if self.backend == "postgres":
            from duragent.stores.postgres.pool import parse_postgres_url

            assert self.url is not None  # set by plan_moves for postgres endpoints
            return parse_postgres_url(self.url).describe()
        return str(self.path)

    def url_without_password(self) -> str | None:
        """The PostgreSQL URL as it can be shown (password removed, `?schema=` kept); None for folders."""
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}"))


@dataclass(frozen=True)
class ServiceMove:
    """One service's source and target, and the `services.<service>` keys to set afterwards."""

    service: Service
    source: Endpoint
    target: Endpoint
    target_settings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MigrationRequest:
    """What `duragent migrate` was asked: the target backend, which services, and how."""

    to: Backend
    sessions: bool = False
    memory: bool = False
    dry_run: bool = False
    url: str | None = None
    path: Path | None = None
    overwrite: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE


def plan_moves(
    config: DuragentConfig, request: MigrationRequest, env: Mapping[str, str] | None = None
) -> list[ServiceMove]:
    """The services to migrate with their endpoints; UsageError when there is nothing to do or no URL."""
    env = os.environ if env is None else env
    wanted: dict[Service, bool] = {"session": request.sessions, "memory": request.memory}
    asked = [service for service, chosen in wanted.items() if chosen]
    explicit = bool(asked)
    candidates: list[Service] = asked or ["session", "memory"]
    moves: list[ServiceMove] = []
    for service in candidates:
        current: Backend = getattr(config.services, service).backend
        if current == request.to:
            if explicit:
                raise UsageError(f"services.{service} already uses {request.to}: there is nothing to migrate")
            continue
        moves.append(_move(config, service, current, request, env))
    if not moves:
        raise UsageError(
            f"services.session and services.memory already use {request.to}: there is nothing to migrate"
        )
    return moves


def _move(
    config: DuragentConfig,
    service: Service,
    current: Backend,
    request: MigrationRequest,
    env: Mapping[str, str],
) -> ServiceMove:
    from duragent.stores.factory import postgres_url

    if current == "filesystem":
        source = Endpoint("filesystem", path=config.service_path(service))
    else:
        source = Endpoint("postgres", url=postgres_url(config, service))
    if request.to == "postgres":
        url = request.url or getattr(config.services, service).url or env.get("DATABASE_URL")
        if not url:
            raise UsageError(
                f"where is PostgreSQL? give --url, set services.{service}.url or the DATABASE_URL variable"
            )
        target = Endpoint("postgres", url=url)
        settings: tuple[tuple[str, str], ...] = (("backend", "postgres"), ("url", '"${DATABASE_URL}"'))
    else:
        default = config.data_path / SERVICE_FOLDERS[service]
        path = (
            config.resolve(request.path) / SERVICE_FOLDERS[service]
            if request.path
            else config.service_path(service)
        )
        target = Endpoint("filesystem", path=path)
        settings = (("backend", "filesystem"),) + ((("path", str(path)),) if path != default else ())
    return ServiceMove(service, source, target, settings)


def not_migrated(moves: list[ServiceMove]) -> list[str]:
    """What these moves leave behind, for the user to know (artifacts always)."""
    left = [ARTIFACTS_NOT_MIGRATED]
    for move in moves:
        if move.service == "session" and move.source.backend == "filesystem":
            left.append(WORKING_MEMORY_NOT_MIGRATED)
        if move.service == "memory" and move.source.backend == "postgres":
            left.append(PROVENANCE_NOT_MIGRATED)
    return left


def services_yaml(moves: list[ServiceMove]) -> str:
    """The `services:` block to put in duragent.yaml once the migration is complete."""
    lines = ["services:"]
    for move in moves:
        lines.append(f"  {move.service}:")
        lines.extend(f"    {key}: {value}" for key, value in move.target_settings)
    return "\n".join(lines) + "\n"


# --- what happened -------------------------------------------------------------------------------


@dataclass
class SessionResult:
    """One session: how far each side was, what was (or would be) copied, and the verification."""

    session_id: str
    source_last_seq: int
    target_last_seq: int
    action: SessionAction
    events_copied: int = 0
    snapshot_copied: bool = False
    problem: str | None = None
    events_verified: int | None = None
    sha256: str | None = None


@dataclass
class MemoryFileResult:
    """One memory file (path under the memory folder): what was (or would be) done, and its sha256."""

    path: str
    action: MemoryAction
    sha256: str
    problem: str | None = None
    verified: bool | None = None
    #: A skipped file the target has a place for (a day, MEMORY.md, a world topic): once
    #: `services.memory` moves, the agent would no longer have it, so it is a problem.
    loses_memory: bool = False


@dataclass
class MigrationReport:
    """Everything a run did (or, with dry_run, would do)."""

    moves: list[ServiceMove]
    dry_run: bool
    sessions: list[SessionResult] = field(default_factory=list)
    memory: list[MemoryFileResult] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Conflicts, verification failures and memory the target would lose (other skipped
        memory files, such as `notes.md`, are warnings, not problems)."""
        found = [
            f"session {result.session_id}: {result.problem}" for result in self.sessions if result.problem
        ]
        found += [
            f"memory {result.path}: {result.problem}"
            for result in self.memory
            if result.problem and (result.action != "skipped" or result.loses_memory)
        ]
        return found

    @property
    def complete(self) -> bool:
        """True when the target now holds (dry run: would hold) a verified copy of the source."""
        return not self.problems

    @property
    def events_copied(self) -> int:
        """Events appended to the target (dry run: that would be)."""
        return sum(result.events_copied for result in self.sessions)


# --- the migration -------------------------------------------------------------------------------


async def migrate(
    config: DuragentConfig,
    request: MigrationRequest,
    *,
    env: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
) -> MigrationReport:
    """Copy the requested services to `request.to`, verify them, and report (see the module docstring).

    Raises nothing for conflicts or mismatches: they are in `report.problems` (the CLI exits 1).
    """
    moves = plan_moves(config, request, env)
    await _prepare_target_folders(moves, create=not request.dry_run)
    progress = on_progress or _quiet
    report = MigrationReport(moves, request.dry_run)
    if not request.dry_run:
        await _remove_leftovers(moves, progress)
    async with _Connections(dry_run=request.dry_run) as connections:
        for move in moves:
            if move.service == "session":
                source_sessions = await connections.session_store(move.source, config, writable=False)
                target_sessions = await connections.session_store(move.target, config, writable=True)
                if source_sessions is not None:  # None: a PostgreSQL schema never created holds nothing
                    report.sessions = await _migrate_sessions(
                        source_sessions, target_sessions, request, progress
                    )
            else:
                source_tree = await connections.memory_tree(move.source, writable=False)
                target_tree = await connections.memory_tree(move.target, writable=True)
                if source_tree is not None:
                    report.memory = await _migrate_memory(source_tree, target_tree, request, progress)
    return report


def _quiet(message: str) -> None:
    del message


async def _prepare_target_folders(moves: list[ServiceMove], *, create: bool) -> None:
    """Check every filesystem target folder (then create them): a file in the way is a usage
    error naming it, before anything is read or written."""
    import asyncio

    folders = [
        (move.target.path, SERVICE_FOLDERS[move.service])
        for move in moves
        if move.target.backend == "filesystem" and move.target.path is not None
    ]
    for path, what in folders:
        await asyncio.to_thread(_check_target_folder, path, what)
    if not create:
        return  # (a dry run writes nothing, not even a folder)
    for path, what in folders:
        try:
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot write the {what} to {path}: {error.strerror or error}") from None


def _check_target_folder(path: Path, what: str) -> None:
    """UsageError when `path` or the nearest of its parents that exists is not a folder."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"cannot write the {what} to {path}: {folder} is a file, not a folder")
            return


async def _remove_leftovers(moves: list[ServiceMove], progress: Progress) -> None:
    """Temp files an interrupted run into these folders left (a rerun finishes the job cleanly)."""
    import asyncio

    from duragent.stores.filesystem.atomic import remove_stale_temp_files

    for move in moves:
        if move.target.backend == "filesystem" and move.target.path is not None:
            removed = await asyncio.to_thread(remove_stale_temp_files, move.target.path)
            if removed:
                progress(f"removed {len(removed)} temp file(s) an interrupted run left in {move.target.path}")


# --- sessions --------------------------------------------------------------------------------------


async def _migrate_sessions(
    source: SessionStore, target: SessionStore | None, request: MigrationRequest, progress: Progress
) -> list[SessionResult]:
    summaries = await source.list()
    results: list[SessionResult] = []
    for summary in sorted(summaries, key=lambda summary: (summary.created_at, summary.session_id)):
        result = await _copy_session(source, target, summary.session_id, request, progress)
        results.append(result)
    if target is not None and not request.dry_run:
        for result in results:
            if result.action != "conflict":
                await _verify_session(source, target, result)
    return results


async def _copy_session(
    source: SessionStore,
    target: SessionStore | None,
    session_id: str,
    request: MigrationRequest,
    progress: Progress,
) -> SessionResult:
    source_last = await source.last_seq(session_id)
    target_last = await target.last_seq(session_id) if target is not None else 0
    result = SessionResult(session_id, source_last, target_last, "copy")
    conflict = await _session_conflict(source, target, session_id, source_last, target_last)
    if conflict is not None:
        if not request.overwrite:
            result.action, result.problem = "conflict", f"{conflict}; left as is (--overwrite replaces it)"
            return result
        result.action = "replace"
        if target is not None and not request.dry_run:
            await target.delete(session_id)
        target_last = 0
    result.events_copied = source_last - target_last
    if result.action == "copy" and result.events_copied == 0:
        result.action = "up_to_date"
    if target is not None and not request.dry_run:
        try:
            await _append_tail(source, target, session_id, target_last, request.batch_size, progress)
        except SequenceConflict as error:
            result.action, result.problem = "conflict", f"the target refused an event: {error}"
        except SourceLogGap as gap:
            result.action, result.problem = "conflict", str(gap)
        if result.problem is not None:
            result.events_copied = await target.last_seq(session_id) - target_last  # what did arrive
            return result
    source_snapshot = await source.load_snapshot(session_id)
    target_snapshot = await target.load_snapshot(session_id) if target is not None else None
    if source_snapshot is not None and source_snapshot != target_snapshot:
        result.snapshot_copied = True
        if target is not None and not request.dry_run:
            await target.save_snapshot(source_snapshot)
        if result.action == "up_to_date":
            result.action = "copy"
    return result


async def _session_conflict(
    source: SessionStore, target: SessionStore | None, session_id: str, source_last: int, target_last: int
) -> str | None:
    """Why the target's log is not a prefix of the source's, or None when it is."""
    if target is None or target_last == 0:
        return None
    if target_last > source_last:
        return f"the target has {target_last} events, the source only {source_last}"
    # Event ids are unique (ULIDs): the same record at the target's last seq means the same prefix,
    # and the final verification checks the whole log anyway.
    around = SessionReadOptions(after_seq=target_last - 1, limit=1)
    source_event = await source.read(session_id, around)
    target_event = await target.read(session_id, around)
    if [canonical_record(e) for e in source_event] != [canonical_record(e) for e in target_event]:
        return f"the logs differ at seq {target_last}"
    return None


async def _append_tail(
    source: SessionStore,
    target: SessionStore,
    session_id: str,
    after_seq: int,
    batch_size: int,
    progress: Progress,
) -> None:
    """Append the source's events after `after_seq`, one durable batch at a time; SourceLogGap
    (after appending the events before it) where the source skips a seq."""
    while True:
        batch = await source.read(session_id, SessionReadOptions(after_seq=after_seq, limit=batch_size))
        if not batch:
            return
        contiguous = _contiguous(batch, after_seq)
        if contiguous:
            await target.append(session_id, contiguous)
            after_seq = contiguous[-1].seq
            progress(f"session {session_id}: copied up to seq {after_seq}")
        if len(contiguous) < len(batch):
            raise SourceLogGap(after_seq, batch[len(contiguous)].seq)


def _contiguous(batch: list[SessionEvent], after_seq: int) -> list[SessionEvent]:
    """The events of `batch` that follow `after_seq` without a gap."""
    for index, event in enumerate(batch):
        if event.seq != after_seq + index + 1:
            return batch[:index]
    return batch


async def _verify_session(source: SessionStore, target: SessionStore, result: SessionResult) -> None:
    """Compare event count and checksum of both logs, and the snapshots; record a problem if they differ."""
    source_count, source_sha = await session_checksum(source, result.session_id)
    target_count, target_sha = await session_checksum(target, result.session_id)
    result.events_verified, result.sha256 = source_count, source_sha
    if (source_count, source_sha) != (target_count, target_sha):
        result.problem = (
            f"verification failed: source {source_count} events sha256 {source_sha[:12]}, "
            f"target {target_count} events sha256 {target_sha[:12]}"
        )
    elif await source.load_snapshot(result.session_id) not in (
        None,
        await target.load_snapshot(result.session_id),
    ):
        result.problem = "verification failed: the snapshots differ"


def canonical_record(event: SessionEvent) -> bytes:
    """An event as one canonical JSON line: sorted keys, UTC `Z` timestamp; equal on every backend."""
    moment = event.ts if event.ts.tzinfo is not None else event.ts.replace(tzinfo=UTC)
    record: dict[str, Any] = {**event.to_record(), "ts": moment.astimezone(UTC).isoformat()}
    record["ts"] = record["ts"].replace("+00:00", "Z")
    return (_CANONICAL.encode(record) + "\n").encode("utf-8")


async def session_checksum(
    store: SessionStore, session_id: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[int, str]:
    """(number of events, sha256 hex over their canonical records in seq order) of one session."""
    digest = hashlib.sha256()
    count, after_seq = 0, 0
    while True:
        try:
            batch = await store.read(session_id, SessionReadOptions(after_seq=after_seq, limit=batch_size))
        except SessionNotFound:
            break
        if not batch:
            break
        for event in batch:
            digest.update(canonical_record(event))
        count += len(batch)
        after_seq = batch[-1].seq
    return count, digest.hexdigest()


# --- memory --------------------------------------------------------------------------------------


class _MemoryTree(Protocol):
    """The memory Markdown files of one backend, by path under the memory folder (`agent/day.md`)."""

    async def read_all(self) -> tuple[dict[str, str], dict[str, str]]:
        """(path -> text of every memory file, path -> why it cannot be read)."""
        ...

    def refuses(self, path: str, text: str) -> str | None:
        """Why this backend cannot hold the file, or None."""
        ...

    async def write(self, path: str, text: str) -> None:
        """Create or replace one file with exactly `text`."""
        ...


def markdown_sha256(text: str) -> str:
    """sha256 hex of a memory file's bytes (its Markdown, UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def _migrate_memory(
    source: _MemoryTree, target: _MemoryTree | None, request: MigrationRequest, progress: Progress
) -> list[MemoryFileResult]:
    source_files, unreadable = await source.read_all()
    target_files = (await target.read_all())[0] if target is not None else {}
    results = [_skipped(path, "", reason) for path, reason in sorted(unreadable.items())]
    for path, text in sorted(source_files.items()):
        sha = markdown_sha256(text)
        refusal = target.refuses(path, text) if target is not None else _postgres_refusal(path, text)
        if refusal is not None:
            results.append(_skipped(path, sha, refusal))
            continue
        existing = target_files.get(path)
        action: MemoryAction = "copy" if existing is None else "unchanged" if existing == text else "update"
        if action != "unchanged" and target is not None and not request.dry_run:
            await target.write(path, text)
            progress(f"memory {path}: {action}")
        results.append(MemoryFileResult(path, action, sha))
    if target is not None and not request.dry_run:
        written, _unreadable = await target.read_all()
        for result in results:
            if result.action == "skipped":
                continue
            copied = written.get(result.path)
            result.verified = copied is not None and markdown_sha256(copied) == result.sha256
            if not result.verified:
                result.problem = "verification failed: the target's sha256 differs"
    return results


def _skipped(path: str, sha256: str, reason: str) -> MemoryFileResult:
    """A memory file left behind: a problem when it is one PostgreSQL memory would serve (only
    files leave the source for PostgreSQL with content it cannot hold)."""
    if _postgres_place_refusal(path) is None:
        return MemoryFileResult(
            path,
            "skipped",
            sha256,
            problem=f"not copied: {reason}; the agent would lose this memory once services.memory"
            " moves: make it UTF-8 without NUL characters and run `duragent migrate` again",
            loses_memory=True,
        )
    return MemoryFileResult(path, "skipped", sha256, problem=f"not copied: {reason}")


class _FilesystemMemoryTree:
    """Markdown files under the memory folder; hidden files and folders (locks, temp files) are not memory."""

    def __init__(self, root: Path):
        self.root = root

    async def read_all(self) -> tuple[dict[str, str], dict[str, str]]:
        """Every `.md` file, decoded as UTF-8 without newline translation (byte-identical copies)."""
        import asyncio

        return await asyncio.to_thread(self._read_all_sync)

    def _read_all_sync(self) -> tuple[dict[str, str], dict[str, str]]:
        files: dict[str, str] = {}
        unreadable: dict[str, str] = {}
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
            for name in names:
                if name.startswith(".") or not name.endswith(".md"):
                    continue
                path = Path(directory) / name
                relative = path.relative_to(self.root).as_posix()
                try:
                    files[relative] = path.read_bytes().decode("utf-8")
                except UnicodeDecodeError:
                    unreadable[relative] = "not UTF-8 text"
        return files, unreadable

    def refuses(self, path: str, text: str) -> str | None:
        """Files can hold any memory file."""
        del path, text
        return None

    async def write(self, path: str, text: str) -> None:
        """Replace the file atomically (temp file, fsync, rename)."""
        import asyncio

        from duragent.stores.filesystem.atomic import write_atomic

        destination = self.root / PurePosixPath(path)

        def write_file() -> None:
            destination.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(destination, text.encode("utf-8"))

        await asyncio.to_thread(write_file)


def _postgres_refusal(path: str, text: str) -> str | None:
    """Why PostgreSQL memory cannot hold this file: only days, MEMORY.md and world topics fit,
    without NUL characters."""
    shape = _postgres_place_refusal(path)
    if shape is None and "\x00" in text:
        return "PostgreSQL text cannot hold NUL characters"
    return shape


def _postgres_place_refusal(path: str) -> str | None:
    """Why PostgreSQL memory has no place for a file at `path` (None: a day, MEMORY.md, a world topic)."""
    parts = PurePosixPath(path).parts
    shape = "PostgreSQL memory holds <agent>/YYYY-MM-DD.md, <agent>/MEMORY.md and world/<topic>.md only"
    if len(parts) != 2:
        return shape
    owner, name = parts
    try:
        if owner == _WORLD:
            check_name(name.removesuffix(".md"), "world topic")
            return None
        check_name(owner, "agent name")
    except InvalidName as error:
        return str(error)
    if owner.casefold() == _WORLD:
        return shape
    if name == _LONG_TERM_FILE:
        return None
    if not _DAILY_FILE.fullmatch(name):
        return shape
    try:
        date.fromisoformat(name.removesuffix(".md"))
    except ValueError:
        return f"{name} is not a date"
    return None


_UPSERT_DAY = """
INSERT INTO memory_days (agent, day, markdown, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (agent, day) DO UPDATE SET markdown = EXCLUDED.markdown, updated_at = EXCLUDED.updated_at
"""


class _PostgresMemoryTree:
    """The memory tables seen as the Markdown tree `export` produces."""

    def __init__(self, pool: asyncpg.Pool, store: PostgresMemoryStore):
        self._pool = pool
        self._store = store

    async def read_all(self) -> tuple[dict[str, str], dict[str, str]]:
        """Every day, MEMORY.md and world topic, under the paths the filesystem store uses."""
        files: dict[str, str] = {}
        for row in await self._pool.fetch("SELECT agent, day, markdown FROM memory_days"):
            files[f"{row['agent']}/{row['day'].isoformat()}.md"] = row["markdown"]
        for row in await self._pool.fetch("SELECT agent, text FROM memory_long_term"):
            files[f"{row['agent']}/{_LONG_TERM_FILE}"] = row["text"]
        for row in await self._pool.fetch("SELECT topic, text FROM memory_world"):
            files[f"{_WORLD}/{row['topic']}.md"] = row["text"]
        return files, {}

    def refuses(self, path: str, text: str) -> str | None:
        """Only daily files, MEMORY.md and world topics fit the tables."""
        return _postgres_refusal(path, text)

    async def write(self, path: str, text: str) -> None:
        """Store the day's Markdown verbatim; MEMORY.md and world topics keep their replaced versions."""
        owner, name = PurePosixPath(path).parts
        if owner == _WORLD:
            await self._store.write_world(name.removesuffix(".md"), text)
        elif name == _LONG_TERM_FILE:
            await self._store.write_long_term(owner, text)
        else:
            day = date.fromisoformat(name.removesuffix(".md"))
            await self._pool.execute(_UPSERT_DAY, owner, day, text, utcnow())


# --- opening both sides -----------------------------------------------------------------------------


class _Connections:
    """The stores and pools one migration opens, closed together at the end.

    A PostgreSQL source is read as it is (its schema is not created); a target's schema is
    created and migrated, except in a dry run, where a missing schema reads as an empty target
    (`None`) and nothing is written anywhere.
    """

    def __init__(self, *, dry_run: bool):
        self._dry_run = dry_run
        self._stack = AsyncExitStack()
        self._pools: dict[PostgresTarget, asyncpg.Pool | None] = {}

    async def __aenter__(self) -> _Connections:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, traceback)

    async def session_store(
        self, endpoint: Endpoint, config: DuragentConfig, *, writable: bool
    ) -> SessionStore | None:
        """The endpoint's session store (None: a PostgreSQL schema that does not exist yet)."""
        store: SessionStore
        if endpoint.backend == "filesystem":
            from duragent.stores.filesystem.sessions import FilesystemSessionStore

            assert endpoint.path is not None
            store = FilesystemSessionStore(endpoint.path, fsync=config.session.fsync)
        else:
            from duragent.stores.postgres.sessions import PostgresSessionStore

            pool, schema = await self._postgres(endpoint, writable=writable)
            if pool is None:
                return None
            store = PostgresSessionStore(pool=pool, schema=schema, migrate=False)
        self._stack.push_async_callback(store.close)
        return store

    async def memory_tree(self, endpoint: Endpoint, *, writable: bool) -> _MemoryTree | None:
        """The endpoint's memory files (None: a PostgreSQL schema that does not exist yet)."""
        if endpoint.backend == "filesystem":
            assert endpoint.path is not None
            return _FilesystemMemoryTree(endpoint.path)
        from duragent.stores.postgres.memory import PostgresMemoryStore

        pool, schema = await self._postgres(endpoint, writable=writable)
        if pool is None:
            return None
        store = PostgresMemoryStore(pool=pool, schema=schema, migrate=False)
        self._stack.push_async_callback(store.close)
        return _PostgresMemoryTree(pool, store)

    async def _postgres(self, endpoint: Endpoint, *, writable: bool) -> tuple[asyncpg.Pool | None, str]:
        from duragent.stores.postgres.migrations import ensure_schema
        from duragent.stores.postgres.pool import create_pool, parse_postgres_url

        assert endpoint.url is not None
        target = parse_postgres_url(endpoint.url)
        if target not in self._pools:
            pool = await create_pool(target, min_size=1, max_size=4)
            self._stack.push_async_callback(pool.close)
            if writable and not self._dry_run:
                await ensure_schema(pool, target.schema)
            elif not await pool.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
                # search_path is the schema alone: no table there means nothing stored yet.
                self._pools[target] = None
                return None, target.schema
            self._pools[target] = pool
        return self._pools[target], target.schema
