"""The files that decide what agents may do, watched around tool calls nobody approved.

A command reaches a file without naming it (a script, a glob, a folder copied over another), so
naming rules alone cannot keep an auto-allowed call away from them. `GuardedFiles` takes a
snapshot of them before such a batch of calls and puts back whatever the batch changed:

- every agent's definition folder (`agent.yaml`, policy, prompts, its `skills/` and `tools/`),
  and a new agent folder: the guard's agents folder and the data directory's `agents/`;
- the workspace's shared `skills/` and `tools/`, and agents deployed over the admin API
  (`sys/`);
- the data repository's git configuration, hooks and `info/` (and `.git/commondir`, which
  would have git read them from another folder), its `.gitignore`,
  `.gitattributes` and `.gitmodules` (a filter or a hook is a program the server's git runs; an
  un-ignored `run/` would commit the tokens);
- `duragent.yaml` beside the data directory (the MCP servers the server starts, its tokens);
- the data repository's `.git` itself: replaced by a symlink or a gitfile (`gitdir: ...`), it
  would send the server's commits into a folder the agent wrote; the repository it was is moved
  back from where the link or file points.

Contents are kept between snapshots by file stamp, so a snapshot of an unchanged workspace costs
a walk of these folders (one `lstat` per file), not reading them. `__pycache__` folders are left
out: a tool folder's Python program writes them every time it runs.

That walk grows with the folders (a tool folder holding thousands of files takes tens of
milliseconds), so the runtime never takes it on the event loop: `begin_batch`, `end_batch` and
`keep` run every walk, every undo and every change a person made meanwhile in the guard's own
worker thread, one at a time and in the order they were asked for. Overlapping batches of two
sessions, an "allow always" written while another batch runs and the content cache therefore
never see each other half done, and other sessions' turns go on during the walk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from duragent.file_stamps import SETTLE_NS, Stamp

log = logging.getLogger(__name__)

#: Files larger than this are watched by their stamp alone (a change to one cannot be put back).
MAX_KEPT_BYTES = 1024 * 1024
#: Folders inside the guarded ones that are not walked.
_SKIPPED_FOLDERS = frozenset({"__pycache__", ".git"})
#: Skipped folders still watched themselves (not what they hold): a `.git` made in an agent's
#: folder would turn it into another repository, which the data repository no longer commits.
_WATCHED_UNWALKED = frozenset({".git"})
#: Guarded files of the data directory (beside the folders below). `.git/commondir` names the
#: folder git reads the configuration, hooks and `info/` from instead of `.git/`.
_DATA_FILES = (
    ".gitignore",
    ".gitattributes",
    ".gitmodules",
    ".git/config",
    ".git/commondir",
    "duragent.yaml",
)
#: The data repository's git folder, watched itself (only the parts above are walked).
_GIT_DIR = ".git"
#: Guarded folders of the data directory, walked whole. (`agents` beside the guard's own agents
#: folder: an agent deployed over the admin API, in `sys/`, reaches the static agents too.)
_DATA_FOLDERS = ("agents", "skills", "tools", "sys", ".git/hooks", ".git/info")


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
_NO_ENTRY = _Entry("none", (0, 0, 0, 0, 0))
T = TypeVar("T")


class GuardedFiles:
    """The guarded files of one data directory and its agents folder, with their contents cached.

    The plain methods are for one thread at a time; the runtime calls the async ones
    (`begin_batch`, `end_batch`, `keep`), which run them in order in the guard's worker thread.
    """

    def __init__(self, data_dir: Path, agents_dir: Path):
        self.data_dir = data_dir
        self.agents_dir = agents_dir
        #: Runs every walk and every change to the state below, one at a time (made on first use;
        #: its idle thread ends when this object is collected).
        self._worker: ThreadPoolExecutor | None = None
        #: By path as the walk spells it: its Path and what it held, kept while its stamp holds
        #: (so a walk of an unchanged workspace makes no new objects to keep, and reads nothing).
        self._cache: dict[str, tuple[Path, _Entry]] = {}
        #: Snapshots of batches running now, by id: a change the runtime makes for a person
        #: meanwhile ("allow always", a call a person approved in another session) is taken into
        #: them, so it is not undone as theirs.
        self._open: dict[int, Snapshot] = {}
        #: What `accept` took in while a snapshot of `open` was being taken (None: gone).
        self._accepted_since: dict[int, dict[Path, _Entry | None]] = {}

    async def begin_batch(self) -> Snapshot:
        """`open`, in the worker thread: the snapshot a batch of unasked calls starts from."""
        return await self._in_worker(self.open, abandoned=self._close_abandoned)

    async def end_batch(
        self, before: Snapshot, *, undo: bool, then: Callable[[list[Path]], None] | None = None
    ) -> list[Path]:
        """`finish`, in the worker thread: what the batch that started at `before` changed.

        It runs to its end even when the caller is cancelled meanwhile (a turn cancelled while
        its calls ran): what they changed is still undone, and `then(changed)` still runs on the
        loop (what a person approved must still be reported as the agent's change).
        """
        changed = await self._in_worker(self.finish, before, undo=undo, abandoned=then)
        if then is not None:
            then(changed)
        return changed

    async def keep(self, change: Callable[[], Path], *, then: Callable[[Path], None]) -> Path:
        """Make a person's change (`change` writes one guarded file and returns it) between two
        walks, in the worker thread, and take it into every open snapshot: never undone.

        `then(path)` runs on the loop once the change is made, also when the caller was cancelled
        meanwhile (the change is made all the same, so it must still be reported)."""
        path = await self._in_worker(self._kept, change, abandoned=then)
        then(path)
        return path

    def open(self) -> Snapshot:
        """A snapshot of now, kept up to date with `accept` until `close`.

        (Registered before it is taken: what `accept` takes in while the walk runs is written over
        the walk's own entries once it ends, so a person's change is never lost.)
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

    def finish(self, before: Snapshot, *, undo: bool) -> list[Path]:
        """Close `before` and return what changed since: put back as it was (`undo`: nobody
        approved the batch) or taken into the other open snapshots (a person approved it)."""
        self.close(before)
        moved_back = self._put_back_git_dir(before) if undo else []
        after = self.snapshot()
        changed = self.changed(before, after)
        if changed and undo:
            self.restore(before, after, changed)
        elif changed:
            self.accept(changed)  # a batch nobody approved, running beside this one, keeps them
        return sorted({*moved_back, *changed})

    def accept(self, paths: Iterable[Path]) -> None:
        """Take `paths` as they are now into every open snapshot (a change a person approved)."""
        paths = list(paths)
        recent = _recent()
        for key, taken in list(self._open.items()):
            meanwhile = self._accepted_since.get(key)  # (a snapshot being taken meanwhile)
            for path in paths:
                try:
                    entry: _Entry | None = self._entry(os.fspath(path), os.lstat(path), recent)[1]
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
        paths = [self.agents_dir, data / _GIT_DIR, *(data / name for name in _DATA_FOLDERS)]
        paths += [data / name for name in _DATA_FILES]
        paths.append(data.parent / "duragent.yaml")
        return list(dict.fromkeys(paths))

    def snapshot(self) -> Snapshot:
        """What every guarded path holds now."""
        entries: Snapshot = {}
        seen: set[str] = set()
        unlisted: list[Path] = []
        recent = _recent()
        for text, status in _walk(self.roots(), unlisted):
            path, entry = self._entry(text, status, recent)
            entries[path] = entry
            seen.add(text)
        for path in unlisted:
            if path in entries:
                entries[path] = _Entry("unlisted", entries[path].stamp)
        # (contents of files gone since are not kept: the cache holds what exists now)
        for gone in self._cache.keys() - seen:
            del self._cache[gone]
        return entries

    def changed(self, before: Snapshot, after: Snapshot) -> list[Path]:
        """The paths whose content, kind or permissions differ between two snapshots."""
        found = [path for path in after if path not in before]
        for path, was in before.items():
            now = after.get(path)
            # (an entry kept from the cache is the very same object: nothing to compare)
            if now is not was and (now is None or not was.same_as(now)):
                found.append(path)
        return sorted(found)

    def restore(self, before: Snapshot, after: Snapshot, changed: Iterable[Path]) -> list[Path]:
        """Put the `changed` paths back as `before` had them; returns those that could not be."""
        failed: list[Path] = []
        # What a folder that could not be listed before held is unknown: nothing in it is removed.
        unlisted = [path for path, entry in before.items() if entry.kind == "unlisted"]
        changed = [
            path for path in changed if not any(path.is_relative_to(u) and path != u for u in unlisted)
        ]
        git_dir = self.data_dir / _GIT_DIR
        now_git = after.get(git_dir)
        if (
            git_dir in changed
            and before.get(git_dir, _NO_ENTRY).kind == "dir"
            and (now_git is None or now_git.kind not in ("dir", "unlisted"))
        ):
            # still not the repository it was (`_put_back_git_dir` found none to move back): an
            # empty folder made in its place would be a broken repository, whose files nothing
            # restores; left as it is, commits refuse it (`GitRepo.check_own_git_dir`)
            changed = [path for path in changed if not path.is_relative_to(git_dir)]
            failed.append(git_dir)
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
            self._cache.pop(os.fspath(path), None)
        return failed

    def _put_back_git_dir(self, before: Snapshot) -> list[Path]:
        """Move the data repository's `.git` folder back when the batch replaced it by a symlink
        or a gitfile naming it (moved elsewhere); `[.git]` when it was replaced, else `[]`."""
        git_dir = self.data_dir / _GIT_DIR
        was = before.get(git_dir)
        if was is None or was.kind != "dir":
            return []
        try:
            now = os.lstat(git_dir)
        except FileNotFoundError:
            now = None
        if now is not None and stat.S_ISDIR(now.st_mode):
            # a folder still (what changed in its guarded files is put back as for any file)
            return []
        moved_to = _named_git_dir(git_dir)
        try:
            if moved_to is None or os.lstat(moved_to).st_ino != was.stamp[1]:
                raise OSError(f"the folder it was is not where it now leads ({moved_to or 'nowhere'})")
            if now is not None:
                git_dir.unlink()
            os.rename(moved_to, git_dir)
        except OSError as exc:
            log.error(
                "a tool call replaced the data repository's %s and it could not be moved back: %s; "
                "the server commits nothing until that repository is back in its place",
                git_dir,
                exc,
            )
            return [git_dir]
        log.warning(
            "a tool call replaced the data repository's %s (moved to %s): moved it back", git_dir, moved_to
        )
        self._cache.pop(os.fspath(git_dir), None)
        return [git_dir]

    def _kept(self, change: Callable[[], Path]) -> Path:
        path = change()
        self.accept([path])
        return path

    async def _in_worker(
        self,
        function: Callable[..., T],
        *args: Any,
        abandoned: Callable[[T], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """`function(*args, **kwargs)` in the worker thread, after what was asked for before it.

        Once asked for it always runs to its end: a cancelled caller stops waiting, not the job
        (`abandoned` then gets its result, and an error is logged).
        """
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guarded-files")
        job = asyncio.wrap_future(self._worker.submit(function, *args, **kwargs))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(lambda done: _after_abandoned(done, abandoned))
            raise

    def _close_abandoned(self, taken: Snapshot) -> None:
        """Close a snapshot whose batch was cancelled while it was taken (in the worker: the
        open snapshots are its own)."""
        assert self._worker is not None
        self._worker.submit(self.close, taken)

    def _entry(self, text: str, status: os.stat_result, recent: int) -> tuple[Path, _Entry]:
        """The path `text` and what it holds, from the cache while its stamp is unchanged and older
        than `recent` (a stamp younger than a filesystem tick may hide a same-size rewrite: it is
        read again then, `file_stamps.settled`)."""
        current: Stamp = (
            status.st_mode,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        known = self._cache.get(text)
        if known is not None and known[1].stamp == current and max(current[3], current[4]) < recent:
            return known
        path = known[0] if known is not None else Path(text)
        entry = _read_entry(text, status.st_mode, current)
        self._cache[text] = (path, entry)
        return path, entry


def _read_entry(path: str, mode: int, current: Stamp) -> _Entry:
    """What `path` holds now: a folder, a symlink's target or a file's bytes (None when too large)."""
    if stat.S_ISDIR(mode):
        return _Entry("dir", current)
    if stat.S_ISLNK(mode):
        try:
            return _Entry("link", current, target=os.readlink(path))
        except OSError:
            return _Entry("link", current)
    content: bytes | None = None
    if current[2] <= MAX_KEPT_BYTES:
        try:
            with open(path, "rb") as handle:
                content = handle.read(MAX_KEPT_BYTES + 1)
        except OSError:
            content = None
    return _Entry("file", current, content=content)


def _named_git_dir(dot_git: Path) -> Path | None:
    """Where a `.git` symlink or gitfile (`gitdir: <path>`) leads, None for anything else."""
    if dot_git.is_symlink():
        return dot_git.resolve()
    try:
        first = dot_git.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    except OSError:  # (a folder, or gone)
        return None
    if not first.startswith("gitdir:"):
        return None
    return (dot_git.parent / first.removeprefix("gitdir:").strip()).resolve()


def _recent() -> int:
    """Stamps changed at or after this time (ns) are not trusted to show the next change."""
    return time.time_ns() - SETTLE_NS


def _walk(roots: Iterable[Path], unlisted: list[Path]) -> Iterator[tuple[str, os.stat_result]]:
    """Every file, symlink and folder under `roots` (a root may be a file), symlinks not followed,
    by path; the folders that could not be listed are added to `unlisted`."""
    for root in map(os.fspath, roots):
        try:
            status = os.lstat(root)
        except OSError:
            continue  # absent: its creation shows in the next snapshot
        yield root, status
        if not stat.S_ISDIR(status.st_mode) or os.path.basename(root) in _WATCHED_UNWALKED:
            continue

        def note(error: OSError) -> None:
            if error.filename:
                unlisted.append(Path(error.filename))

        for folder, dirs, files in os.walk(root, onerror=note, followlinks=False):
            watched = [name for name in dirs if name in _WATCHED_UNWALKED]
            dirs[:] = [name for name in dirs if name not in _SKIPPED_FOLDERS]
            for name in [*dirs, *watched, *files]:
                path = os.path.join(folder, name)
                try:
                    yield path, os.lstat(path)
                except OSError:
                    continue


def _after_abandoned(job: asyncio.Future[T], abandoned: Callable[[T], None] | None) -> None:
    """What a job nobody waits for any more leaves: its result handed on, its error logged."""
    if job.cancelled():
        return
    error = job.exception()
    if error is not None:
        log.error("guarded files: a job whose caller was cancelled failed", exc_info=error)
    elif abandoned is not None:
        abandoned(job.result())


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
