"""The files that decide what agents may do, watched around tool calls nobody approved.

A command reaches a file without naming it (a script, a glob, a folder copied over another), so
naming rules alone cannot keep an auto-allowed call away from them. `GuardedFiles` takes a
snapshot of them before such a batch of calls and puts back whatever the batch changed:

- every agent's definition folder (`agent.yaml`, policy, prompts, its `skills/` and `tools/`),
  and a new agent folder;
- the workspace's shared `skills/` and `tools/`, and agents deployed over the admin API
  (`sys/`);
- the data repository's git configuration, hooks and `info/`, its `.gitignore`,
  `.gitattributes` and `.gitmodules` (a filter or a hook is a program the server's git runs; an
  un-ignored `run/` would commit the tokens);
- `duragent.yaml` beside the data directory (the MCP servers the server starts, its tokens).

Contents are kept between snapshots by file stamp, so a snapshot of an unchanged workspace costs
a walk of these folders (one `lstat` per file), not reading them. `__pycache__` folders are left
out: a tool folder's Python program writes them every time it runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from duragent.file_stamps import Stamp, settled

log = logging.getLogger(__name__)

#: Files larger than this are watched by their stamp alone (a change to one cannot be put back).
MAX_KEPT_BYTES = 1024 * 1024
#: Folders inside the guarded ones that are not walked.
_SKIPPED_FOLDERS = frozenset({"__pycache__", ".git"})
#: Guarded files of the data directory (beside the folders below).
_DATA_FILES = (".gitignore", ".gitattributes", ".gitmodules", ".git/config", "duragent.yaml")
#: Guarded folders of the data directory, walked whole.
_DATA_FOLDERS = ("skills", "tools", "sys", ".git/hooks", ".git/info")


@dataclass(frozen=True)
class _Entry:
    """What one path was: a file (its bytes, None when too large), a symlink (its target) or a folder."""

    kind: str  # "file", "link", "dir", or "unlisted" (a folder that could not be listed)
    stamp: Stamp
    content: bytes | None = None
    target: str | None = None

    def same_as(self, other: _Entry) -> bool:
        if self.kind != other.kind:
            return False
        mode_kept = stat.S_IMODE(self.stamp[0]) == stat.S_IMODE(other.stamp[0])
        if self.kind in ("dir", "unlisted"):
            return mode_kept  # (a folder made unreadable hides what it holds: put its mode back)
        if self.kind == "link":
            return self.target == other.target
        if self.content is not None and other.content is not None:
            return mode_kept and self.content == other.content
        return self.stamp == other.stamp


Snapshot = dict[Path, _Entry]


class GuardedFiles:
    """The guarded files of one data directory and its agents folder, with their contents cached."""

    def __init__(self, data_dir: Path, agents_dir: Path):
        self.data_dir = data_dir
        self.agents_dir = agents_dir
        self._cache: dict[Path, _Entry] = {}
        #: Snapshots of batches running now, by id: a change the runtime makes for a person
        #: meanwhile ("allow always", a call a person approved in another session) is taken into
        #: them, so it is not undone as theirs.
        self._open: dict[int, Snapshot] = {}
        #: What `accept` took in while a snapshot of `open` was being taken (None: gone).
        self._accepted_since: dict[int, dict[Path, _Entry | None]] = {}

    def open(self) -> Snapshot:
        """A snapshot of now, kept up to date with `accept` until `close`.

        (Registered before it is taken, in a thread: what `accept` takes in during the walk is
        written over the walk's own entries once it ends, so a person's change is never lost.)
        """
        taken: Snapshot = {}
        self._open[id(taken)] = taken
        accepted_meanwhile = self._accepted_since[id(taken)] = {}
        try:
            taken.update(self.snapshot())
            for path, entry in list(accepted_meanwhile.items()):
                if entry is None:
                    taken.pop(path, None)
                else:
                    taken[path] = entry
        except BaseException:
            self.close(taken)
            raise
        finally:
            del self._accepted_since[id(taken)]
        return taken

    def close(self, taken: Snapshot) -> None:
        """Stop updating a snapshot from `open`."""
        self._open.pop(id(taken), None)

    def accept(self, paths: Iterable[Path]) -> None:
        """Take `paths` as they are now into every open snapshot (a change a person approved)."""
        paths = list(paths)
        for key, taken in list(self._open.items()):
            meanwhile = self._accepted_since.get(key)  # (a snapshot being taken in a thread)
            for path in paths:
                try:
                    entry: _Entry | None = self._entry(path, os.lstat(path))
                except OSError:
                    entry = None
                if meanwhile is not None:
                    meanwhile[path] = entry
                if entry is None:
                    taken.pop(path, None)
                else:
                    taken[path] = entry

    def roots(self) -> list[Path]:
        """The files and folders watched."""
        data = self.data_dir
        paths = [self.agents_dir, *(data / name for name in _DATA_FOLDERS)]
        paths += [data / name for name in _DATA_FILES]
        paths.append(data.parent / "duragent.yaml")
        return list(dict.fromkeys(paths))

    def snapshot(self) -> Snapshot:
        """What every guarded path holds now."""
        entries: Snapshot = {}
        unlisted: list[Path] = []
        for path, status in _walk(self.roots(), unlisted):
            entries[path] = self._entry(path, status)
        for path in unlisted:
            if path in entries:
                entries[path] = _Entry("unlisted", entries[path].stamp)
        # (contents of files gone since are not kept: the cache holds what exists now)
        for gone in self._cache.keys() - entries.keys():
            del self._cache[gone]
        return entries

    def changed(self, before: Snapshot, after: Snapshot) -> list[Path]:
        """The paths whose content, kind or permissions differ between two snapshots."""
        paths = before.keys() | after.keys()
        return sorted(
            path
            for path in paths
            if path not in before or path not in after or not before[path].same_as(after[path])
        )

    def restore(self, before: Snapshot, after: Snapshot, changed: Iterable[Path]) -> list[Path]:
        """Put the `changed` paths back as `before` had them; returns those that could not be."""
        failed: list[Path] = []
        # What a folder that could not be listed before held is unknown: nothing in it is removed.
        unlisted = [path for path, entry in before.items() if entry.kind == "unlisted"]
        changed = [
            path for path in changed if not any(path.is_relative_to(u) and path != u for u in unlisted)
        ]
        # Whatever is new or replaced goes first (deepest first): a folder swapped for a symlink
        # must be gone before the files it held are written back through it.
        for path in sorted(changed, key=lambda p: len(p.parts), reverse=True):
            now = after.get(path)
            was = before.get(path)
            if now is None or (was is not None and _same_kind(now, was) and now.kind != "link"):
                continue
            try:
                _remove(path, now)
            except OSError as exc:
                log.error("could not undo a tool call's change to %s: %s", path, exc)
                failed.append(path)
        for path in sorted(changed, key=lambda p: len(p.parts)):
            was = before.get(path)
            # Another batch's snapshot opened meanwhile saw the change as "before": it would put
            # it back when its own batch ends. What was restored is its "before" too.
            for taken in self._open.values():
                if taken is not before:
                    if was is None:
                        taken.pop(path, None)
                    else:
                        taken[path] = was
            if was is None:
                continue
            try:
                _put_back(path, was)
            except OSError as exc:
                log.error("could not undo a tool call's change to %s: %s", path, exc)
                failed.append(path)
            self._cache.pop(path, None)
        return failed

    def _entry(self, path: Path, status: os.stat_result) -> _Entry:
        current: Stamp = (
            status.st_mode,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        if stat.S_ISDIR(status.st_mode):
            return _Entry("dir", current)
        if stat.S_ISLNK(status.st_mode):
            try:
                return _Entry("link", current, target=os.readlink(path))
            except OSError:
                return _Entry("link", current)
        known = self._cache.get(path)
        # A stamp younger than a filesystem tick may hide a same-size rewrite: read again then.
        if known is not None and known.stamp == current and settled((current,)):
            return known
        content: bytes | None = None
        if status.st_size <= MAX_KEPT_BYTES:
            try:
                with open(path, "rb") as handle:
                    content = handle.read(MAX_KEPT_BYTES + 1)
            except OSError:
                content = None
        entry = _Entry("file", current, content=content)
        self._cache[path] = entry
        return entry


def _walk(roots: Iterable[Path], unlisted: list[Path]) -> Iterator[tuple[Path, os.stat_result]]:
    """Every file, symlink and folder under `roots` (a root may be a file), symlinks not followed;
    the folders that could not be listed are added to `unlisted`."""
    for root in roots:
        try:
            status = os.lstat(root)
        except OSError:
            continue  # absent: its creation shows in the next snapshot
        yield root, status
        if not stat.S_ISDIR(status.st_mode):
            continue

        def note(error: OSError) -> None:
            if error.filename:
                unlisted.append(Path(error.filename))

        for folder, dirs, files in os.walk(root, onerror=note, followlinks=False):
            dirs[:] = [name for name in dirs if name not in _SKIPPED_FOLDERS]
            for name in [*dirs, *files]:
                path = Path(folder, name)
                try:
                    yield path, os.lstat(path)
                except OSError:
                    continue


def _same_kind(one: _Entry, other: _Entry) -> bool:
    folders = ("dir", "unlisted")
    return one.kind == other.kind or (one.kind in folders and other.kind in folders)


def _remove(path: Path, entry: _Entry) -> None:
    if entry.kind in ("dir", "unlisted") and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _put_back(path: Path, entry: _Entry) -> None:
    if entry.kind in ("dir", "unlisted"):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, stat.S_IMODE(entry.stamp[0]))
        return
    if entry.kind == "link":
        if entry.target is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            os.symlink(entry.target, path)
        return
    if entry.content is None:
        raise OSError(f"{path} is larger than {MAX_KEPT_BYTES} bytes: its old content was not kept")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_dir():
        _remove(path, _Entry("dir" if path.is_dir() and not path.is_symlink() else "link", entry.stamp))
    path.write_bytes(entry.content)
    os.chmod(path, stat.S_IMODE(entry.stamp[0]))
