"""The git committer: batches the stores' changes into readable commits, off the hot path.

Stores call `Committer.notify(change)` (a `ChangeListener`) after writing files. That call
only appends to a list; a background thread commits the batch once writes have been quiet
for `debounce` seconds, or `max_delay` seconds after the first pending change when writes
never stop. A turn therefore never waits for git. A large batch (many sessions at once) is
handed to a separate process at a lower priority (`commit_process.py`), so its Python work
never holds the GIL the server's event loop needs.

Memory and agent-definition changes are committed apart from session logs and artifacts (two
commits when a batch holds both), so `duragent revert` can undo what an agent remembered.
Every commit carries trailers (`Duragent-Kind: session`, `Duragent-Session: <id>`,
`Duragent-Agent: <name>`, and `Duragent-By: person` for a person's command) so
`duragent.vcs.history` can read the log back.

A change carrying the bytes a store wrote (memory) is committed as those bytes, not as the file
is by then. `notify` notes what they were written over (the bytes of the file's previous change,
the commit HEAD was on), so a commit made since, by a person or another process, is noticed and
never undone by committing the older bytes over it (`GitRepo.commit_paths`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from duragent.errors import DuragentError
from duragent.secrets import in_the_clear
from duragent.stores.base import Change, person_acting, turn_session
from duragent.terminal_text import printable
from duragent.vcs.commit_process import CommitProcess, Setup
from duragent.vcs.repo import DEFAULT_AUTHOR, GitRepo, Written, file_prefix, parse_identity

if TYPE_CHECKING:
    from duragent.config import DuragentConfig
    from duragent.secrets import SecretGuard

log = logging.getLogger(__name__)

TRAILER_KIND = "Duragent-Kind"
TRAILER_SESSION = "Duragent-Session"
TRAILER_AGENT = "Duragent-Agent"
#: `Duragent-By: person` marks a change a person asked Duragent for (`duragent schedule rm`, a
#: request over the HTTP API), committed with their git identity: history counts it as theirs.
TRAILER_BY = "Duragent-By"
BY_PERSON = "person"
#: Change kinds whose subject names an agent (`assistant` or `assistant/2026-11-26`).
AGENT_KINDS = frozenset({"memory", "artifact", "agent"})
#: Change kinds a person may want to undo with `duragent revert` (memory, agent definitions and
#: their policy). They are committed apart from session logs, which are append-only, so undoing
#: what an agent remembered never has to touch the conversation it was said in.
REVERTIBLE_KINDS = frozenset({"memory", "agent", "edit"})
#: The kind of a person's change a store found in a file before writing its own.
EDIT_KIND = "edit"

#: Batches changing at least this many files are committed by the commit process when the worker
#: thread commits them: about the size whose Python work (messages, git's output, the secret
#: screen) stalls a stream noticeably, while smaller ones cost less than a pickled round trip.
#: Files, not changes: a busy session's thousand appends to one log are one file to commit, and
#: starting the commit process for them would cost more than committing them here.
SEPARATE_PROCESS_FROM = 100
#: How often a due batch held back (`held`: tool calls run) looks again, in seconds.
HELD_POLL = 0.1

#: What `git log --oneline` shows whole: ids in a subject are cut to their time part (see `_short_name`).
_MAX_SUBJECT = 72
#: `s_01JD8R2K4Q…` and `sch_…`: a prefix and a 26-character ULID, whose first 10 are its millisecond.
_ULID_NAME = re.compile(r"(?P<prefix>[a-z]+_)(?P<time>[0-9A-HJKMNP-TV-Z]{10})[0-9A-HJKMNP-TV-Z]{16}")
_MAX_DETAILS_PER_GROUP = 20
_PLURALS = {"memory": "memories", "edit": "edits"}
_NUMBER = re.compile(r"(\+?\d+)")
_COUNTED_NOUN = re.compile(r"(?P<count>\+\d+) (?P<noun>[A-Za-z][\w-]*)")
_MARKED_NOUN = re.compile(r"(?P<count>\+\d+) (?P<noun>[A-Za-z][\w-]*)\0")
# "+5 events" or "facts +1"
#: A session store's note of an append: `turn 3 (+4 events)`, `+1 event`.
_APPENDED = re.compile(r"(?:turn (?P<turn>\d+) \()?\+(?P<events>\d+) events?\)?")
#: A session store's note of a state.yaml written: `snapshot at seq 20`.
_SNAPSHOT = re.compile(r"snapshot at seq \d+")
_COUNT = re.compile(r"\+(?P<after>\d+) (?P<noun>[A-Za-z][\w-]*)|(?P<label>[A-Za-z][\w-]*) \+(?P<before>\d+)")


class CommitFailed(DuragentError):
    """Pending changes could not be committed (the files stay on disk and are retried)."""


@dataclass(frozen=True, slots=True)
class WrittenChange(Change):
    """A store's change carrying the bytes it wrote, with what the committer knew the file held
    before: the bytes of the previous change it was told of (`replaced`) and the commit HEAD was
    on (`head_then`), each None when unknown. A commit made since then is noticed (see
    `GitRepo.commit_paths`), so the bytes are never committed back over it."""

    replaced: bytes | None = None
    head_then: str | None = None

    @classmethod
    def of(cls, change: Change, replaced: bytes | None, head_then: str | None) -> WrittenChange:
        """`change` with what it was written over."""
        fields = {field.name: getattr(change, field.name) for field in dataclasses.fields(Change)}
        return cls(**fields, replaced=replaced, head_then=head_then)


class Committer:
    """Commits changed paths in the background, one commit per batch of changes."""

    def __init__(
        self,
        repo: GitRepo,
        *,
        debounce: float = 2.0,
        max_delay: float = 10.0,
        author: str = DEFAULT_AUTHOR,
        guard: SecretGuard | None = None,
        separate_process_from: int | None = SEPARATE_PROCESS_FROM,
        held: Callable[[], bool] | None = None,
    ):
        """`separate_process_from`: the number of files a batch changes from which the worker thread
        has the commit process commit it (None: never; flush() without a worker always commits in
        its caller). `held`: while it returns True, the worker commits nothing (tool calls run)."""
        parse_identity(author)  # a bad author is a configuration mistake: say so now, not later
        self.repo = repo
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self.author = author
        self.guard = guard
        self.separate_process_from = separate_process_from
        self.held = held
        #: Commits made so far, and the newest one's sha.
        self.commits_made = 0
        self.last_commit: str | None = None
        #: The last failure to commit (None once a later batch succeeds), for metrics and `doctor`.
        self.last_error: str | None = None
        #: When (time.time()) the commits now failing began to fail; None while they succeed.
        self.failing_since: float | None = None
        #: Files left out of commits because they still contained a secret.
        self.files_refused = 0
        #: The files left out now (repo-relative path: the secrets' names), until a commit takes
        #: them: what `/readyz` and `doctor` say, not only the log.
        self.held_back: dict[str, tuple[str, ...]] = {}
        #: Every screening of the batch being committed (path: names, or () when it passed), for
        #: the commit process to hand back (`Outcome.screened`).
        self.screened: dict[str, tuple[str, ...]] = {}
        # An RLock so close() may run from a signal handler that interrupted notify().
        self._cond = threading.Condition(threading.RLock())
        self._pending: list[Change] = []
        # the batch being committed now (pending_files counts it until its commit is made)
        self._in_flight: list[Change] = []
        self._first_at: float | None = None
        self._last_at = 0.0
        self._received = 0  # changes notified so far
        self._done = 0  # changes whose batch has been committed (or needed no commit)
        self._attempts = 0
        self._last_attempt_failed = False
        self._urgent = False
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._batch_lock = threading.Lock()  # one batch in git at a time (worker or inline flush)
        self._outside_repo_reported: set[Path] = set()
        self._commit_process: CommitProcess | None = None  # started by the worker on its first large batch
        # each file's bytes as the last change carrying them wrote them: what the next write replaced
        self._written: dict[Path, bytes] = {}

    @classmethod
    def from_config(cls, config: DuragentConfig, *, guard: SecretGuard | None = None) -> Committer:
        """A committer for the data directory of `config` (created as a repository if missing)."""
        from duragent.secrets import SecretGuard

        return cls(
            GitRepo.open_or_init(config.data_path),
            debounce=config.git.commit_debounce.total_seconds(),
            max_delay=config.git.max_commit_delay.total_seconds(),
            author=config.git.author,
            guard=guard if guard is not None else SecretGuard.from_config(config),
        )

    # --- the listener ----------------------------------------------------------------------

    def notify(self, change: Change) -> None:
        """Record a change to commit later. Thread-safe; never runs git (for a change carrying
        bytes it reads which commit HEAD is on from git's ref files)."""
        self._queue(_with_origin(change))

    def _queue(self, change: Change) -> None:
        """`notify` without looking at who the caller acts for (see `_with_origin`)."""
        # which commit a store's write was made on (a file read): a commit made after it is noticed
        head = self.repo.head_from_refs() if _carries_bytes(change) else None
        with self._cond:
            change = self._note_written(change, head)
            now = time.monotonic()
            was_idle = not self._pending
            self._pending.append(change)
            self._received += 1
            self._last_at = now
            if self._first_at is None:
                self._first_at = now
            # The worker only needs waking when it sleeps without a deadline: later changes only
            # push its deadline back, which it notices when it wakes up anyway.
            if was_idle:
                self._cond.notify_all()

    def _note_written(self, change: Change, head: str | None) -> Change:
        """`change` with what its bytes replaced, as far as this committer knows (holding the lock)."""
        if not _carries_bytes(change):
            for path in change.paths:
                self._written.pop(path, None)  # changed in a way whose bytes nobody told us
            return change
        assert change.content is not None
        path = change.paths[0]
        replaced = self._written.get(path)
        self._written[path] = change.content
        return WrittenChange.of(change, replaced, head)

    @property
    def pending(self) -> int:
        """Changes notified but not committed yet."""
        with self._cond:
            return self._received - self._done

    def pending_files(self) -> set[str]:
        """Repo-relative files of the changes not committed yet (queued or being committed)."""
        with self._cond:
            changes = [*self._pending, *self._in_flight]
        files: set[str] = set()
        for change in changes:
            for path in change.paths:
                try:
                    files.add(self.repo.relative(path))
                except ValueError:
                    continue
        return files

    def queue_uncommitted(self, folders: Mapping[Path, str], skip: Collection[str] = ()) -> int:
        """Queue the files under `folders` that differ from HEAD; how many were queued.

        A process killed between a store's write and its commit leaves such files behind, and
        nothing else would ever commit them. `folders` maps a folder the stores own to the change
        kind its files are (`sessions/` -> "session"); a file's subject is its first folder below
        (the session id). `skip` holds repo-relative files someone else commits.
        """
        roots: dict[str, str] = {}
        for folder, kind in folders.items():
            try:
                roots[self.repo.relative(folder)] = kind
            except ValueError:
                continue  # outside the repository: never committed anyway
        if not roots:
            return 0
        changed = self.repo.changed_paths(under=[self.repo.root / root for root in roots])
        groups: dict[tuple[str, str], list[Path]] = {}
        for relative in changed:
            if relative in skip:
                continue
            root = next((root for root in roots if relative.startswith(root + "/")), None)
            if root is None:
                continue
            subject = relative[len(root) + 1 :].split("/")[0]
            groups.setdefault((roots[root], subject), []).append(self.repo.root / relative)
        for (kind, subject), paths in groups.items():
            # (the agent's, whoever's command started this committer)
            self._queue(Change(tuple(paths), kind, subject, "uncommitted before a restart"))
        queued = sum(len(paths) for paths in groups.values())
        if queued:
            log.info("committing %d file(s) an earlier run left uncommitted", queued)
        return queued

    @property
    def committing(self) -> bool:
        """True while a batch is in git (which may be waiting for a person's git command)."""
        return self._batch_lock.locked()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (a daemon) that commits batches."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="duragent-committer", daemon=True)
            self._thread.start()

    def flush(self, timeout: float | None = None) -> None:
        """Commit everything notified so far now, and wait until it is committed.

        Without a running worker the commit happens in the calling thread. Raises CommitFailed
        when the commit fails or `timeout` seconds pass first (the changes stay pending).
        """
        if not self._worker_alive():
            self._commit_inline()
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._received
            attempts = self._attempts
            self._urgent = True
            self._cond.notify_all()
            while self._done < target:
                if self._attempts > attempts and self._last_attempt_failed:
                    raise CommitFailed(f"could not commit pending changes: {self.last_error}")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise CommitFailed(f"pending changes were not committed within {timeout:g} s")
                self._cond.wait(remaining)

    def close(self, timeout: float | None = None) -> None:
        """Commit everything pending, then stop the worker.

        Safe to call from a signal handler while the worker runs: the handler waits for the
        worker, which never needs the interrupted thread.
        """
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def __enter__(self) -> Committer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the worker ------------------------------------------------------------------------

    def _worker_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._wait_for_batch()
                if batch is None:
                    break
                upto = self._received
            self._process(batch, upto)
        if self._commit_process is not None:
            self._commit_process.close()
            self._commit_process = None

    def _wait_for_batch(self) -> list[Change] | None:
        """Sleep (holding the condition) until a batch is due; None when stopping."""
        while not self._stopping:
            if not self._pending:
                self._cond.wait()
                continue
            wait = self._due_at() - time.monotonic()
            if wait <= 0 and self.held is not None and self.held():
                # Tool calls run: a command nobody approved may have changed git's configuration
                # (a filter in .git/config, a .git/commondir naming another), which is put back
                # only when its batch ends; a commit made meanwhile would run the programs it names.
                wait = HELD_POLL
            if wait <= 0:
                return self._take_batch()
            self._cond.wait(wait)
        return None

    def _due_at(self) -> float:
        if self._urgent:
            return 0.0
        first = self._first_at if self._first_at is not None else self._last_at
        due = min(self._last_at + self.debounce, first + self.max_delay)
        return max(due, self._retry_at)

    def _take_batch(self) -> list[Change]:
        batch, self._pending = self._pending, []
        self._in_flight = batch
        self._first_at = None
        self._urgent = False
        return batch

    def _commit_inline(self) -> None:
        with self._cond:
            if not self._pending:
                return
            batch = self._take_batch()
            upto = self._received
        self._process(batch, upto)
        if self._last_attempt_failed:
            raise CommitFailed(f"could not commit pending changes: {self.last_error}")

    def _process(self, batch: list[Change], upto: int) -> None:
        """Commit one batch; on failure put it back to be retried with backoff."""
        with self._batch_lock:
            try:
                self._commit_here_or_apart(batch)
            # The worker must survive anything (a full disk, a broken repo, a bug here): the
            # error is logged and kept in last_error, and the batch is retried later.
            except Exception as error:
                log.error("git commit of %d change(s) failed, will retry: %s", len(batch), error)
                log.debug("commit failure", exc_info=True)
                self._requeue(batch, str(error) or type(error).__name__)
                return
        with self._cond:
            # HEAD holds (or was checked against) these bytes now: only writes still pending need
            # theirs remembered, so what is kept stays as small as the pending batch
            for change in batch:
                if _carries_bytes(change) and self._written.get(change.paths[0]) is change.content:
                    del self._written[change.paths[0]]
            self._in_flight = []
            self._done = max(self._done, upto)
            self._attempts += 1
            self._last_attempt_failed = False
            self.last_error = None
            self.failing_since = None
            self._retry_delay = 0.0
            self._retry_at = 0.0
            self._cond.notify_all()

    def _requeue(self, batch: list[Change], error: str) -> None:
        with self._cond:
            self._in_flight = []
            self._pending = batch + self._pending
            now = time.monotonic()
            self._first_at = now if self._first_at is None else self._first_at
            self._last_at = max(self._last_at, now)
            self._retry_delay = min(max(1.0, self._retry_delay * 2), 60.0)
            self._retry_at = now + self._retry_delay
            self._attempts += 1
            self._last_attempt_failed = True
            self.last_error = error
            self.failing_since = self.failing_since or time.time()
            self._cond.notify_all()

    def _commit_here_or_apart(self, batch: list[Change]) -> None:
        apart = (
            self.separate_process_from is not None
            and len({path for change in batch for path in change.paths}) >= self.separate_process_from
            and threading.current_thread() is self._thread
        )
        if not apart:
            self.commit_batch(batch)
            return
        if self._commit_process is None:
            self._commit_process = CommitProcess(
                Setup(
                    root=str(self.repo.root),
                    git_dir=str(self.repo.git_dir),
                    git_dir_id=self.repo.git_dir_id,
                    lock_timeout=self.repo.lock_timeout,
                    author=self.author,
                    guard=self.guard,
                    log_level=logging.getLogger("duragent").getEffectiveLevel(),
                )
            )
        outcome = self._commit_process.commit(batch)
        self.commits_made += outcome.commits
        if outcome.commits:
            self.last_commit = outcome.last_commit
        self.files_refused += outcome.files_refused
        self.note_screened(outcome.screened)
        if outcome.error is not None:
            raise CommitFailed(outcome.error)

    def commit_batch(self, batch: Sequence[Change]) -> None:
        """Commit `batch` now, in this thread: memory and agent changes apart from session logs."""
        self.screened = {}
        revertible = [change for change in batch if change.kind in REVERTIBLE_KINDS]
        logs_and_artifacts = [change for change in batch if change.kind not in REVERTIBLE_KINDS]
        # a person's change a store found before its own write is committed first, as theirs
        runs = [*_runs_by_author(revertible), *_runs_by_author(logs_and_artifacts)]
        for index, run in enumerate(runs):
            # A file committed as it is on disk now holds what a later run did to it too (the
            # agent's write, then a person's `schedule rm`): it goes in that run, by its author.
            later = {path for other in runs[index + 1 :] for change in other for path in change.paths}
            if later:
                run = _with_appends_cut(run, later, self._committed_sizes)
            kept = _without_paths_changed_later(run, later) if later else run
            if kept:
                author = str(self.repo.person_identity()) if _persons(kept[0]) else self.author
                self._commit_group(kept, author)

    def _committed_sizes(self, paths: Sequence[Path]) -> dict[Path, int | None]:
        """How long each file is in HEAD (None: not there, no commit yet, or outside the repository)."""
        relative: dict[Path, str] = {}
        for path in paths:
            with contextlib.suppress(ValueError):  # (outside: not committed at all)
                relative[path] = self.repo.relative(path)
        found = self.repo.objects_at([("HEAD", name) for name in relative.values()])
        sizes: dict[Path, int | None] = {}
        for path, name in relative.items():
            blob = found.get(("HEAD", name))
            sizes[path] = blob.size if blob is not None and blob.kind == "blob" else None
        return sizes

    def _commit_group(self, batch: Sequence[Change], author: str) -> None:
        paths = self._paths_in_repo(batch)
        if not paths:
            return

        def message(committed: Sequence[str]) -> str:
            # subjects name memory topics, artifacts, sessions: a model or a client chose them
            text = printable(commit_message(_changes_touching(batch, committed, self.repo)))
            return self.guard.redact(text) if self.guard is not None else text

        screen = self._screen if self.guard is not None else None
        sha = self.repo.commit_paths(
            paths, message, author, screen=screen, contents=_contents(batch), appended=_appends_end(batch)
        )
        if sha is not None:
            self.commits_made += 1
            self.last_commit = sha
            log.debug("committed %s (%d change(s))", sha[:10], len(batch))

    def note_screened(self, screened: Mapping[str, tuple[str, ...]]) -> None:
        """Files screened for secrets (path: the names found, () for none): `held_back` follows."""
        for path, names in screened.items():
            if names:
                self.held_back[path] = names
            else:
                self.held_back.pop(path, None)

    def _paths_in_repo(self, batch: Sequence[Change]) -> list[Path]:
        paths: list[Path] = []
        for path in dict.fromkeys(path for change in batch for path in change.paths):
            try:
                self.repo.relative(path)
            except ValueError:
                if path not in self._outside_repo_reported:
                    self._outside_repo_reported.add(path)
                    log.warning("not committing %s: it is outside the data repository", path)
                continue
            paths.append(path)
        return paths

    def _screen(self, path: str, added: str) -> bool:
        assert self.guard is not None
        names = self.guard.find_in_path(path) + self.guard.find(added) + in_the_clear(path, added)
        found = {path: tuple(dict.fromkeys(names))}
        self.screened.update(found)  # (handed back by the commit process; reset every batch)
        self.note_screened(found)
        if not names:
            return True
        self.files_refused += 1
        log.error(
            "not committing %s: it contains a secret (%s); the file is kept on disk, "
            "remove the secret and it is committed with its next change",
            path,
            ", ".join(names),
        )
        return False


# --- commit messages ----------------------------------------------------------------------------


def commit_message(changes: Sequence[Change]) -> str:
    """The commit message for a batch: a readable subject, one body line per change, trailers."""
    groups: dict[tuple[str, str], list[Change]] = {}
    for change in changes:
        groups.setdefault((change.kind, change.subject), []).append(change)
    subject = _subject(groups)
    body: list[str] = []
    # an id the subject cuts short that no trailer holds whole (a schedule's) is given in the body
    cut_short = any(kind != "session" and _short_name(name) != name for kind, name in groups)
    if len(groups) > 1 or cut_short or any(change.details for change in changes):
        for (kind, name), members in groups.items():
            body.append(f"- {kind} {name}: {_what_happened(kind, members)}")
            details = [detail for change in members for detail in change.details]
            body.extend(f"  {detail}" for detail in details[:_MAX_DETAILS_PER_GROUP])
            if len(details) > _MAX_DETAILS_PER_GROUP:
                body.append(f"  ... and {len(details) - _MAX_DETAILS_PER_GROUP} more")
    parts = [subject]
    if body:
        parts.append("\n".join(body))
    parts.append("\n".join(_trailers(groups, changes)))
    return "\n\n".join(parts) + "\n"


def _subject(groups: dict[tuple[str, str], list[Change]]) -> str:
    if len(groups) == 1:
        ((kind, name), members), *_ = groups.items()
        return _shorten(f"{kind} {_short_name(name)}: {_what_happened(kind, members)}")
    by_kind: dict[str, list[str]] = {}
    for kind, name in groups:
        by_kind.setdefault(kind, []).append(_short_name(name))
    what = ", ".join(
        f"{kind} {names[0]}" if len(names) == 1 else f"{len(names)} {_PLURALS.get(kind, kind + 's')}"
        for kind, names in by_kind.items()
    )
    summaries = [change.summary for members in groups.values() for change in members]
    return _shorten(f"{what}: {_totals(summaries)}")


def _what_happened(kind: str, members: Sequence[Change]) -> str:
    """One phrase for the changes of one subject: a session's as `session_phrase` says, others merged."""
    if kind == "session":
        return session_phrase(members)
    return merge_summaries([change.summary for change in members])


def session_phrase(changes: Sequence[Change]) -> str:
    """What a session's changes did, as a person reads it: `started, turn 1-2 (+5 events), snapshot`.

    The session store notes each append (`turn K (+N events)`, or `+N events` for events of no
    turn, its event types as details) and each state.yaml written (`snapshot at seq N`): the
    turns become one range, every appended event one count, and the snapshots one word (which
    seq they were taken at tells a person nothing). Other phrases (`deleted`) are kept as written.
    """
    turns: list[int] = []
    events = 0
    snapshot = False
    others: list[str] = []
    for change in changes:
        appended = _APPENDED.fullmatch(change.summary)
        if appended is not None:
            events += int(appended["events"])
            if appended["turn"] is not None:
                turns.append(int(appended["turn"]))
        elif _SNAPSHOT.fullmatch(change.summary):
            snapshot = True
        elif change.summary:
            others.append(change.summary)
    types = {detail for change in changes for detail in change.details}
    steps = ["started"] if "session_start" in types else []
    if turns:
        first, last = min(turns), max(turns)
        steps.append(f"turn {first}" if first == last else f"turn {first}-{last}")
    if "session_end" in types:
        steps.append("ended")
    counted = f"+{events} event{'' if events == 1 else 's'}"
    parts = []
    if steps:
        parts.append(", ".join(steps) + (f" ({counted})" if events else ""))
    elif events:
        parts.append(counted)
    if snapshot:
        parts.append("snapshot")
    parts += dict.fromkeys(others)
    return ", ".join(parts) if parts else f"{len(changes)} change{'s' if len(changes) != 1 else ''}"


def merge_summaries(summaries: Sequence[str]) -> str:
    """One phrase for several changes of one subject: `+N` counts add up, other numbers become ranges.

    `turn 12 (+5 events)` and `turn 13 (+4 events)` give `turn 12-13 (+9 events)`; phrases of
    different shapes are merged per shape and joined with `; `.
    """
    texts = [summary for summary in summaries if summary]
    if not texts:
        return f"{len(summaries)} change{'s' if len(summaries) != 1 else ''}"
    by_shape: dict[tuple[str, ...], list[list[str]]] = {}
    originals: dict[tuple[str, ...], str] = {}
    for text in texts:
        parts = _NUMBER.split(_COUNTED_NOUN.sub(_mark_noun, text))
        shape = tuple(parts[0::2])
        by_shape.setdefault(shape, []).append(parts)
        originals.setdefault(shape, text)
    # a phrase that occurs once is kept exactly as the store wrote it
    merged = [
        originals[shape] if len(group) == 1 else _merge_same_shape(group) for shape, group in by_shape.items()
    ]
    return _shorten("; ".join(dict.fromkeys(merged)), 80)


def _mark_noun(match: re.Match[str]) -> str:
    """`+5 events` -> `+5 event\0`: singular and plural counts then share a shape."""
    noun = match["noun"]
    return f"{match['count']} {noun[:-1] if _is_plural(noun) else noun}\0"


def _merge_same_shape(group: list[list[str]]) -> str:
    merged: list[str] = []
    for i, part in enumerate(group[0]):
        if i % 2 == 0:
            merged.append(part)
        elif part.startswith("+"):
            merged.append(f"+{sum(int(parts[i]) for parts in group)}")
        else:
            first, last = part, group[-1][i]
            merged.append(first if first == last else f"{first}-{last}")
    return _MARKED_NOUN.sub(_pluralise, "".join(merged))


def _pluralise(match: re.Match[str]) -> str:
    count = int(match["count"][1:])
    return f"{match['count']} {match['noun']}{'' if count == 1 else 's'}"


def _is_plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith("ss") and len(word) > 3


def _totals(summaries: Sequence[str]) -> str:
    """`42 events, facts +1`: the `+N` counts of all summaries added up by what they count."""
    totals: dict[tuple[str, bool], int] = {}  # (word, count written first) -> sum, in order seen
    for summary in summaries:
        for match in _COUNT.finditer(summary):
            if match["after"]:
                word = match["noun"]
                stem = word[:-1] if _is_plural(word) else word
                key, count = (stem, True), int(match["after"])
            else:
                key, count = (match["label"], False), int(match["before"])
            totals[key] = totals.get(key, 0) + count
    parts = [
        (f"{n} {word}{'' if n == 1 else 's'}" if count_first else f"{word} +{n}")
        for (word, count_first), n in totals.items()
    ]
    return ", ".join(parts) if parts else f"{len(summaries)} changes"


def _trailers(groups: dict[tuple[str, str], list[Change]], changes: Sequence[Change]) -> list[str]:
    kinds = dict.fromkeys(kind for kind, _ in groups)
    sessions = dict.fromkeys(name for kind, name in groups if kind == "session")
    # the sessions whose turns made the agent's changes (what it remembered in them)
    sessions.update(dict.fromkeys(change.session for change in changes if change.session))
    agents = dict.fromkeys(name.split("/")[0] for kind, name in groups if kind in AGENT_KINDS)
    lines = [f"{TRAILER_KIND}: {kind}" for kind in kinds]
    lines += [f"{TRAILER_SESSION}: {session}" for session in sessions]
    lines += [f"{TRAILER_AGENT}: {agent}" for agent in agents if agent]
    if any(change.by_person for change in changes):
        lines.append(f"{TRAILER_BY}: {BY_PERSON}")
    return lines


def _short_name(name: str) -> str:
    """`s_01JD8R2K4QXYZ...` (a prefix and a ULID) -> `s_01JD8R2K4Q`, its prefix and millisecond:
    a subject of two full ids is wider than `git log --oneline` shows. Other names stay whole."""
    return _ULID_NAME.sub(lambda match: match["prefix"] + match["time"], name)


def _shorten(text: str, limit: int = _MAX_SUBJECT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _persons(change: Change) -> bool:
    """True for a person's change: an edit a store found, or one a person's command made."""
    return change.kind == EDIT_KIND or change.by_person


def _with_origin(change: Change) -> Change:
    """`change` marked with who it was made for: a person's command (`person_acting`), or, for an
    agent's change, the session whose turn made it (`turn_session`)."""
    if change.kind == EDIT_KIND:
        return change  # a person's text a store found: theirs already, made in no session
    if person_acting.get() and not change.by_person:
        return dataclasses.replace(change, by_person=True)
    session = turn_session.get()
    if session is not None and change.session is None and change.kind in AGENT_KINDS:
        return dataclasses.replace(change, session=session)
    return change


def _runs_by_author(changes: Sequence[Change]) -> list[list[Change]]:
    """Consecutive changes with the same author (a person's, the agent's), in order."""
    runs: list[list[Change]] = []
    for change in changes:
        if runs and _persons(runs[-1][0]) == _persons(change):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


def _with_appends_cut(
    run: list[Change],
    later: set[Path],
    committed_sizes: Callable[[Sequence[Path]], Mapping[Path, int | None]],
) -> list[Change]:
    """`run`, its last append to each log a later run changes too carrying the log's bytes up to
    where that append ended: the log is committed as this run left it (the agent's lines before a
    person's answer, the answer before the turn it lets go on), the rest by the later run's author.

    A cut never takes a log back: where HEAD already holds more of it (a retry after a later run
    was committed, or an earlier batch committed the log from disk past this append), the run
    leaves the log to the later run, as it would without a cut."""
    last: dict[Path, int] = {}
    for index, change in enumerate(run):
        for path in change.paths:
            if path in later:
                last[path] = index
    candidates = {
        path: index
        for path, index in last.items()
        if run[index].appended_up_to is not None and run[index].content is None and len(run[index].paths) == 1
    }
    if not candidates:
        return run
    committed = committed_sizes(list(candidates))
    cut = list(run)
    for path, index in candidates.items():
        change = run[index]
        length = change.appended_up_to
        assert length is not None
        in_head = committed.get(path)
        if in_head is not None and in_head > length:
            continue
        data = file_prefix(path, length)
        if data is not None:
            cut[index] = dataclasses.replace(change, content=data)
    return cut


def _appends_end(batch: Sequence[Change]) -> dict[Path, int]:
    """Where each log the batch commits from disk ended after the batch's last append to it."""
    ends: dict[Path, int] = {}
    for change in batch:
        if change.appended_up_to is not None and change.content is None and len(change.paths) == 1:
            ends[change.paths[0]] = change.appended_up_to
        else:
            for path in change.paths:
                ends.pop(path, None)  # (changed otherwise since: what is on disk)
    return ends


def _without_paths_changed_later(run: list[Change], later: set[Path]) -> list[Change]:
    """`run` without the paths in `later` that it would commit from disk; a path whose exact
    bytes the run carries (a person's text a store found before its own write) stays."""
    exact = _contents(run)
    kept: list[Change] = []
    for change in run:
        paths = tuple(path for path in change.paths if path not in later or path in exact)
        if paths == change.paths:
            kept.append(change)
        elif paths:
            kept.append(dataclasses.replace(change, paths=paths))
    return kept


def _carries_bytes(change: Change) -> bool:
    return change.content is not None and len(change.paths) == 1


def _contents(batch: Sequence[Change]) -> dict[Path, Written]:
    """The exact bytes to commit for files whose changes carry them (the last in the batch wins),
    with every version those changes were written over."""
    contents: dict[Path, Written] = {}
    for change in batch:
        if change.content is None or len(change.paths) != 1:
            for path in change.paths:
                contents.pop(path, None)  # changed again without its bytes: what is on disk
            continue
        path = change.paths[0]
        earlier = contents.get(path, Written(b""))
        replaced, heads_then = earlier.replaced, earlier.heads_then
        if isinstance(change, WrittenChange):
            replaced += () if change.replaced is None else (change.replaced,)
            heads_then += () if change.head_then is None else (change.head_then,)
        contents[path] = Written(change.content, replaced, heads_then)
    return contents


def _changes_touching(batch: Sequence[Change], committed: Sequence[str], repo: GitRepo) -> list[Change]:
    """The changes with at least one path among (or above) the committed files."""
    # every committed file and every folder above it: one set lookup per path of a change
    touched = set(committed)
    for file in committed:
        folder = file.rpartition("/")[0]
        while folder and folder not in touched:
            touched.add(folder)
            folder = folder.rpartition("/")[0]
    relative: dict[Path, str | None] = {}
    kept = []
    for change in batch:
        for path in change.paths:
            if path not in relative:
                try:
                    relative[path] = repo.relative(path)
                except ValueError:
                    relative[path] = None
            if relative[path] in touched:
                kept.append(change)
                break
    return kept or list(batch)
