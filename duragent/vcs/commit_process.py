"""A child process that commits the committer's large batches, outside the server, at low priority.

A commit of a few hundred sessions costs tens of ms of Python (commit messages, git's output
parsed, the secret screen) besides git's own work. On the committer's thread that Python holds
the GIL the server's event loop needs, and every stream the server relays stalls while it runs.
Here it shares no GIL with the server, and it runs, with the git commands it starts, at a lower
CPU priority (`nice` +10), so the server's work goes first when both want the CPU.

The committer's worker thread drives it through pipes: the setup once, then one pickled request
per batch (its changes) and one pickled `Outcome` back (commits made, files refused, log
records, or the error). It ignores SIGINT and SIGTERM, which a terminal or a service manager
send to the whole process group: the server decides when to stop, and the end of its stdin is
what ends this process, once the batch in hand is committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import duragent
from duragent.errors import DuragentError
from duragent.stores.base import Change

if TYPE_CHECKING:
    from duragent.secrets import SecretGuard

log = logging.getLogger(__name__)

#: How much lower than the server's the commit process's CPU priority is (its git commands inherit it).
NICENESS = 10
#: The server's process id, given to the child: it stops when its parent is no longer that process.
PARENT_ENV = "DURAGENT_COMMIT_PROCESS_PARENT"
_PR_SET_PDEATHSIG = 1

#: A change as it crosses the pipe: paths as strings (pickling `Path` objects costs more than the
#: rest), then what a store's written bytes replaced (`WrittenChange`), if known.
#: paths, kind, subject, summary, details, content, replaced, head_then, session, by_person,
#: appended_up_to
_WireChange = tuple[
    tuple[str, ...],
    str,
    str,
    str,
    tuple[str, ...],
    bytes | None,
    bytes | None,
    str | None,
    str | None,
    bool,
    int | None,
]


class CommitProcessFailed(DuragentError):
    """The commit process ended or answered nonsense; the batch is retried in a new one."""


@dataclass(frozen=True)
class Setup:
    """What the child needs to commit as the server's committer would."""

    root: str
    git_dir: str
    #: The git folder's (device, inode) as the server opened it (`GitRepo.git_dir_id`).
    git_dir_id: tuple[int, int] | None
    lock_timeout: float
    author: str
    guard: SecretGuard | None
    log_level: int


@dataclass(frozen=True)
class Outcome:
    """What committing one batch did, or why it failed."""

    commits: int = 0
    last_commit: str | None = None
    files_refused: int = 0
    #: Each file screened for secrets: the names found (() when none), see `Committer.held_back`.
    screened: dict[str, tuple[str, ...]] = field(default_factory=dict)
    error: str | None = None
    #: (logger name, level, message) of what the child logged, for the server's own log.
    records: list[tuple[str, int, str]] = field(default_factory=list)


class CommitProcess:
    """The server's handle on the child: started on the first batch, kept until `close`.

    Used by one thread at a time (the committer's worker).
    """

    def __init__(self, setup: Setup):
        self.setup = setup
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def commit(self, batch: Sequence[Change]) -> Outcome:
        """Have the child commit `batch`; its log records are logged here. Raises CommitProcessFailed."""
        request: list[_WireChange] = [
            (
                tuple(map(os.fspath, change.paths)),
                change.kind,
                change.subject,
                change.summary,
                change.details,
                change.content,
                *_written_over(change),
                change.session,
                change.by_person,
                change.appended_up_to,
            )
            for change in batch
        ]
        process = self._process or self._start()
        try:
            _send(process.stdin, request)
            outcome = _receive(process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            code = self._stop(kill=True)
            raise CommitProcessFailed(f"the commit process ended unexpectedly (exit code {code})") from error
        if not isinstance(outcome, Outcome):
            self._stop(kill=True)
            raise CommitProcessFailed(f"the commit process answered {type(outcome).__name__}")
        for name, level, message in outcome.records:
            logging.getLogger(name).log(level, "%s", message)
        return outcome

    def close(self, timeout: float | None = 15.0) -> None:
        """End the child once it has finished the batch in hand."""
        self._stop(kill=False, timeout=timeout)

    def _start(self) -> subprocess.Popen[bytes]:
        # the child imports the very package this process runs, installed or not
        package_parent = str(Path(duragent.__file__).resolve().parent.parent)
        python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            env={**os.environ, "PYTHONPATH": python_path, PARENT_ENV: str(os.getpid())},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # the data directory, not the server's folder: a `duragent/` folder there would be imported
            cwd=self.setup.root,
            # its own process group, so a terminal's Ctrl-C or Ctrl-Z (sent to the foreground
            # group) is for the server to handle; not its own session, which on Linux puts it in
            # a scheduling group of its own (autogroup) where nice +10 weighs nothing against
            # the server: it then took as much CPU as the server and its streams together
            process_group=0,
        )
        self._process = process
        try:
            _send(process.stdin, self.setup)
        except OSError as error:
            code = self._stop(kill=True)
            raise CommitProcessFailed(f"the commit process did not start (exit code {code})") from error
        log.debug("started the commit process (pid %d)", process.pid)
        return process

    def _stop(self, *, kill: bool, timeout: float | None = 15.0) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if kill:
            process.kill()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a broken pipe to a child that is gone already
                    pipe.close()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _written_over(change: Change) -> tuple[bytes | None, str | None]:
    """What a `WrittenChange`'s bytes replaced (None, None for any other change)."""
    from duragent.vcs.committer import WrittenChange  # (the committer imports this module)

    if isinstance(change, WrittenChange):
        return change.replaced, change.head_then
    return None, None


def _send(stream: IO[bytes] | None, message: object) -> None:
    assert stream is not None
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


def _receive(stream: IO[bytes] | None) -> object:
    assert stream is not None
    return pickle.load(stream)


# --- the child --------------------------------------------------------------------------------


class _Records(logging.Handler):
    """Keeps what the child logs, to send back with the batch's outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append((record.name, record.levelno, record.getMessage()))

    def take(self) -> list[tuple[str, int, str]]:
        kept, self.kept = self.kept, []
        return kept


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Commit each batch read from `requests` and write its Outcome to `replies`, until end of input."""
    from duragent.vcs.committer import Committer, WrittenChange
    from duragent.vcs.repo import GitRepo

    setup = _receive(requests)
    assert isinstance(setup, Setup)
    records = _Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(setup.log_level)
    repo = GitRepo(
        Path(setup.root), Path(setup.git_dir), lock_timeout=setup.lock_timeout, git_dir_id=setup.git_dir_id
    )
    committer = Committer(repo, author=setup.author, guard=setup.guard, separate_process_from=None)
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return
        if _server_gone():
            return
        assert isinstance(request, list)
        batch: list[Change] = []
        for wire in request:
            paths, kind, subject, summary, details, content, replaced, head, session, by_person, up_to = wire
            change = Change(
                tuple(map(Path, paths)), kind, subject, summary, details, content, session, by_person, up_to
            )
            written_over_known = replaced is not None or head is not None
            batch.append(WrittenChange.of(change, replaced, head) if written_over_known else change)
        made, refused, error = committer.commits_made, committer.files_refused, None
        try:
            committer.commit_batch(batch)
        # whatever went wrong goes back to the server, which logs it and retries the batch
        except Exception as failure:
            error = str(failure) or type(failure).__name__
        outcome = Outcome(
            commits=committer.commits_made - made,
            last_commit=committer.last_commit,
            files_refused=committer.files_refused - refused,
            screened=committer.screened,
            error=error,
            records=records.take(),
        )
        _send(replies, outcome)


def _die_with_the_server() -> None:
    """Have the kernel kill this process when the server's thread that started it ends (Linux).

    After a `kill -9` of the server, a commit still running here would go on writing the
    person's index while the restarted server commits the same files, leaving entries older
    than HEAD (`git status`: MM). Killed with the server, it leaves what a server killed in
    mid-commit leaves, which the next start repairs. The committer's thread closes this process
    before it ends, so a normal stop is not cut short.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if _server_gone():  # it died before the line above took effect
        sys.exit(0)


def _server_gone() -> bool:
    """True when the server that started this process has ended (this process was re-parented)."""
    parent = os.environ.get(PARENT_ENV)
    return parent is not None and os.getppid() != int(parent)


def main() -> None:
    """The child's entry point: stdin and stdout are the pipes to the server."""
    _die_with_the_server()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICENESS)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed must not corrupt the replies
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    # run as `python -m`, this file is `__main__`: the real module's classes are the ones the
    # server pickles, so its main() is the one to run
    from duragent.vcs.commit_process import main as commit_process_main

    commit_process_main()
