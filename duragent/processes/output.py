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
    # Whole characters only: a page that cut one in two showed it as two U+FFFD, one on each
    # page, and the agent paging on from `end` never saw it. The end moves back before a
    # character it would cut (unless that leaves nothing), so the next page starts with it; a
    # start inside a character moves on past it.
    first = _character_end(data, start - dropped)
    stop = min(first + limit, len(data))
    last = _character_start(data, stop)
    if last <= first:
        last = stop
    chunk = data[first:last]
    return LogSlice(chunk.decode("utf-8", errors="replace"), first + dropped, last + dropped, total, dropped)


def tail_text(path: Path, max_bytes: int) -> str:
    """The end of the output, at most `max_bytes`, starting at a line boundary when one is near."""
    data = _read(rotated_path(path)) + _read(path)
    cut = max(len(data) - max_bytes, 0)
    data = data[_character_end(data, cut) :]
    newline = data.find(b"\n")
    if 0 <= newline < len(data) // 4 and cut:
        data = data[newline + 1 :]
    return data.decode("utf-8", errors="replace")


def _character_start(data: bytes, index: int) -> int:
    """`index`, or the first byte of the UTF-8 character `index` falls inside."""
    for lead in range(index - 1, max(index - 4, -1), -1):
        byte = data[lead]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the character's first
            return lead if lead + _sequence_length(byte) > index else index
    return index


def _character_end(data: bytes, index: int) -> int:
    """`index`, or the end of the UTF-8 character `index` falls inside."""
    start = _character_start(data, index)
    return min(start + _sequence_length(data[start]), len(data)) if start < index else index


def _sequence_length(lead: int) -> int:
    """How many bytes the UTF-8 character starting with byte `lead` has (1 for anything else)."""
    if lead & 0xE0 == 0xC0:
        return 2
    if lead & 0xF0 == 0xE0:
        return 3
    if lead & 0xF8 == 0xF0:
        return 4
    return 1


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
