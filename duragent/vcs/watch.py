"""Edits a person makes to memory and agent files, committed on their own and under their name.

Three pieces:

- `AgentWriteLedger` remembers what Duragent itself wrote: for every memory or agent file a
  store writes, the sha-256 of the bytes written, appended to `.git/duragent/agent-writes`.
  It lives in the git folder so it is never committed, survives restarts, and is shared by
  every Duragent process on the data directory (a `duragent chat` beside a `duragent serve`).
- `HumanEditCommitter` decides who changed a file and commits a person's changes: a changed
  file whose current bytes are exactly bytes Duragent wrote is the agent's (its own committer
  commits it); one the watcher saw changed while a background process the agent started ran
  is the agent's too (`process_writes`: committed apart, authored by the agent); anything else
  is a person's edit, committed with their git identity and a `Duragent-Kind: edit` trailer,
  apart from the agent's commits.
- `HumanEditWatcher` runs while `duragent serve` does: a watchdog observer on `memory/` and
  `agents/` collects the paths editors touch (atomic renames, vim's backup dance, VS Code's
  temp files), waits until saving has been quiet for `debounce` seconds, and hands the real
  files to the committer, so one save burst is one commit. Reads raise no event at all, and
  the runtime's own writes are dropped in watchdog's thread (one stat against what it wrote),
  so a turn that reads or writes memory costs the watcher nothing.
  When the kernel drops events (inotify's queue overflowed: a big checkout, a tool rewriting
  thousands of files), watchdog says so (`EventsLostEvent`) and the watcher takes every file
  git sees changed under the folders as seen changing, as `stop()` does: an edit made during
  the overflow is still committed, as the person's.

Why content hashes rather than "paths the agent wrote in the last few seconds": a time window
either misses a slow commit or swallows a person's edit made right after an agent write. The
hash is exact: only bytes the agent produced are attributed to it. When the agent writes a file
a person changed since its last write, the store reports the person's version first (an `edit`
change the committer commits under their name) and then its own; the agent's commit holds
exactly the bytes it wrote, and the person's later lines are committed (holding the memory
store's lock) only after that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from watchdog.events import (
    EventsLostEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from duragent.errors import DuragentError
from duragent.stores.base import Change
from duragent.stores.filesystem.locks import memory_file_lock
from duragent.vcs.committer import TRAILER_AGENT, TRAILER_KIND, commit_message
from duragent.vcs.process_writes import (
    PROCESSES_FOLDER,
    ProcessSpan,
    change_time,
    process_that_changed,
    read_process_spans,
)
from duragent.vcs.repo import ContentScreen, GitRepo, Identity, RepoBusy, RepoLocked, Written

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from duragent.workspace import Workspace

log = logging.getLogger(__name__)

EDIT_KIND = "edit"
DEFAULT_DEBOUNCE = 1.0
DEFAULT_MAX_DELAY = 10.0
#: How long the watcher waits before trying again edits it could not commit (a rebase in progress,
#: a lock a killed git left), doubled after each failure up to the maximum.
RETRY_DELAY = 2.0
MAX_RETRY_DELAY = 60.0
#: Seconds between scans when the operating system will not report changes (inotify limits).
POLL_INTERVAL = 2.0
#: Agent writes older than this no longer identify a file as the agent's.
LEDGER_MAX_AGE = 7 * 24 * 3600.0
_LEDGER_ROTATE_BYTES = 512 * 1024
_LEDGER_READ_BYTES = 1024 * 1024
_MISSING = "-"
#: File names editors create beside the file being saved, never a person's content.
_JUNK_SUFFIXES = ("~", ".swp", ".swo", ".swx", ".swpx", ".tmp", ".bak", ".orig", ".rej", ".part")
_JUNK_NAMES = frozenset({"4913", "Thumbs.db"})
#: `sed -i` writes the new text to `sedXXXXXX` beside the file, then renames it over the file.
_SED_TEMP = re.compile(r"sed[A-Za-z0-9]{6}")
#: The events that can mean new content. Opening and reading a file (the runtime reads MEMORY.md
#: every turn) raises none of them; with inotify the kernel does not even report those.
CHANGE_EVENTS = (FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent)
#: What the watcher is told: the changes, and that some were lost (an inotify queue overflow).
WATCHED_EVENTS = (*CHANGE_EVENTS, EventsLostEvent)


def is_editor_junk(relative: str) -> bool:
    """True for swap, backup and temp files editors make, and anything in a hidden folder."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part.startswith(".") for part in parts):
        return True
    name = parts[-1]
    return (
        name in _JUNK_NAMES
        or name.endswith(_JUNK_SUFFIXES)
        or (name.startswith("#") and name.endswith("#"))
        or ".tmp." in name
        or _SED_TEMP.fullmatch(name) is not None
    )


def content_digest(path: Path) -> str:
    """sha-256 of the file's bytes, or `-` when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return _MISSING


#: The digest of a ledger line that records a person's commit of a file (no bytes match it).
_FORGOTTEN = "-"


class AgentWriteLedger:
    """What Duragent wrote, by content hash: the file `<git dir>/duragent/agent-writes`."""

    def __init__(self, repo: GitRepo):
        self.repo = repo
        self.path = repo.git_dir / "duragent" / "agent-writes"
        self._lock = threading.Lock()
        # repo-relative path -> the file's stat right after this process wrote it: lets the
        # watcher drop the events of its own writes with one stat, before hashing or git
        self._written: dict[str, tuple[int, int, int]] = {}

    def record(self, paths: Sequence[Path], content: bytes | None = None) -> list[str]:
        """Note the bytes of `paths` as written by Duragent; the repo-relative paths noted.

        `content`, for one path, is exactly what the store wrote: a person may have appended to
        the file since, and their bytes must not be noted as Duragent's.
        """
        lines: list[str] = []
        noted: list[str] = []
        now = time.time()
        exact = content if len(paths) == 1 else None
        for path in paths:
            try:
                relative = self.repo.relative(path)
            except ValueError:
                continue
            absolute = self.repo.root / relative
            if absolute.is_dir():
                continue
            current = content_digest(absolute)
            digest = current if exact is None else hashlib.sha256(exact).hexdigest()
            lines.append(f"{now:.3f} {digest} {relative}\n")
            noted.append(relative)
            identity = _stat_identity(absolute)
            if identity is not None and current == digest:
                self._written[relative] = identity
        if lines:
            self._append("".join(lines))
        return noted

    def _append(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_large()
            # one O_APPEND write per batch: lines of concurrent processes never interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, text.encode("utf-8"))
            finally:
                os.close(fd)

    def wrote_last(self, relative: str) -> bool:
        """True when the file is still exactly as this process last wrote it (same inode, size,
        mtime): its events are the runtime's own write, not a person's edit. One stat, no hashing."""
        written = self._written.get(relative)
        return written is not None and written == _stat_identity(self.repo.root / relative)

    def wrote(self, relative: str, digest: str) -> bool:
        """True when Duragent's latest write of `relative`, recent and not since followed by a
        person's commit of it, was exactly these bytes (`digest`). Only the latest: a person's
        edit that brings the file back to an earlier version of the agent's is the person's."""
        latest: tuple[str, str] | None = None
        for line in self._lines():
            stamp, _, rest = line.partition(" ")
            found_digest, _, found_path = rest.partition(" ")
            if found_path == relative:
                latest = (stamp, found_digest)
        if latest is None or latest[1] != digest:
            return False
        try:
            return float(latest[0]) >= time.time() - LEDGER_MAX_AGE
        except ValueError:
            return False

    def forget(self, relatives: Sequence[str]) -> None:
        """Note that a person's commit of these files came after anything Duragent wrote to them."""
        self._append("".join(f"{time.time():.3f} {_FORGOTTEN} {relative}\n" for relative in relatives))

    def _lines(self) -> list[str]:
        lines: list[str] = []
        for path in (self.path.with_name(self.path.name + ".old"), self.path):
            try:
                with open(path, "rb") as handle:
                    size = handle.seek(0, os.SEEK_END)
                    handle.seek(max(0, size - _LEDGER_READ_BYTES))
                    text = handle.read().decode("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            lines.extend(line for line in text.split("\n") if line)
        return lines

    def _rotate_if_large(self) -> None:
        try:
            if self.path.stat().st_size > _LEDGER_ROTATE_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".old"))
        except FileNotFoundError:
            return


def _stat_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class EditCommit:
    """What `HumanEditCommitter.commit` did: the person's commit (and the files it holds) and the
    agent files it left alone."""

    sha: str | None
    files: tuple[str, ...]
    agent_files: tuple[str, ...] = ()
    recovered_sha: str | None = None
    #: Files left alone because the agent's committer has a change of theirs to commit first.
    waiting: tuple[str, ...] = ()
    #: The agent's commit of files its background processes changed (see `process_writes`).
    process_sha: str | None = None
    process_files: tuple[str, ...] = ()


def edit_message(files: Sequence[str], agents: Sequence[str] = (), summary: str | None = None) -> str:
    """`edit: memory/assistant/2026-11-26.md` or `edit: 3 files in memory/assistant`, with trailers."""
    if len(files) == 1:
        what = files[0]
    else:
        common = os.path.commonpath([str(PurePosixPath(f).parent) for f in files])
        what = f"{len(files)} files in {common}" if common not in ("", ".") else f"{len(files)} files"
    subject = f"{EDIT_KIND}: {what}" + (f" ({summary})" if summary else "")
    parts = [subject]
    if len(files) > 1:
        parts.append("\n".join(f"- {file}" for file in files))
    trailers = [f"{TRAILER_KIND}: {EDIT_KIND}", *(f"{TRAILER_AGENT}: {agent}" for agent in agents)]
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


class HumanEditCommitter:
    """Commits a person's edits under `roots` (absolute folders of the repo) as that person.

    The first folder under a root names an agent (`agents/<agent>/`, `memory/<agent>/`), except
    under `shared_roots` (workspace-wide skills and tools), whose edits belong to no one agent.
    """

    def __init__(
        self,
        repo: GitRepo,
        roots: Sequence[Path],
        *,
        ledger: AgentWriteLedger,
        agent_author: str,
        screen: ContentScreen | None = None,
        shared_roots: Sequence[Path] = (),
        memory_root: Path | None = None,
        agent_pending: Callable[[], Collection[str]] = frozenset,
    ):
        self.repo = repo
        self.ledger = ledger
        self.agent_author = agent_author
        self.screen = screen
        #: The memory store's folder: its files are committed holding the store's lock on each.
        self.memory_root = memory_root.resolve() if memory_root is not None else None
        #: Repo-relative files the agent's committer has yet to commit.
        self.agent_pending = agent_pending
        self.roots: list[str] = []
        self.shared_roots: list[str] = []
        for root in [*roots, *shared_roots]:
            try:
                self.roots.append(repo.relative(root))
            except ValueError:
                log.info("%s is outside the data repository: edits there are not committed", root)
                continue
            if root in shared_roots:
                self.shared_roots.append(self.roots[-1])

    def watched(self, relative: str) -> bool:
        """True for a real file (not editor junk) under one of the roots."""
        return not is_editor_junk(relative) and any(
            relative == root or relative.startswith(root + "/") for root in self.roots
        )

    def pending(self) -> list[str]:
        """Files under the roots that differ from HEAD (what an offline session left behind)."""
        if not self.roots:
            return []
        changed = self.repo.changed_paths(under=[self.repo.root / root for root in self.roots])
        return [path for path in changed if self.watched(path)]

    def commit(
        self,
        files: Sequence[str],
        *,
        summary: str | None = None,
        identity: Identity | None = None,
        recover_agent_files: bool = False,
        processes: Sequence[ProcessSpan] = (),
        seen_at: Mapping[str, float] | None = None,
    ) -> EditCommit:
        """Commit the person's changes among `files` (repo-relative) in one commit.

        Files whose bytes Duragent wrote are left to the agent's committer, or, with
        `recover_agent_files` (nobody else will commit them: a crash left them behind),
        committed in a separate commit authored by the agent. Files changed while one of the
        agents' background `processes` ran (`process_writes`; `seen_at`: when the watcher saw
        each file change, for those that are gone) are committed apart too, as the agent's.
        """
        candidates = sorted({file for file in files if self.watched(file)})
        with contextlib.ExitStack() as locks:
            # no store writes these files while we look and commit; one that wrote before
            # has told its committer, and that commit goes first (else the agent's change in
            # the file would be committed as the person's)
            for file in candidates:
                path = self.repo.root.resolve() / file
                if self.memory_root is not None and path.is_relative_to(self.memory_root):
                    locks.enter_context(memory_file_lock(self.memory_root, path))
            pending = self.agent_pending()
            waiting = tuple(file for file in candidates if file in pending)
            ready = [file for file in candidates if file not in pending]
            by_processes = self._changed_by_processes(ready, processes, seen_at or {})
            process_sha = self._commit_process_changes(by_processes)
            ready = [file for file in ready if file not in by_processes]
            result = self._commit(ready, summary, identity, recover_agent_files)
        return dataclasses.replace(
            result,
            waiting=waiting,
            process_sha=process_sha,
            process_files=tuple(by_processes) if process_sha else (),
        )

    def _changed_by_processes(
        self, files: Sequence[str], processes: Sequence[ProcessSpan], seen_at: Mapping[str, float]
    ) -> dict[str, ProcessSpan]:
        """The files (not as Duragent's stores wrote them) a background process changed, by the
        rule of `process_writes`, with the process each is credited to."""
        found: dict[str, ProcessSpan] = {}
        if not processes:
            return found
        for file in files:
            path = self.repo.root / file
            digest = content_digest(path)
            if digest != _MISSING and self.ledger.wrote(file, digest):
                continue  # the store's own write: its committer's
            span = process_that_changed(processes, self._owner(file), change_time(path, seen_at.get(file)))
            if span is not None:
                found[file] = span
        return found

    def _commit_process_changes(self, changed: Mapping[str, ProcessSpan]) -> str | None:
        """Commit the files background processes changed as the agents' (one commit)."""
        if not changed:
            return None
        changes = []
        for file, span in changed.items():
            path = self.repo.root / file
            memory = self.memory_root is not None and path.resolve().is_relative_to(self.memory_root)
            summary = f"changed by background process {span.handle}"
            changes.append(Change((path,), "memory" if memory else "agent", span.agent, summary))
        sha = self.repo.commit_paths(
            [change.paths[0] for change in changes],
            commit_message(changes),
            self.agent_author,
            screen=self.screen,
        )
        if sha:
            log.info(
                "committed %s, changed by agents' background processes, as %s", ", ".join(changed), sha[:10]
            )
        return sha

    def _owner(self, file: str) -> str | None:
        """The agent whose folder holds `file`, or None for a folder no one agent owns."""
        for root in self.roots:
            if not file.startswith(root + "/"):
                continue
            if root in self.shared_roots:
                return None
            owner = PurePosixPath(file).relative_to(root).parts[0]
            return None if owner == "world" else owner
        return None

    def commit_agent_write(self, file: str, data: bytes) -> str | None:
        """Commit `data`, what the agent's latest write left in `file` (repo-relative), as the
        agent's, unless HEAD holds it already; the commit's sha or None.

        For a command about to replace the file with a person's edit (holding the file's lock)
        while the agent's committer, maybe a server's in another process, has yet to commit that
        write: the person's commit would otherwise carry the agent's lines in under their name.
        Bytes the agent did not write last (a person's) are not committed here: None.
        """
        if not self.watched(file) or not self.ledger.wrote(file, hashlib.sha256(data).hexdigest()):
            return None
        path = self.repo.root / file
        root = next((root for root in self.roots if file.startswith(root + "/")), None)
        if root is None:
            return None
        memory = self.memory_root is not None and path.resolve().is_relative_to(self.memory_root)
        owner = PurePosixPath(file).relative_to(root).parts[0]  # the agent, or `world`
        summary = f"{PurePosixPath(file).name} as written before a person's edit"
        change = Change((path,), "memory" if memory else "agent", owner, summary)
        sha = self.repo.commit_paths(
            [path],
            commit_message([change]),
            self.agent_author,
            screen=self.screen,
            contents={path: Written(data)},
        )
        if sha:
            log.info(
                "committed the agent's uncommitted write of %s as %s before a person's edit", file, sha[:10]
            )
        return sha

    def _commit(
        self,
        candidates: Sequence[str],
        summary: str | None,
        identity: Identity | None,
        recover_agent_files: bool,
    ) -> EditCommit:
        human: list[str] = []
        agent: list[str] = []
        for file in candidates:
            digest = content_digest(self.repo.root / file)
            (agent if digest != _MISSING and self.ledger.wrote(file, digest) else human).append(file)
        sha = None
        committed: list[str] = []
        if human:
            person = identity or self.repo.person_identity()

            def message(files: Sequence[str]) -> str:
                # the files git found changed, not every file an editor touched or merely opened
                committed.extend(files)
                return edit_message(files, self._agents_of(files), summary)

            sha = self.repo.commit_paths(
                [self.repo.root / file for file in human], message, str(person), screen=self.screen
            )
            if sha:
                log.info("committed %s's edit of %s as %s", person.name, ", ".join(committed), sha[:10])
                # what the agent wrote to them before no longer tells whose their bytes are
                self.ledger.forget(committed)
        recovered = None
        if agent and recover_agent_files:
            recovered = self.repo.commit_paths(
                [self.repo.root / file for file in agent],
                _recovered_message(agent, self._agents_of(agent)),
                self.agent_author,
                screen=self.screen,
            )
        return EditCommit(sha, tuple(committed) if sha else (), tuple(agent), recovered)

    def commit_pending(
        self, exclude: Collection[str] = (), *, recover_agent_files: bool = True
    ) -> EditCommit:
        """Commit everything under the roots that differs from HEAD (edits made while nothing ran).

        `exclude`: files this process's stores wrote and its committer is about to commit.
        `recover_agent_files`: commit files Duragent wrote too (a crash left them; not when a
        running server's committer is about to).
        """
        pending = [f for f in self.pending() if f not in exclude]
        return self.commit(pending, recover_agent_files=recover_agent_files)

    def _agents_of(self, files: Sequence[str]) -> list[str]:
        agents: dict[str, None] = {}
        for file in files:
            for root in self.roots:
                if root in self.shared_roots:
                    continue
                rest = PurePosixPath(file).relative_to(root).parts if file.startswith(root + "/") else ()
                if len(rest) >= 2 and rest[0] != "world":
                    agents[rest[0]] = None
        return list(agents)


def _recovered_message(files: Sequence[str], agents: Sequence[str]) -> str:
    subject = f"memory: {len(files)} uncommitted file{'s' if len(files) != 1 else ''} recovered"
    trailers = [f"{TRAILER_KIND}: memory", *(f"{TRAILER_AGENT}: {agent}" for agent in agents)]
    return "\n\n".join([subject, "\n".join(f"- {file}" for file in files), "\n".join(trailers)]) + "\n"


class HumanEditWatcher:
    """Watches `memory/` and `agents/` while a server runs and commits a person's edits as theirs."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        debounce: float = DEFAULT_DEBOUNCE,
        max_delay: float = DEFAULT_MAX_DELAY,
    ):
        self.workspace = workspace
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        #: The person's commits made so far, newest last.
        self.commits: list[str] = []
        #: How often each file was handed to the committer to look at (reads and the runtime's
        #: own writes never are).
        self.examined: Counter[str] = Counter()
        #: The agents' commits of files their background processes changed.
        self.process_commits: list[str] = []
        #: Where the server records its background processes (when each ran: `process_writes`).
        self.processes_folder = workspace.config.data_path / PROCESSES_FOLDER
        self._pending: set[str] = set()
        # when each pending file was last seen changing (wall clock): a deleted file has no ctime
        self._seen_at: dict[str, float] = {}
        self._first_at: float | None = None
        self._last_at = 0.0
        self._retry_delay = RETRY_DELAY
        self._wakeup = asyncio.Event()
        self._observer: BaseObserver | None = None
        self._task: asyncio.Task[None] | None = None
        self._committer: HumanEditCommitter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # the look at git after events were lost, and whether another is due
        self._sweep: asyncio.Task[None] | None = None
        self._sweep_again = False

    async def start(self) -> None:
        """Commit edits made while nothing ran, then start watching (no-op without git)."""
        committer = self.workspace.human_edits
        if committer is None or self._observer is not None:
            return
        _refuse_files_in_place_of(committer)
        self._committer = committer
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self.workspace.commit_offline_edits)
        except (RepoBusy, RepoLocked) as error:
            # a rebase in progress must not keep the server from starting: commit them once it ends
            log.warning("could not commit edits made while Duragent was not running: %s", error)
            self._retry_later(await asyncio.to_thread(committer.pending), {})
        self._observer = await asyncio.to_thread(self._start_observer, committer)
        self.workspace.human_edits_watched = True
        self._task = asyncio.create_task(self._run(), name="duragent-human-edits")

    async def stop(self) -> None:
        """Stop watching and commit what is still waiting for its debounce."""
        observer, self._observer = self._observer, None
        if observer is not None:
            self.workspace.human_edits_watched = False
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)
        for task in (self._task, self._sweep):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sweep = None
        try:
            if self._committer is not None:
                # the observer can stop before it hands over its last events (a save just before
                # the stop): what git sees changed in the watched folders is the rest of them
                self._pending.update(await asyncio.to_thread(self._committer.pending))
            await self.flush()
            if self._pending:
                # files waiting for the agent's commit: that committer exists (it has them pending)
                committer = self.workspace.committer
                if committer is not None:
                    with contextlib.suppress(DuragentError):  # the files stay on disk for the next start
                        await asyncio.to_thread(committer.flush, 10.0)
                await self.flush()
        except (RepoBusy, RepoLocked) as error:
            # the edits stay on disk: the next command or start commits them
            log.warning("could not commit a person's edit before stopping: %s", error)

    async def flush(self) -> None:
        """Commit the edits seen so far now, without waiting for the debounce.

        A file the agent's committer still has to commit waits for that commit (kept pending):
        committed now, the agent's uncommitted change in it would be committed as the person's.
        """
        # by now the stores have noted every write of theirs that raised one of these events
        files = sorted(file for file in self._pending if self._is_candidate(file))
        seen_at, self._seen_at = self._seen_at, {}
        self._pending = set()
        self._first_at = None
        self.examined.update(files)
        if files and self._committer is not None:
            try:
                result = await asyncio.to_thread(self._commit, self._committer, files, seen_at)
            except (RepoBusy, RepoLocked):
                # the edits are still on disk: look again once the rebase (or the lock) may be gone
                self._retry_later(files, seen_at)
                raise
            self._retry_delay = RETRY_DELAY
            if result.sha:
                self.commits.append(result.sha)
            if result.process_sha:
                self.process_commits.append(result.process_sha)
            if result.waiting:  # look again a debounce later
                self._pending.update(result.waiting)
                self._seen_at.update({file: seen_at[file] for file in result.waiting if file in seen_at})
                self._first_at = self._last_at = time.monotonic()

    def _retry_later(self, files: Collection[str], seen_at: Mapping[str, float]) -> None:
        """Keep `files` pending and flush them again after the retry delay (which then grows)."""
        if not files:
            return
        self._pending.update(files)
        self._seen_at.update({file: seen_at[file] for file in files if file in seen_at})
        self._first_at = self._last_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_DELAY)
        self._wakeup.set()

    def _commit(
        self, committer: HumanEditCommitter, files: list[str], seen_at: dict[str, float]
    ) -> EditCommit:
        """Commit `files` (in a thread): the changes agents' background processes made as theirs,
        the rest as the person's edit."""
        processes = read_process_spans(self.processes_folder) if self.processes_folder.is_dir() else []
        return committer.commit(files, processes=processes, seen_at=seen_at)

    # --- internals ------------------------------------------------------------------------

    def _start_observer(self, committer: HumanEditCommitter) -> BaseObserver:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        handler = _EditHandler(committer.repo, self._from_thread, self._is_candidate, self._lost_from_thread)
        try:
            return _watching(Observer(), handler, committer)
        except OSError as error:
            # inotify has per-user limits (instances, watches) that other programs may use up;
            # a person's edits still deserve their own commits, so poll rather than not start
            log.warning(
                "cannot watch %s for edits (%s): checking every %g s instead",
                committer.repo.root,
                error,
                POLL_INTERVAL,
            )
            return _watching(PollingObserver(timeout=POLL_INTERVAL), handler, committer)

    def _from_thread(self, relative: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._seen, relative, time.time())

    def _lost_from_thread(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._sweep_soon)

    def _sweep_soon(self) -> None:
        """Look at what git sees changed under the roots, once more if a look is under way (an
        overflow tells each watched folder, one after another)."""
        if self._observer is None:  # stopping: stop() sweeps itself
            return
        self._sweep_again = True
        if self._sweep is None or self._sweep.done():
            self._sweep = asyncio.create_task(self._sweep_changes(), name="duragent-human-edits-sweep")

    async def _sweep_changes(self) -> None:
        """Treat every file git sees changed under the roots as seen changing now: edits whose
        events were lost are then committed as any other (the runtime's own writes are left out
        as ever, by `flush`)."""
        committer = self._committer
        while self._sweep_again and committer is not None:
            self._sweep_again = False
            log.warning(
                "events of edits were lost (inotify's queue overflowed): looking at what git sees changed"
            )
            try:
                changed = await asyncio.to_thread(committer.pending)
            except (DuragentError, OSError) as error:  # (OSError: git could not start)
                log.error("could not look for the edits whose events were lost: %s", error)
                return
            at = time.time()
            for file in changed:
                self._seen(file, at)

    def _is_candidate(self, relative: str) -> bool:
        """A path worth a look: a real file under the roots, not as this process last wrote it."""
        committer = self._committer
        if committer is None or not committer.watched(relative):
            return False
        return not committer.ledger.wrote_last(relative)

    def _seen(self, relative: str, at: float) -> None:
        # the store notes its write after the file is in place, so the event of the runtime's
        # own write can get here before the note does: flush() looks again before any git work
        now = time.monotonic()
        self._pending.add(relative)
        self._seen_at[relative] = at
        self._last_at = now
        if self._first_at is None:
            self._first_at = now
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending and self._first_at is not None:
                due = min(self._last_at + self.debounce, self._first_at + self.max_delay)
                wait = due - time.monotonic()
                if wait <= 0 and self.workspace.tool_calls_running:
                    # A tool call may be writing these files: the runtime reports its changes as the
                    # agent's when it ends, so wait for that rather than call them a person's edit.
                    wait = self.debounce
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                        self._wakeup.clear()
                    except TimeoutError:
                        pass
                    continue
                try:
                    await self.flush()
                except Exception as error:  # a failed commit must not end the watcher; retried on next edit
                    log.error("could not commit a person's edit: %s", error)


def _refuse_files_in_place_of(committer: HumanEditCommitter) -> None:
    """A file where a watched folder belongs (`agents` saved over by mistake) stops the start with
    its name: git and the observer would otherwise fail on it with a traceback."""
    for root in committer.roots:
        folder = committer.repo.root / root
        if folder.exists() and not folder.is_dir():
            raise DuragentError(
                f"{folder} is a file, not a folder: Duragent watches this folder for edits to commit; "
                "move or rename the file, then start again"
            )


def _watching(observer: BaseObserver, handler: _EditHandler, committer: HumanEditCommitter) -> BaseObserver:
    """`observer` started on the committer's roots; stopped again if it cannot start."""
    try:
        for root in committer.roots:
            folder = committer.repo.root / root
            folder.mkdir(parents=True, exist_ok=True)
            observer.schedule(handler, str(folder), recursive=True, event_filter=list(WATCHED_EVENTS))
        observer.daemon = True
        observer.start()
    except OSError:
        observer.unschedule_all()
        raise
    return observer


class _EditHandler(FileSystemEventHandler):
    """A watchdog handler that reports the repo-relative paths of changes worth a look.

    It runs in watchdog's thread and filters there (editor junk, other folders, the runtime's
    own writes), so those never wake the event loop.
    """

    def __init__(
        self,
        repo: GitRepo,
        report: Callable[[str], None],
        wanted: Callable[[str], bool],
        lost: Callable[[], None],
    ):
        super().__init__()
        self.repo = repo
        self.report = report
        self.wanted = wanted
        self.lost = lost

    def dispatch(self, event: FileSystemEvent) -> None:
        """Called by watchdog's thread for each event; directory events carry no content."""
        if isinstance(event, EventsLostEvent):
            # the kernel dropped events (inotify's queue overflowed): which files changed is
            # no longer known, so git is asked
            self.lost()
            return
        if event.is_directory:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw) if raw else ""
            if not path:
                continue
            try:
                relative = self.repo.relative(Path(path))
            except ValueError:
                continue
            if self.wanted(relative):
                self.report(relative)
