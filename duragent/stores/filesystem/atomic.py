"""Durable file writes: whole-file replacement that a crash can never leave half done.

`write_atomic` is the one way the filesystem stores replace a file (snapshots, sidecars,
rewritten Markdown): a temp file in the same directory, fsync, rename over the target, fsync
the directory. A reader (or `git add`) sees the old bytes or the new, never a mix.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from duragent.ids import ulid
from duragent.stores.base import storage_error


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`, looping over short writes (a signal or a full pipe)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make file creations, renames and removals in `directory` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """The temp file `write_atomic` uses for `path`: `<name>.<ULID>.tmp`, beside it (same filesystem)."""
    return path.with_name(f"{path.name}.{ulid()}.tmp")


#: `write_atomic`'s temp files: `<name>.<ULID>.tmp`.
_TEMP_NAME = re.compile(r".+\.[0-9A-HJKMNP-TV-Z]{26}\.tmp")


def remove_stale_temp_files(root: Path, *, older_than: float = 60.0) -> list[Path]:
    """Remove `write_atomic` temp files under `root` that a killed process left behind.

    Only files untouched for `older_than` seconds go, so a write in progress elsewhere keeps
    its temp file. Returns what was removed.
    """
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than
    removed = []
    for directory, _subdirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if not _TEMP_NAME.fullmatch(name):
                continue
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # renamed or removed meanwhile: not stale after all
    return removed


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; with `durable`, fsync the file and its directory.

    The temp file is removed if anything fails, so no `.tmp` litter is left behind; a full,
    read-only or foreign-owned disk raises StorageUnavailable naming `path` (a 503 to a client).
    `durable=False` keeps the atomicity (rename) but skips both fsyncs, for tests and benchmarks.
    """
    temp = temp_path_for(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as error:
        raise storage_error(error, path) from error
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as error:  # (a full or read-only disk: `path` still holds its old bytes)
        temp.unlink(missing_ok=True)
        raise storage_error(error, path) from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)
