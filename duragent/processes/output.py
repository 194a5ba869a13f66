"""A background process's output on disk: `<handle>.log`, capped and rotated.

The log never holds more than about twice `cap` bytes: when the current file would pass `cap`
it becomes `<handle>.log.1` (replacing the previous one) and a new file starts. Offsets are
counted over everything the process ever wrote, so a reader paging through the output notices
when the part it asks for was rotated away.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: `processes/.gitignore`: written by `duragent init`, and by the server if it is missing.
OUTPUT_GITIGNORE = (
    "# Output and exit codes of background processes: large and machine-local.\n*.log\n*.log.1\n*.exit\n"
)


def rotated_path(path: Path) -> Path:
    """Where the previous part of a log is kept."""
    return path.with_name(path.name + ".1")


class OutputLog:
    """Appends a plain process's output to its log, rotating at `cap` bytes."""

    def __init__(self, path: Path, cap: int):
        self.path = path
        self.cap = max(cap, 1024)
        self.written = 0
        self._size = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)

    def append(self, data: bytes) -> None:
        """Write a chunk of output (a small unbuffered append: no fsync, the log is best effort)."""
        while data:
            if self._size >= self.cap:
                self._rotate()
            piece = data[: self.cap - self._size]
            os.write(self._fd, piece)
            self._size += len(piece)
            self.written += len(piece)
            data = data[len(piece) :]

    def _rotate(self) -> None:
        os.close(self._fd)
        os.replace(self.path, rotated_path(self.path))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self._size = 0

    def close(self) -> None:
        """Stop writing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def rotate_if_large(path: Path, cap: int) -> int:
    """Rotate a log another program appends to (tmux) once it passes `cap`; returns the bytes dropped
    (the previous rotated part, now replaced, and what the log held beyond its last `cap` bytes).

    The writer keeps its file open in append mode, so truncating the file after copying it
    aside lets it go on writing at the new end. Only the last `cap` bytes are kept: a fast
    writer fills far more than `cap` between two looks, and the rotated part must not keep it
    all (nor be read into memory whole).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size <= cap:
        return 0
    dropped = _size(rotated_path(path)) + size - cap
    with path.open("rb") as source:
        source.seek(size - cap)
        data = source.read(cap)
    rotated_path(path).write_bytes(data)
    with path.open("r+b") as target:
        target.truncate(0)
    return dropped


@dataclass(frozen=True)
class LogSlice:
    """Part of a process's output: its text, where it starts and ends, and what no longer exists."""

    text: str
    offset: int
    end: int
    total: int
    #: Bytes at the start that were rotated away (offsets below this cannot be read).
    dropped: int


def kept_bytes(path: Path) -> int:
    """How many bytes of output the log and its rotated part hold."""
    return sum(_size(p) for p in (rotated_path(path), path))


def read_slice(path: Path, total: int, offset: int | None, limit: int) -> LogSlice:
    """Up to `limit` bytes from `offset` (counted over all output; None: the last `limit` bytes)."""
    data = _read(rotated_path(path)) + _read(path)
    total = max(total, len(data))
    dropped = total - len(data)
    start = max(total - limit, dropped) if offset is None else max(offset, dropped)
    start = min(start, total)
    chunk = data[start - dropped : start - dropped + limit]
    return LogSlice(chunk.decode("utf-8", errors="replace"), start, start + len(chunk), total, dropped)


def tail_text(path: Path, max_bytes: int) -> str:
    """The end of the output, at most `max_bytes`, starting at a line boundary when one is near."""
    data = (_read(rotated_path(path)) + _read(path))[-max_bytes:]
    newline = data.find(b"\n")
    if 0 <= newline < len(data) // 4 and len(data) == max_bytes:
        data = data[newline + 1 :]
    return data.decode("utf-8", errors="replace")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
