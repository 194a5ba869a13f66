"""Exclusive locks between processes: one writer per session, one server per data directory.

Both are `flock(2)` locks on a small file that also names the holder (pid, owner), so a refused
process can say who is in the way. The kernel drops the lock when the holder exits or is killed,
so a crash never leaves a stale lock behind; the pid left in the file is only informational.
flock locks belong to an open file, so a second lock attempt inside the same process conflicts
too (two stores on one directory in one process are refused just like two processes).
Caveat: flock is not reliable on some network filesystems (old NFS); keep the data dir local.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from duragent.stores.base import SessionLocked
from duragent.stores.filesystem.atomic import write_all


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as written in its lock file (pid None when the file was unreadable)."""

    pid: int | None
    owner: str = ""

    @property
    def pid_text(self) -> str:
        """The pid as text, `unknown` when the holder has not written it yet."""
        return "unknown" if self.pid is None else str(self.pid)

    def describe(self) -> str:
        """`pid 1234 (owner)` for messages."""
        return f"pid {self.pid_text} ({self.owner})" if self.owner else f"pid {self.pid_text}"


def read_lock_holder(path: Path) -> LockHolder:
    """Parse a lock file: the pid on the first line, the owner on the second."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return LockHolder(None)
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    owner = lines[1].strip() if len(lines) > 1 else ""
    return LockHolder(pid, owner)


class FileLock:
    """An exclusive, non-blocking flock on one file that records the holder's pid and owner."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def try_acquire(self, owner: str = "") -> LockHolder | None:
        """Take the lock and write our pid into it; if someone else has it, return who (and don't wait)."""
        if self._fd is not None:
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return read_lock_holder(self.path)
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            write_all(fd, f"{os.getpid()}\n{owner}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return None

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock); harmless when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Empty the file so `cat` shows the lock is free; it may already be unlinked (session deleted).
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


#: How long a session lock is retried before it counts as held by someone else: a lock this
#: process just released can look held for a moment, because a child process another thread
#: is starting (git, a tool) holds a copy of the descriptor until it execs.
SESSION_LOCK_PATIENCE = 2.0


class SessionLock:
    """The single-writer lock of one session: `<session dir>/.lock`."""

    FILE_NAME = ".lock"

    def __init__(self, session_dir: Path, session_id: str):
        self.session_id = session_id
        self._lock = FileLock(session_dir / self.FILE_NAME)

    @property
    def held(self) -> bool:
        """Whether this process holds the session."""
        return self._lock.held

    def acquire(self, patience: float = SESSION_LOCK_PATIENCE) -> None:
        """Become the session's only writer, or raise SessionLocked naming the pid that is.

        A lock found held is tried again for `patience` seconds: a holder that has written no
        pid is most likely a child process between fork and exec, gone in microseconds.
        """
        deadline = time.monotonic() + patience
        delay = 0.002
        while True:
            holder = self._lock.try_acquire(owner=f"session {self.session_id}")
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise SessionLocked(f"session {self.session_id} is in use by pid {holder.pid_text}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        """Let another process write the session."""
        self._lock.release()


class DataDirLock:
    """One `duragent serve` per data directory: `<data dir>/.locks/serve.lock` holding pid and owner."""

    def __init__(self, data_dir: Path, owner: str):
        self.data_dir = data_dir
        self.owner = owner
        self.path = data_dir / ".locks" / "serve.lock"
        self._lock = FileLock(self.path)

    @property
    def held(self) -> bool:
        """Whether this object holds the data directory."""
        return self._lock.held

    def acquire(self) -> None:
        """Take the data directory, or raise SessionLocked naming the pid and owner that has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = self._lock.try_acquire(owner=self.owner)
        if holder is not None:
            raise SessionLocked(f"data directory {self.data_dir} is in use by {holder.describe()}")

    def release(self) -> None:
        """Give the data directory up."""
        self._lock.release()

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


#: Under the memory root: one lock file per memory file, `.locks/<relative path>.lock`.
MEMORY_LOCKS_DIR = ".locks"


@contextlib.contextmanager
def memory_file_lock(memory_root: Path, path: Path) -> Iterator[None]:
    """Hold the lock every writer of one memory file takes while it re-reads and replaces it.

    The memory store, `duragent revert` and `duragent memory import` (any process) take it, so
    none of them replaces a file with text computed from a version another has just replaced.
    A blocking `flock` on `<memory root>/.locks/<relative path>.lock`, released on exit.
    """
    lock_path = memory_root / MEMORY_LOCKS_DIR / f"{path.relative_to(memory_root)}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
