"""GitRepo: the one owner of every git operation on the data repository.

It drives the `git` command line through subprocess rather than gitpython: the plumbing
commands used here (a private index file, `commit-tree`, a compare-and-swap `update-ref`)
are what make committing beside a person safe. A commit of a few hundred files runs eight
short processes, each given every path at once on stdin: stage (`update-index --stdin`), a
diff that lists the changes, one whose added lines the secret screen reads as git writes them
(a long session's batch is megabytes of diff), `write-tree`, `commit-tree`, `update-ref`, and
two writes of the person's index (`--index-info`, then `--refresh`, which `git reset` would
have done in one slower process).

How `commit_paths` stays out of a person's way:
- it stages into a private index, kept from one commit to the next and read from HEAD again
  whenever HEAD moved under it, so their staged and unstaged work is neither committed nor
  touched;
- it waits while `.git/index.lock` is held (someone is running git) and refuses to commit
  during a merge, rebase, cherry-pick or revert;
- HEAD moves with a compare-and-swap, so a commit the person made meanwhile is never
  overwritten: the commit is rebuilt on top of theirs;
- it never resets, amends or rewrites history.

How a kill at any moment leaves the person's index agreeing with HEAD: moving HEAD and then
writing the person's index are two steps, so before HEAD moves the files to write are noted in
`.git/duragent-unsynced` (with the commit HEAD moves to), removed once the index is written;
the next commit (by any process) writes what a note left over names first, if HEAD did reach
that commit. Every commit holds an flock on `.git/duragent-commit.lock` that its git commands
inherit: a git command still running after the Duragent process that started it was killed (it
may write HEAD or the index late) keeps it held, so the next commit waits for it instead of
having its index entries overwritten by older ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import itertools
import logging
import os
import re
import stat
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from duragent.errors import DuragentError, NotFound
from duragent.private_data_dir import make_data_dir

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "Duragent <duragent@localhost>"
#: How long a held index.lock (someone else's git command) is waited for before giving up.
DEFAULT_LOCK_TIMEOUT = 10.0

#: Decides whether a staged file may be committed, given its repo-relative path and the text
#: it adds (added lines of its staged diff). Returning False leaves the file out of the commit.
ContentScreen = Callable[[str, str], bool]
#: A commit message, or a function building it from the repo-relative files actually committed.
CommitMessage = str | Callable[[Sequence[str]], str]

_T = TypeVar("_T")

# Run with these so a person's configuration cannot prompt, sign, run a filesystem monitor or
# quote paths in the output we parse; and so no hook runs: git runs hooks (`post-index-change`,
# `reference-transaction`) for the plumbing we use too, with the server's whole environment (its
# API keys), and a hook is a program anyone who could write into `.git/` chose. Nor does the
# history run `gpg.program` (`log.showSignature` verifies every signed commit `log` and `show`
# print, whatever the format); diffs that print a patch pass `--no-ext-diff --no-textconv`.
_GIT_FLAGS = (
    "-c",
    "core.quotepath=false",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "log.showSignature=false",
    "-c",
    f"core.hooksPath={os.devnull}",
    "-c",
    "core.safecrlf=false",
    "-c",
    "advice.addIgnoredFile=false",
)
#: What Duragent's git keeps of the person's global and system configuration: which files they
#: never commit, which repositories they trust (`safe.directory`, for a data directory owned by
#: another user) and their branch name for new repositories; who they are is read apart
#: (`GitRepo.person_config`) and given to git explicitly. Nothing else is read: a filter, a
#: textconv or external diff, a signing program or an fsmonitor set there would run inside the
#: server, with its whole environment (its API keys), when it commits; and a global
#: configuration is a file any tool the person allows (`git config --global`) can write.
_PERSON_SETTINGS = ("core.excludesfile", "safe.directory", "init.defaultbranch")
# Inherited from a git hook or a parent git process, these would point us at another repository.
_GIT_LOCATION_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX")
_LOCK_CONFLICT = re.compile(r"index\.lock': File exists|Unable to create .*\.lock|cannot lock ref")
_IN_PROGRESS = {
    "MERGE_HEAD": "a merge",
    "rebase-merge": "a rebase",
    "rebase-apply": "a rebase",
    "CHERRY_PICK_HEAD": "a cherry-pick",
    "REVERT_HEAD": "a revert",
}
#: The sha of git's empty tree: the "before" of a repository's first commit.
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_IDENTITY = re.compile(r"\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>\s*")
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class GitError(DuragentError):
    """A git command failed; carries the command and what git said."""

    def __init__(self, message: str, command: Sequence[str] = (), stderr: str = ""):
        super().__init__(f"{message}: {stderr.strip()}" if stderr.strip() else message)
        self.command = list(command)
        self.stderr = stderr


class NotARepository(NotFound):
    """The folder is not the top of a git working tree."""


class UnknownRevision(NotFound):
    """A revision that names no commit of the repository."""


class RepoLocked(GitError):
    """Another git process held the repository longer than we were willing to wait."""


class RepoBusy(GitError):
    """A merge, rebase, cherry-pick or revert is in progress, or HEAD is detached; commits wait."""


class NotOwnGitDir(GitError):
    """The data directory's `.git` no longer leads to the repository opened: commits wait."""


class InvalidIdentity(DuragentError):
    """An author string that is not `Name <email>`."""

    exit_code = 2


@dataclass(frozen=True)
class Identity:
    """A git identity: a name and an email address."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


def parse_identity(text: str) -> Identity:
    """Parse `Name <email>` (or a bare `email@host`) into an Identity; InvalidIdentity otherwise."""
    match = _IDENTITY.fullmatch(text)
    if match and match["email"].strip():
        email = match["email"].strip()
        return Identity(match["name"] or email.split("@")[0], email)
    bare = text.strip()
    if bare and "@" in bare and not any(c in bare for c in " <>"):
        return Identity(bare.split("@")[0], bare)
    raise InvalidIdentity(f"invalid git identity {text!r}: expected `Name <email>`")


@dataclass(frozen=True)
class Written:
    """Bytes a store wrote to a file, to commit instead of what the file holds by then, with the
    versions of the file they were written over, so a commit made since is noticed.

    `replaced`: the bytes of earlier versions the writes replaced, as their writer knew them;
    `heads_then`: the commits HEAD was on when they were written. Both empty: nothing is known of
    what the writes replaced, and the bytes are committed whatever HEAD holds.
    """

    data: bytes
    replaced: tuple[bytes, ...] = ()
    heads_then: tuple[str, ...] = ()


#: The flock every commit holds, with the git commands it runs (they inherit it), in the git folder.
INDEX_WRITER_LOCK = "duragent-commit.lock"
#: The files of a commit whose entries in the person's index may not be written yet.
PENDING_SYNC = "duragent-unsynced"
#: The note's first record: the commit HEAD is about to move to.
_NOTE_COMMIT = "commit "

#: A git lock file older than this is left over from a crashed git process, not a running one.
STALE_LOCK_SECONDS = 60.0


@dataclass(frozen=True)
class StaleLock:
    """A lock file a killed git command left behind: it blocks every commit until removed."""

    path: Path
    age: float

    @property
    def problem(self) -> str:
        return f"{self.path} is {int(self.age // 60)} min old and blocks every commit"

    @property
    def hint(self) -> str:
        return f"if no git command is running: rm {self.path}"

    def __str__(self) -> str:
        return f"{self.problem}; {self.hint}"


def stale_git_lock(git_dir: Path, older_than: float = STALE_LOCK_SECONDS) -> StaleLock | None:
    """The oldest lock file under `git_dir` that a commit needs (the index, HEAD, a branch, the
    packed refs) when it is older than `older_than` seconds, else None.

    git removes its lock when it ends; one that old was left by a git process that crashed or
    was killed (a `kill -9` mid-commit leaves `index.lock` or `refs/heads/<branch>.lock`).
    """
    candidates = [git_dir / "index.lock", git_dir / "HEAD.lock", git_dir / "packed-refs.lock"]
    for folder, _dirs, files in os.walk(git_dir / "refs" / "heads"):
        candidates += [Path(folder) / name for name in files if name.endswith(".lock")]
    now = time.time()
    oldest: StaleLock | None = None
    for lock in candidates:
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:
            continue
        if age > older_than and (oldest is None or age > oldest.age):
            oldest = StaleLock(lock, age)
    return oldest


def merge_texts(ours: str, base: str, theirs: str, *, union: bool = False) -> tuple[str, bool]:
    """Three-way merge of texts (`git merge-file`, no repository needed): the result and whether
    it has conflicts. `union`: where both sides changed the same lines, keep both (no conflict)."""
    with tempfile.TemporaryDirectory(prefix="duragent-merge-") as folder:
        files = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            files.append(str(path))
        done = subprocess.run(
            ["git", *_GIT_FLAGS, "merge-file", "-p", *(["--union"] if union else []), *files],
            cwd=folder,
            env=_git_env(),
            capture_output=True,
            check=False,
        )
    if done.returncode < 0 or done.returncode > 127:
        raise GitError("git merge-file failed", ["merge-file"], done.stderr.decode(errors="replace"))
    return done.stdout.decode("utf-8", errors="replace"), done.returncode != 0


@dataclass(frozen=True)
class GitObject:
    """An object a commit's path names: its type (`blob`, `tree`), id and size in bytes."""

    kind: str
    name: str
    size: int


class GitRepo:
    """A git working tree whose top folder is `root` (Duragent's data directory)."""

    def __init__(
        self,
        root: Path,
        git_dir: Path,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        git_dir_id: tuple[int, int] | None = None,
    ):
        """`git_dir_id`: the git folder's (device, inode) when the repository was opened (read
        now when not given): a `.git` that leads to another folder later is refused."""
        self.root = root
        self.git_dir = git_dir
        self.git_dir_id = git_dir_id if git_dir_id is not None else _folder_id(git_dir)
        self._root_prefix = os.path.join(os.fspath(root), "")
        self.lock_timeout = lock_timeout
        # two committers in one process must not interleave their HEAD updates (reentrant: a
        # commit made inside `holding_commits` takes it again)
        self._commit_lock = threading.RLock()
        self._staging_index: _StagingIndex | None = None
        #: `fd`: the index writer lock's descriptor, set in the committing thread only, so
        #: only the git commands that thread runs inherit the lock.
        self._writer = threading.local()

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open_or_init(
        cls, path: Path, *, create: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> GitRepo:
        """Open the repository whose top folder is `path`, creating folder and repo if `create`."""
        path = path.expanduser().absolute()
        git_dir = _own_git_dir(path)
        if git_dir is None:
            if not create:
                raise NotARepository(f"{path} is not a git repository (its own top folder)")
            make_data_dir(path)
            _run_git(path, ["init", "--quiet", "--initial-branch=main"])
            log.info("created git repository %s", path)
            git_dir = Path(_run_git(path, ["rev-parse", "--absolute-git-dir"]).strip())
        return cls(path, git_dir, lock_timeout=lock_timeout)

    @staticmethod
    def is_repo(path: Path) -> bool:
        """True when `path` is the top folder of a git working tree (not merely inside one)."""
        return _own_git_dir(path) is not None

    # --- reading ---------------------------------------------------------------------------

    def head(self) -> str | None:
        """The sha HEAD points at, or None in a repository without commits."""
        out = self._git(["rev-parse", "--verify", "--quiet", "HEAD"], check=False)
        return out.strip() or None

    def head_from_refs(self) -> str | None:
        """The sha HEAD points at, read from the files git keeps it in, without running git.

        For the committer noting, as a store writes, which commit the write was made on: a
        store must not wait for a git process. None when HEAD has no commit yet or is kept in a
        way this does not read (a reftable repository): the write's base is then unknown.
        """
        try:
            head = (self.git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not head.startswith("ref:"):
            return head if _OBJECT_ID.fullmatch(head) else None
        ref = head.removeprefix("ref:").strip()
        common = self.git_dir
        with contextlib.suppress(OSError, UnicodeDecodeError):  # a linked worktree's refs are shared
            common = (
                self.git_dir / (self.git_dir / "commondir").read_text(encoding="utf-8").strip()
            ).resolve()
        try:
            loose = (common / ref).read_text(encoding="utf-8").strip()
            return loose if _OBJECT_ID.fullmatch(loose) else None
        except FileNotFoundError:
            pass  # packed (git writes packed-refs before removing a loose ref: no gap between them)
        except (OSError, UnicodeDecodeError):
            return None
        try:
            packed = (common / "packed-refs").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        for line in packed.splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _OBJECT_ID.fullmatch(sha):
                return sha
        return None

    def relative(self, path: Path) -> str:
        """`path` (absolute or relative to the root) as a repo-relative POSIX path; ValueError outside."""
        # the common case in plain string operations: a commit of many sessions asks this for
        # thousands of paths, on the committer's thread, which shares the GIL with the server
        text = os.path.normpath(os.path.join(self._root_prefix, path))
        if os.sep == "/" and text.startswith(self._root_prefix):
            relative_text = text[len(self._root_prefix) :]
            if relative_text.partition("/")[0] != ".git":
                return relative_text
        absolute = Path(os.path.normpath(path if path.is_absolute() else self.root / path))
        try:
            relative = absolute.relative_to(self.root)
        except ValueError:
            # the same folder reached through a symlink (/tmp vs /private/tmp); the file itself
            # is not resolved, a symlink inside the repository is committed as a symlink
            relative = (absolute.parent.resolve() / absolute.name).relative_to(self.root.resolve())
        if relative.parts[:1] == (".git",) or str(relative) == ".":
            raise ValueError(f"{path} is not a file of the working tree")
        return relative.as_posix()

    def changed_paths(self, under: Sequence[Path] = ()) -> list[str]:
        """Repo-relative files that differ from HEAD (modified, new, deleted), ignoring .gitignore'd ones."""
        args = ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--"]
        out = self._git([*args, *(self.relative(p) for p in under)])
        entries = [entry for entry in out.split("\0") if entry]
        return [entry[3:] for entry in entries]

    def resolve(self, rev: str) -> str:
        """The full sha of the commit `rev` names (a sha, `HEAD~2`, a branch); UnknownRevision otherwise."""
        if not rev or rev.startswith("-"):
            raise UnknownRevision(f"unknown revision {rev!r}")
        out = self._git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], check=False
        )
        if not out.strip():
            raise UnknownRevision(f"unknown revision {rev!r}: not a commit of {self.root}")
        return out.strip()

    def parents(self, rev: str) -> list[str]:
        """The parent shas of a commit (none for the first commit)."""
        out = self._git(["rev-list", "--parents", "-n", "1", self.resolve(rev)])
        return out.split()[1:]

    def commit_files(self, rev: str) -> list[tuple[str, str]]:
        """(status letter, repo-relative path) of every file a commit changed (against its first parent)."""
        sha = self.resolve(rev)
        out = self._git(
            ["diff-tree", "--root", "-r", "-z", "--no-renames", "--no-commit-id", "--name-status", sha]
        )
        tokens = [token for token in out.split("\0") if token]
        return list(zip(tokens[0::2], tokens[1::2], strict=True))

    def diff_files(
        self, old: str | None, new: str | None, paths: Sequence[str] = ()
    ) -> list[tuple[str, str]]:
        """(status, path) of files differing between two commits; `new` None is the working tree.

        `old` None compares against the empty tree (everything is added).
        """
        base = self.resolve(old) if old is not None else _EMPTY_TREE
        args = ["diff", "-z", "--no-renames", "--name-status", base]
        if new is not None:
            args.append(self.resolve(new))
        out = self._git([*args, "--", *paths])
        tokens = [token for token in out.split("\0") if token]
        changed = list(zip(tokens[0::2], tokens[1::2], strict=True))
        if new is None:
            # `git diff` leaves out new files nobody has added; a person's new memory file counts
            untracked = self._git(["ls-files", "-z", "--others", "--exclude-standard", "--", *paths])
            changed += [("A", path) for path in untracked.split("\0") if path]
        return changed

    def patch(self, old: str | None, new: str | None, paths: Sequence[str] = ()) -> str:
        """The unified diff between two commits (`new` None: the working tree), as git prints it."""
        base = self.resolve(old) if old is not None else _EMPTY_TREE
        # (a diff or textconv driver the repository's configuration names would run a program)
        args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", base]
        if new is not None:
            args.append(self.resolve(new))
        return self._git([*args, "--", *paths])

    def file_at(self, rev: str, path: str) -> str | None:
        """The text of `path` in commit `rev` (for showing: bytes that are not UTF-8 replaced),
        or None when the commit has no such file."""
        data = self.bytes_at(rev, path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def objects_at(self, specs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], GitObject]:
        """What each (commit, path) names, from one `cat-file`; a pair naming nothing (no such
        file, no such commit) is left out, and so is a path holding a newline (it cannot be asked)."""
        asked = list(dict.fromkeys((rev, path) for rev, path in specs if "\n" not in path))
        if not asked:
            return {}
        out = self._git(
            ["cat-file", "--batch-check=%(objecttype) %(objectname) %(objectsize)"],
            input="".join(f"{rev}:{path}\n" for rev, path in asked),
        )
        found: dict[tuple[str, str], GitObject] = {}
        for spec, line in zip(asked, out.splitlines(), strict=True):
            if not line.endswith((" missing", " ambiguous")):
                kind, name, size = line.split(" ")
                found[spec] = GitObject(kind, name, int(size))
        return found

    def bytes_at(self, rev: str, path: str) -> bytes | None:
        """The bytes of `path` in commit `rev`, or None when the commit has no such file."""
        sha = self.resolve(rev)
        out = subprocess.run(
            ["git", *_GIT_FLAGS, "cat-file", "blob", f"{sha}:{path}"],
            cwd=self.root,
            env=_git_env(),
            capture_output=True,
            check=False,
        )
        return out.stdout if out.returncode == 0 else None

    def added_since(self, commit: str | None, path: str) -> str:
        """The lines the working tree's `path` adds to its version in `commit` (the whole file
        when it has none, or there is no commit), as the committers' secret screen reads a
        commit's diff: `git diff -U0 --text`, lines ending at "\n" only."""
        if commit is None or (commit, path) not in self.objects_at([(commit, path)]):
            return (self.root / path).read_bytes().decode("utf-8", errors="replace")
        args = ["diff", "-U0", "--text", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames"]
        added = _run_git_lines(self.root, [*args, commit, "--", path], _added_lines_by_file, env=_git_env())
        return "\n".join(added)

    def merge_text(self, ours: str, base: str, theirs: str) -> tuple[str, bool]:
        """Three-way merge of texts (`git merge-file`): the result and whether it has conflicts."""
        return merge_texts(ours, base, theirs)

    def gc(self) -> None:
        """Compact the repository (`git gc`, unreachable objects pruned now).

        Holding the commit lock, as a commit does: a commit being built (by a server, in another
        process) has written objects no ref reaches yet, which `--prune=now` would delete.
        """
        deadline = time.monotonic() + self.lock_timeout
        with self._commit_lock, self._index_writer(deadline):
            self._git(["gc", "--quiet", "--prune=now"])

    def person_identity(self) -> Identity:
        """The person at the keyboard: git's user.name/user.email here, else `$USER <$USER@localhost>`."""
        name, email = self.person_config()
        if name and email:
            return Identity(name, email)
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or "person"
        return Identity(name or user, email or f"{user}@localhost")

    def stream(self, args: Sequence[str]) -> Generator[str, None, None]:
        """Run a read-only git command and yield its output in chunks; closing the iterator stops git."""
        self.check_own_git_dir()
        # stderr goes to a file: a pipe nobody reads while stdout streams could fill and stall git
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
            process = subprocess.Popen(
                ["git", *_GIT_FLAGS, *args],
                cwd=self.root,
                env=_git_env(),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
            stdout = process.stdout
            assert stdout is not None
            finished = False
            try:
                while chunk := stdout.read(65536):
                    yield chunk
                finished = True
            finally:
                if not finished:
                    process.kill()
                stdout.close()
                code = process.wait()
            if code != 0 and finished:
                stderr.seek(0)
                raise GitError(f"git {args[0]} failed in {self.root}", args, stderr.read())

    # --- committing ------------------------------------------------------------------------

    def commit_paths(
        self,
        paths: Sequence[Path],
        message: CommitMessage,
        author: str = DEFAULT_AUTHOR,
        *,
        screen: ContentScreen | None = None,
        contents: Mapping[Path, Written] | None = None,
        appended: Mapping[Path, int] | None = None,
    ) -> str | None:
        """Commit exactly `paths` (files or folders, deletions included) as they are on disk now.

        `appended` gives, for append-only logs among them, where their last append this commit
        is for ended: a log holding more by the time git read it (another author's lines, whose
        change is committed next, by them) is committed up to there.

        `contents` gives the bytes to commit for some of the files instead of what is on disk
        (the bytes a store wrote, before a person appended to the file). They are committed only
        while HEAD still holds a version they were written over, or the file still holds them: a
        file a commit changed since they were written (a person's `duragent memory edit` in
        another process) and changed again on disk is left out, for whoever changed it to commit.
        Nothing else is staged or committed, whatever the person has staged or changed. Returns
        the new commit's sha, or None when those paths match HEAD already. Raises RepoLocked when
        index.lock stays held for `lock_timeout` seconds, RepoBusy during a merge or rebase,
        NotOwnGitDir when the root's `.git` leads elsewhere than `git_dir`.
        """
        identity = parse_identity(author)
        relative = list(dict.fromkeys(self.relative(p) for p in paths))
        if not relative:
            return None
        given = {self.relative(path): written for path, written in (contents or {}).items()}
        ends = {self.relative(path): size for path, size in (appended or {}).items()}
        deadline = time.monotonic() + self.lock_timeout
        self.check_own_git_dir()  # (before the lock file: a repository moved away has none)
        with self._commit_lock, self._index_writer(deadline):
            # during a merge or rebase even the interrupted sync waits: `git reset` of those
            # paths would drop the person's conflict entries or staged resolution
            self._check_not_busy()
            self._finish_interrupted_sync(deadline)
            while True:
                self._wait_for_index_lock(deadline)
                self._check_not_busy()
                try:
                    made = self._staging.commit(identity, relative, message, screen, given, ends)
                except _HeadMoved:
                    log.debug("HEAD moved while committing in %s; rebuilding on top", self.root)
                    self._sleep_before_retry(deadline, "HEAD kept moving")
                    continue
                if made is None:
                    self._repair_index(relative, deadline)
                    return None
                self._sync_index(made, deadline)
                return made.sha

    @contextlib.contextmanager
    def holding_commits(self) -> Iterator[None]:
        """Keep every other commit to this repository waiting (other threads', other processes')
        while the caller changes files and commits them itself.

        For a person's command that changes watched files (`duragent skill add|remove`): a
        running server's edit watcher sees the change, waits here, and then finds it committed
        already, under the command's own message, instead of committing it as a bare edit.
        Raises RepoLocked when another commit holds the lock for `lock_timeout` seconds.
        """
        deadline = time.monotonic() + self.lock_timeout
        self.check_own_git_dir()
        with self._commit_lock, self._index_writer(deadline):
            yield

    @contextlib.contextmanager
    def _index_writer(self, deadline: float) -> Iterator[None]:
        """Hold the index writer lock (waiting for whoever holds it, until `deadline`); a thread
        that holds it already (`holding_commits`) keeps it."""
        if getattr(self._writer, "fd", None) is not None:
            yield
            return
        fd = os.open(self.git_dir / INDEX_WRITER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RepoLocked(
                            f"{self.git_dir / INDEX_WRITER_LOCK} has been held for {self.lock_timeout:g} s "
                            "by another Duragent commit (or a git command it started)"
                        ) from None
                    time.sleep(0.02)
            self._writer.fd = fd
            yield
        finally:
            self._writer.fd = None
            os.close(fd)

    def _note_pending_sync(self, sha: str, paths: Sequence[str]) -> None:
        """Before HEAD moves to `sha`: the files whose entries in the person's index must follow it.

        No other note exists here: a commit starts only once an earlier note has been handled
        (`_finish_interrupted_sync`), so replacing it loses no path.
        """
        note = self.git_dir / PENDING_SYNC
        partial = note.with_name(note.name + ".new")
        partial.write_text(_nul([_NOTE_COMMIT + sha, *paths]), encoding="utf-8")
        os.replace(partial, note)  # whole or absent: a torn list could name a folder

    def _forget_pending_sync(self) -> None:
        """HEAD did not move after all: the noted files were not committed, their entries stay."""
        (self.git_dir / PENDING_SYNC).unlink(missing_ok=True)

    def _finish_interrupted_sync(self, deadline: float) -> None:
        """Write the person's index entries a commit killed after moving HEAD left unwritten.

        Raises RepoLocked when they could not be written: a commit going ahead would replace the
        note, and those files would stay stale in the person's index for good.
        """
        note = self.git_dir / PENDING_SYNC
        try:
            paths = [path for path in note.read_text(encoding="utf-8").split("\0") if path]
        except FileNotFoundError:
            return
        head = self.head()
        if paths and paths[0].startswith(_NOTE_COMMIT):
            sha = paths.pop(0).removeprefix(_NOTE_COMMIT)
            if head and not self._is_ancestor(sha, head):
                # killed before HEAD moved: those files were never committed, and what the
                # person staged of them is theirs
                paths = []
        if head and paths:
            log.info("writing the index entries of %d file(s) an interrupted commit left", len(paths))
            command = ["reset", "--quiet", head, "--pathspec-from-file=-", "--pathspec-file-nul"]
            what = "the index entries an interrupted commit left"
            if not self._update_index(command, _nul(paths), what, deadline):
                # the note stays: the next commit tries again
                raise RepoLocked(f"could not write {what} in {self.root}; not committing until they are")
        note.unlink(missing_ok=True)

    def _is_ancestor(self, sha: str, head: str) -> bool:
        try:
            self._git(["merge-base", "--is-ancestor", sha, head])
        except GitError:
            return False  # exit 1: not an ancestor; 128: a commit this repository never got
        return True

    @property
    def _staging(self) -> _StagingIndex:
        if self._staging_index is None:
            self._staging_index = _StagingIndex(self)
        return self._staging_index

    def _wait_for_index_lock(self, deadline: float) -> None:
        lock = self.git_dir / "index.lock"
        delay = 0.02
        while lock.exists():
            # a killed git's lock, not a running one's: waiting for it only delays the error
            with contextlib.suppress(FileNotFoundError):
                age = time.time() - lock.stat().st_mtime
                if age > STALE_LOCK_SECONDS:
                    raise RepoLocked(str(StaleLock(lock, age)))
            if time.monotonic() >= deadline:
                raise RepoLocked(
                    f"{lock} has been held for {self.lock_timeout:g} s by another git process; "
                    "if no git command is running, delete that file"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)

    def check_own_git_dir(self) -> None:
        """NotOwnGitDir unless the root's `.git` still leads to the git folder opened.

        A `.git` replaced by a symlink or a gitfile (`gitdir: ...`) would have git commit into,
        and read the configuration, hooks and filters of, whatever folder it names: every git
        command here checks first (two `stat`s).
        """
        dot_git = self.root / ".git"
        named, what = _git_dir_named_by(dot_git)
        if named is not None:
            if self.git_dir_id is None and named == self.git_dir.resolve():
                return
            if self.git_dir_id is not None and _folder_id(named) == self.git_dir_id:
                return
        raise NotOwnGitDir(
            f"{dot_git} no longer leads to the repository the server opened: it is {what}; "
            f"running no git command in it (put that repository back at {dot_git} as it was)"
        )

    def operation_in_progress(self) -> str | None:
        """The git operation a person has under way here ("a rebase", "a merge"...), or None."""
        return next((op for marker, op in _IN_PROGRESS.items() if (self.git_dir / marker).exists()), None)

    def detached_head(self) -> str | None:
        """What to tell a person whose HEAD is on no branch (`git checkout <sha>`), else None.

        A commit made there would be left behind by their switch back to a branch, and the
        files it added deleted from disk by that switch: commits wait instead.
        """
        try:
            head = (self.git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not _OBJECT_ID.fullmatch(head):
            return None
        out = self._git(["for-each-ref", "--format=%(refname:short)", "refs/heads/"], check=False)
        branches = out.split()
        branch = branches[0] if len(branches) == 1 else "<branch>"
        return (
            f"HEAD is detached (at {head[:10]}) in {self.root}, on no branch; "
            f"switch back to one (`git -C {self.root} switch {branch}`)"
        )

    def _check_not_busy(self) -> None:
        operation = self.operation_in_progress()
        if operation is not None:
            raise RepoBusy(f"{operation} is in progress in {self.root}; commits wait until it ends")
        detached = self.detached_head()
        if detached is not None:
            raise RepoBusy(f"{detached}: commits wait until it is on a branch")

    def _sleep_before_retry(self, deadline: float, why: str) -> None:
        if time.monotonic() >= deadline:
            # a lock held through the whole wait is more likely a killed git's than a busy one's
            stale = stale_git_lock(self.git_dir, older_than=self.lock_timeout)
            if stale is not None:
                why = f"{stale.path} is held ({stale.hint})"
            raise RepoLocked(f"could not commit in {self.root} within {self.lock_timeout:g} s: {why}")
        time.sleep(0.05)

    def _repair_index(self, relative: Sequence[str], deadline: float) -> None:
        """Paths that match HEAD on disk but not in the person's index: make the index agree.

        A process killed between moving HEAD and `_sync_index` leaves them behind, shown by
        `git status` as untracked (`??` beside a staged deletion) or `MM`, and no later commit
        would touch them because there is nothing left to commit.
        """
        head = self.head()
        if not head:
            return
        out = self._git(
            ["diff-index", "--cached", "--name-only", "-z", "--no-renames", head, "--", *relative]
        )
        stale = [path for path in out.split("\0") if path]
        if stale:
            log.info("repairing the index entries of %d file(s) a crash left stale", len(stale))
            pathspec = _nul(stale)
            command = ["reset", "--quiet", head, "--pathspec-from-file=-", "--pathspec-file-nul"]
            self._update_index(command, pathspec, "the index entries a crash left stale", deadline)

    def _sync_index(self, made: _Commit, deadline: float) -> None:
        """Make the person's index agree with the new commit for the committed files only.

        Without this `git status` would show our committed files as staged reversions. The
        entries are written as they are in the commit (`--index-info`: no pathspec to match
        against every entry, no file hashed), then their stat data is refreshed as `git reset`
        would, so later status checks need not hash them again.
        """
        entries = "".join(f"{mode} {sha}\t{path}\0" for mode, sha, path in made.files)
        what = f"the index after committing {made.sha[:10]}"
        if self._update_index(["update-index", "-z", "--index-info"], entries, what, deadline):
            (self.git_dir / PENDING_SYNC).unlink(missing_ok=True)
            self._git(["update-index", "-q", "--refresh"], check=False)

    def _update_index(self, command: list[str], input: str, what: str, deadline: float) -> bool:
        """Run a command that writes the person's index, waiting out a held index.lock.

        Its input is written to a file first and git reads that file: from a pipe, a kill of
        this process between two writes would hand git a cut-off last record, which it takes
        for a path (an index entry for a file that never existed). `what` names the update in
        the warning when it fails.
        """
        with tempfile.TemporaryFile(dir=self.git_dir, prefix="duragent-input-") as stdin:
            stdin.write(input.encode("utf-8"))
            stdin.flush()
            while True:
                stdin.seek(0)
                try:
                    self._git(command, stdin=stdin)
                    return True
                except GitError as error:
                    if not _LOCK_CONFLICT.search(error.stderr) or time.monotonic() >= deadline:
                        log.warning("could not write %s: %s", what, error)
                        return False
                    time.sleep(0.05)

    def committer_env(self, identity: Identity) -> dict[str, str]:
        """Author = `identity`; committer = the person's git identity, or `identity` when there is none."""
        env = {"GIT_AUTHOR_NAME": identity.name, "GIT_AUTHOR_EMAIL": identity.email}
        name, email = self.person_config()
        if name and email:
            # (given explicitly: the git commands run without the global configuration it is in)
            env.update(GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email)
        elif not (os.environ.get("GIT_COMMITTER_NAME") and os.environ.get("GIT_COMMITTER_EMAIL")):
            env.update(GIT_COMMITTER_NAME=identity.name, GIT_COMMITTER_EMAIL=identity.email)
        return env

    def person_config(self) -> tuple[str, str]:
        """The person's `user.name` and `user.email` as git reads them here (the repository's own
        configuration over the global one); empty when unset. Read with their whole configuration:
        reading a value runs no program. Read once per version of the files it comes from: every
        commit asks, and a `git config` process is a tenth of a small commit's cost."""
        where = (
            str(self.root),
            *(os.environ.get(name, "") for name in _CONFIG_LOCATION_ENV),
            *sorted((name, value) for name, value in os.environ.items() if name.startswith("GIT_CONFIG_")),
            *_global_config_stamps(os.environ),
            *(_file_stamp(path) for path in (self.git_dir / "config", self.git_dir / "config.worktree")),
            _file_stamp(Path(os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig")),
        )
        cached = _person_config_read.get(where)
        if cached is not None and all(_file_stamp(path) == stamp for path, stamp in cached[1]):
            return cached[0]
        # Every entry with the file it came from: an included file (`[include]`, `[includeIf]`)
        # is then one of the files whose stamps keep the answer current.
        listed = _read_person_config(["-z", "--includes", "--show-origin", "--list"], self.root)
        fields = listed.split("\0")
        found: dict[str, str] = {}
        origins: set[Path] = set()
        for origin, entry in zip(fields[::2], fields[1::2], strict=False):
            if origin.startswith("file:"):
                origins.add(self.root / origin.removeprefix("file:"))
            key, _, value = entry.partition("\n")
            if key.lower() in ("user.name", "user.email"):
                found[key.lower()] = value.strip()  # (listed in precedence order: the last one wins)
        known = found.get("user.name", ""), found.get("user.email", "")
        if len(_person_config_read) >= 64:  # (a long-running server whose files keep changing)
            _person_config_read.clear()
        _person_config_read[where] = (known, tuple((path, _file_stamp(path)) for path in sorted(origins)))
        return known

    def _git(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        stdin: IO[bytes] | None = None,
    ) -> str:
        self.check_own_git_dir()
        return _run_git(
            self.root, args, check=check, input=input, env=env, stdin=stdin, pass_fds=self._held_fds()
        )

    def _held_fds(self) -> tuple[int, ...]:
        """The index writer lock's fd in the thread that commits: its git commands hold the lock too.

        Per thread: other threads' reads (the edit watcher, history) must not hold the lock, nor
        be handed a descriptor number the committing thread has closed meanwhile.
        """
        fd = getattr(self._writer, "fd", None)
        return () if fd is None else (fd,)


class _HeadMoved(Exception):
    """HEAD changed between reading it and moving it: someone committed meanwhile."""


@dataclass(frozen=True)
class _Commit:
    """A commit made: its sha and (mode, blob sha, path) of every file it changed (mode 0: deleted)."""

    sha: str
    files: list[tuple[str, str, str]]


@dataclass(frozen=True)
class _StagedChange:
    """One line of `git diff --raw`: a file's entry at the base commit and in the index."""

    path: str
    old_mode: str
    old_sha: str
    new_mode: str
    new_sha: str


_NO_SHA = "0" * 40
_STAGING_NUMBERS = itertools.count()


class _StagingIndex:
    """The private index commits are built in, kept from one commit to the next.

    Kept, it already holds the tree of the last commit made from it, with the stat data of the
    files staged into it: a commit reads neither HEAD's tree nor a file that did not change
    again, and `update-index --stdin` finds each path directly where `git add` matched every
    path against every pathspec. It is read again from HEAD whenever HEAD is not the commit it
    was built on (a person committed) or an attempt failed half-way.
    """

    def __init__(self, repo: GitRepo):
        self.repo = repo
        _remove_abandoned_indexes(repo.git_dir)
        self.index = repo.git_dir / f"duragent-index-{os.getpid()}-{next(_STAGING_NUMBERS)}"
        self.env = {"GIT_INDEX_FILE": str(self.index)}
        #: Whether the index holds exactly the tree of `base` (None: the empty tree).
        self.valid = False
        self.base: str | None = None
        #: Files staged into the index since it was read: known to git, so not ignored.
        self.tracked: set[str] = set()
        weakref.finalize(self, _remove_index_files, self.index)

    def commit(
        self,
        identity: Identity,
        relative: list[str],
        message: CommitMessage,
        screen: ContentScreen | None,
        contents: Mapping[str, Written],
        appended: Mapping[str, int] | None = None,
    ) -> _Commit | None:
        """Stage `relative` on top of HEAD and commit them; None when nothing changed."""
        # HEAD as this index left it saves a `rev-parse`; the compare-and-swap below (or the
        # check when nothing changed) notices when someone else moved it meanwhile
        cached = self.valid
        head = self.base if cached else self.repo.head()
        try:
            if not cached:
                self._read(head)
            written = self._still_current(head, {path: w for path, w in contents.items() if path in relative})
            from_disk = [path for path in relative if path not in contents]
            self._stage(from_disk)
            self._stage_contents(written)
            self._stage_contents(
                self._appended_past((appended or {}).keys() & set(from_disk), appended or {}, head)
            )
            changes = self._staged_changes(head)
            if screen is not None and changes:
                refused = self._screen(changes, screen, head)
                if refused:
                    self._unstage([change for change in changes if change.path in refused])
                    changes = [change for change in changes if change.path not in refused]
            if not changes:
                if cached and self.repo.head() != head:
                    raise _HeadMoved
                return None
            sha = self._commit_tree(identity, head, message, [change.path for change in changes])
        except BaseException:
            self.valid = False
            raise
        self.base = sha
        return _Commit(sha, [(change.new_mode, change.new_sha, change.path) for change in changes])

    def _appended_past(
        self, logs: Iterable[str], appended: Mapping[str, int], head: str | None
    ) -> dict[str, bytes]:
        """The bytes up to `appended[log]` of each log longer than that after `_stage` read it.

        A log is only appended to: one no longer than its last recorded append once staged was
        read by git exactly up to there. One longer may hold lines appended since (a person's
        answer written while this commit was prepared, reported to the committer only once
        fsynced): git may have read them, so the log is staged again as it was at that append.
        Never taken back behind what HEAD holds already."""
        grown = {
            log_path: appended[log_path]
            for log_path in logs
            if _size(self.repo.root / log_path) > appended[log_path]
        }
        if not grown:
            return {}
        in_head = self.repo.objects_at([(head, log_path) for log_path in grown]) if head else {}
        cut: dict[str, bytes] = {}
        for log_path, length in grown.items():
            held = in_head.get((head, log_path)) if head else None
            if held is not None and held.size > length:
                continue
            data = file_prefix(self.repo.root / log_path, length)
            if data is not None:
                cut[log_path] = data
        return cut

    def _read(self, head: str | None) -> None:
        _remove_index_files(self.index)
        self.tracked.clear()
        if head:
            self._git(["read-tree", head])
        self.base = head
        self.valid = True

    def _still_current(self, head: str | None, writes: Mapping[str, Written]) -> dict[str, bytes]:
        """The stores' bytes to commit, without those a commit made since they were written outdates.

        A write whose file HEAD still holds a version it was written over is committed as written.
        Otherwise someone committed the file since (a person's `duragent memory edit` in another
        process, within the commit delay): committing the older bytes over their commit would show
        the writer undoing it in the log. They are committed only if the file still holds exactly
        them; when it holds something else, whoever wrote that commits it (the store's later
        write, or the person's edit, which the edit watcher or the next command commits as theirs).
        """
        checked = [
            path
            for path, write in writes.items()
            if (write.replaced or write.heads_then) and "\n" not in path
        ]
        if not checked:
            return {path: write.data for path, write in writes.items()}
        blobs = self._blobs(
            [(head, path) for path in checked]
            + [(then, path) for path in checked for then in writes[path].heads_then]
        )
        current = {path: write.data for path, write in writes.items()}
        for path in checked:
            write = writes[path]
            bases = {blobs[(then, path)] for then in write.heads_then}
            bases.update(_blob_id(data, head) for data in write.replaced)
            if blobs[(head, path)] in bases or _bytes_of(self.repo.root / path) == write.data:
                continue
            log.info(
                "not committing what was written to %s earlier: a commit changed it since, and "
                "what it holds now is committed by whoever wrote that",
                path,
            )
            del current[path]
        return current

    def _blobs(self, specs: Sequence[tuple[str | None, str]]) -> dict[tuple[str | None, str], str | None]:
        """The blob each (commit, path) names, None where the commit has no such file (or no commit)."""
        found = self.repo.objects_at([(rev, path) for rev, path in specs if rev])
        return {
            (rev, path): found[(rev, path)].name if rev and (rev, path) in found else None
            for rev, path in specs
        }

    def _stage(self, relative: list[str]) -> None:
        files: list[str] = []
        folders: list[str] = []
        missing: list[str] = []
        root = self.repo._root_prefix
        for path in relative:
            try:
                mode = os.lstat(root + path).st_mode
            except FileNotFoundError:
                missing.append(path)
                continue
            (folders if stat.S_ISDIR(mode) else files).append(path)
        unknown = [path for path in files if path not in self.tracked] + folders
        if unknown:
            skipped = self._ignored(unknown)
            if skipped:
                log.debug("not committing ignored paths: %s", ", ".join(sorted(skipped)))
                files = [path for path in files if path not in skipped]
                folders = [path for path in folders if path not in skipped]
        # a path gone from disk is staged as a deletion only when the index knows it (the files
        # under it, when it was a folder)
        removed: list[str] = []
        if missing and self.base:
            out = self._git(["ls-files", "-z", "--", *missing])
            removed = [path for path in out.split("\0") if path]
        updates = files + removed
        if updates:
            try:
                self._git(["update-index", "--add", "--remove", "-z", "--stdin"], input=_nul(updates))
            except GitError as error:
                # a file where the index has a folder (or the reverse) is what `git add` sorts out
                log.debug("update-index refused, staging with git add: %s", error)
                self._add(updates)
        self.tracked.update(files)
        self.tracked.difference_update(removed)
        if folders:
            self._add(folders)

    def _ignored(self, paths: list[str]) -> set[str]:
        """The paths .gitignore leaves out, among files and folders the index does not hold."""
        # check-ignore refuses the literal pathspecs every other command runs with (and a path
        # starting with ":" would read as pathspec magic); exit code 1 means nothing is ignored
        asked = {f"./{path}" if path.startswith(":") else path: path for path in paths}
        env = {**self.env, "GIT_LITERAL_PATHSPECS": "0"}
        out = self._git(["check-ignore", "-z", "--stdin"], input=_nul(list(asked)), env=env, ok_codes=(0, 1))
        return {asked[path] for path in out.split("\0") if path}

    def _add(self, paths: list[str]) -> None:
        self._git(["add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul"], input=_nul(paths))

    def _stage_contents(self, contents: Mapping[str, bytes]) -> None:
        """Stage the given bytes for these files, whatever is on disk (mode 644, or 755 if executable)."""
        if not contents:
            return
        paths = list(contents)
        with tempfile.TemporaryDirectory(dir=self.repo.git_dir, prefix="duragent-blob-") as folder:
            names = []
            for number, path in enumerate(paths):
                name = os.path.join(folder, str(number))
                with open(name, "wb") as handle:
                    handle.write(contents[path])
                names.append(name)
            listing = "".join(name + "\n" for name in names)
            out = self._git(["hash-object", "-w", "--no-filters", "--stdin-paths"], input=listing)
        entries = []
        for path, blob in zip(paths, out.split(), strict=True):
            mode = "100755" if os.access(self.repo.root / path, os.X_OK) else "100644"
            entries.append(f"{mode} {blob}\t{path}\0")
        self._git(["update-index", "-z", "--index-info"], input="".join(entries))
        self.tracked.difference_update(paths)

    def _staged_changes(self, head: str | None) -> list[_StagedChange]:
        """What the index changes against `head`."""
        args = ["diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames"]
        out = self._git([*args, head or _EMPTY_TREE, "--"])
        tokens = out.split("\0")
        changes: list[_StagedChange] = []
        at = 0
        while at + 1 < len(tokens) and tokens[at].startswith(":"):
            old_mode, new_mode, old_sha, new_sha, _status = tokens[at][1:].split(" ", 4)
            changes.append(_StagedChange(tokens[at + 1], old_mode, old_sha, new_mode, new_sha))
            at += 2
        return changes

    def _screen(self, changes: list[_StagedChange], screen: ContentScreen, head: str | None) -> set[str]:
        refused: set[str] = set()
        for path, added in self._added_text([change.path for change in changes], head).items():
            if not screen(path, added):
                refused.add(path)
        return refused

    def _added_text(self, changed: list[str], head: str | None) -> dict[str, str]:
        """Each changed file's added lines, from one `git diff` (per-file diffs if its shape surprises us).

        The diff is read a line at a time and only the added lines are kept: a batch of a long
        session's turns is megabytes of diff, and holding it whole, split into sections and into
        lines, took several times that at once (and left the heap that much larger).
        """
        base = head or _EMPTY_TREE
        self.repo.check_own_git_dir()
        # --text: a file git takes for binary (a NUL byte, a `-diff` attribute) would show as
        # "Binary files differ", and a key inside it would reach the repository unscreened
        args = [
            "diff",
            "--cached",
            "-U0",
            "--text",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-renames",
        ]
        added = _run_git_lines(
            self.repo.root,
            [*args, base, "--"],
            _added_lines_by_file,
            env=self.env,
            pass_fds=self.repo._held_fds(),
        )
        if len(added) != len(changed):
            added = [
                "\n".join(
                    _run_git_lines(
                        self.repo.root,
                        [*args, base, "--", path],
                        _added_lines_by_file,
                        env=self.env,
                        pass_fds=self.repo._held_fds(),
                    )
                )
                for path in changed
            ]
        return dict(zip(changed, added, strict=True))

    def _unstage(self, refused: list[_StagedChange]) -> None:
        """Put the entries of refused files back as they were at the base commit."""
        entries = [
            f"0 {_NO_SHA}\t{change.path}\0"
            if change.old_mode == "000000"
            else f"{change.old_mode} {change.old_sha}\t{change.path}\0"
            for change in refused
        ]
        self._git(["update-index", "-z", "--index-info"], input="".join(entries))
        self.tracked.difference_update(change.path for change in refused)

    def _commit_tree(
        self, identity: Identity, head: str | None, message: CommitMessage, files: list[str]
    ) -> str:
        """Write the index's tree, commit it on `head` and move HEAD there if it is still `head`."""
        text = message if isinstance(message, str) else message(files)
        tree = self._git(["write-tree"]).strip()
        parents = ["-p", head] if head else []
        env = {**self.env, **self.repo.committer_env(identity)}
        sha = self._git(["commit-tree", "--no-gpg-sign", tree, *parents, "-F", "-"], input=text, env=env)
        sha = sha.strip()
        reason = "duragent: " + text.splitlines()[0] if text else "duragent"
        self.repo._note_pending_sync(sha, files)
        try:
            self._git(["update-ref", "-m", reason, "HEAD", sha, head or ""])
        except GitError as error:
            # HEAD did not move: a note left naming these files would have the next commit
            # reset them, unstaging what the person staged
            self.repo._forget_pending_sync()
            if _LOCK_CONFLICT.search(error.stderr) or "but expected" in error.stderr:
                raise _HeadMoved from error
            raise
        return sha

    def _git(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        ok_codes: tuple[int, ...] = (0,),
    ) -> str:
        self.repo.check_own_git_dir()
        return _run_git(
            self.repo.root,
            args,
            check=check,
            input=input,
            env=env or self.env,
            ok_codes=ok_codes,
            pass_fds=self.repo._held_fds(),
        )


def _remove_index_files(index: Path) -> None:
    for leftover in (index, index.with_name(index.name + ".lock")):
        leftover.unlink(missing_ok=True)


def _remove_abandoned_indexes(git_dir: Path) -> None:
    """Delete the private indexes of Duragent processes that are gone (killed before cleaning up)."""
    for index in git_dir.glob("duragent-index-*"):
        pid = index.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            index.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _added_lines_by_file(lines: Iterable[str]) -> list[str]:
    """Each file's added lines in a patch, read a line at a time (lines end at "\n" only).

    A file's header (up to its first `@@`) is skipped, so an added line that itself starts with
    `++` is content; and a line keeps its \r, \x0c or \u2028: every character a file adds,
    a binary file's too (`diff --text`), reaches the secret screen.
    """
    files: list[list[str]] = []
    in_hunks = False
    for line in lines:
        if line.startswith("diff --git "):
            files.append([])
            in_hunks = False
        elif not files:
            continue
        elif line.startswith("@@"):
            in_hunks = True
        elif in_hunks and line.startswith("+"):
            files[-1].append(line[1:].removesuffix("\n"))
    return ["\n".join(added) for added in files]


def _blob_id(data: bytes, head: str | None) -> str:
    """The id git gives a blob of `data` in a repository whose commits are named like `head`."""
    algorithm = "sha256" if head is not None and len(head) == 64 else "sha1"
    return hashlib.new(algorithm, b"blob %d\0" % len(data) + data).hexdigest()


def _size(path: Path) -> int:
    """The file's size now (-1: gone)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def file_prefix(path: Path, length: int) -> bytes | None:
    """The file's first `length` bytes, ending a line; None when it is shorter or cut mid-line."""
    try:
        with path.open("rb") as file:
            data = file.read(length)
    except OSError:
        return None
    return data if len(data) == length and data.endswith(b"\n") else None


def _bytes_of(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _nul(paths: Sequence[str]) -> str:
    return "".join(path + "\0" for path in paths)


def _git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _GIT_LOCATION_ENV}
    # reads must not take index.lock behind a person's back; paths are literal, never globs
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", GIT_LITERAL_PATHSPECS="1")
    env.update(LC_ALL="C", LANGUAGE="C")  # error messages we match on stay in English
    env.update(_isolated_config(env))
    env.update(extra or {})
    return env


def _isolated_config(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that keep git from reading the global and system configuration, and hand it
    back the person's settings it may use (`_PERSON_SETTINGS`) as command-line configuration."""
    count = env.get("GIT_CONFIG_COUNT", "")
    given = int(count) if count.isdigit() else 0  # (the person's own, kept ahead of these)
    where = (*(env.get(name, "") for name in _CONFIG_LOCATION_ENV), *_global_config_stamps(env))
    isolated = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    kept = _person_settings(where)
    for index, (key, value) in enumerate(kept, start=given):
        isolated[f"GIT_CONFIG_KEY_{index}"] = key
        isolated[f"GIT_CONFIG_VALUE_{index}"] = value
    isolated["GIT_CONFIG_COUNT"] = str(given + len(kept))
    return isolated


#: What decides where git finds the global and system configuration.
_CONFIG_LOCATION_ENV = (
    "HOME",
    "XDG_CONFIG_HOME",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
)
_person_settings_read: dict[tuple[object, ...], tuple[tuple[str, str], ...]] = {}
#: `GitRepo.person_config` by repository and version of the configuration files it reads.
_person_config_read: dict[
    tuple[object, ...], tuple[tuple[str, str], tuple[tuple[Path, tuple[int, int, int]], ...]]
] = {}


def _global_config_stamps(env: Mapping[str, str]) -> tuple[int, ...]:
    """When the person's global configuration files last changed (read again after an edit)."""
    home = env.get("HOME", "")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = (
        [env["GIT_CONFIG_GLOBAL"]]
        if env.get("GIT_CONFIG_GLOBAL")
        else [
            os.path.join(home, ".gitconfig"),
            os.path.join(xdg, "git", "config"),
        ]
    )
    stamps = []
    for file in files:
        try:
            stamps.append(os.stat(file).st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


def _file_stamp(path: Path) -> tuple[int, int, int]:
    """(inode, size, mtime in ns) of a file, zeros when there is none: changes when it is edited."""
    try:
        status = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _person_settings(where: tuple[object, ...]) -> tuple[tuple[str, str], ...]:
    """The person's `_PERSON_SETTINGS` in their global and system configuration, read once per
    place it lives and version of its files (`where`), by one `git config` outside any repository."""
    kept = _person_settings_read.get(where)
    if kept is None:
        fields = _read_person_config(["--list", "--includes", "--show-scope", "-z"], Path("/")).split("\0")
        kept = tuple(
            (name, value)
            for scope, entry in zip(fields[::2], fields[1::2], strict=False)
            if scope in ("global", "system")
            for name, _, value in [entry.partition("\n")]
            if name.lower() in _PERSON_SETTINGS
        )
        _person_settings_read[where] = kept
    return kept


def _read_person_config(args: Sequence[str], cwd: Path) -> str:
    """What `git config <args>` prints with the person's whole configuration (reading a value
    runs no program), "" when git cannot run (the command that needs it says so)."""
    env = {name: value for name, value in os.environ.items() if name not in _GIT_LOCATION_ENV}
    env.update(LC_ALL="C", LANGUAGE="C")
    try:
        done = subprocess.run(["git", "config", *args], cwd=cwd, env=env, capture_output=True, check=False)
    except OSError:
        return ""
    return done.stdout.decode("utf-8", errors="replace")


def _folder_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder `path` leads to, None when there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISDIR(status.st_mode) else None


def _git_dir_named_by(dot_git: Path) -> tuple[Path | None, str]:
    """The folder a working tree's `.git` leads git to (resolved), and what `.git` is, in words."""
    try:
        mode = os.lstat(dot_git).st_mode
    except OSError:
        return None, "missing"
    if stat.S_ISLNK(mode):
        target = dot_git.resolve()
        return target, f"a symlink to {target}"
    if stat.S_ISDIR(mode):
        return dot_git.resolve(), "a folder"
    if not stat.S_ISREG(mode):
        return None, "neither a folder nor a file"
    try:
        first = dot_git.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    except OSError as error:
        return None, f"a file that cannot be read ({error.strerror})"
    if not first.startswith("gitdir:"):
        return None, "a file that names no repository"
    named = (dot_git.parent / first.removeprefix("gitdir:").strip()).resolve()
    return named, f"a file naming {named}"


def _own_git_dir(path: Path) -> Path | None:
    """The git directory of the repository whose top folder is `path`; None when `path` is not
    one (not a repository, or a folder inside another). One `git` run: every server start asks."""
    if not (path / ".git").exists():
        return None
    try:
        top, git_dir = _run_git(path, ["rev-parse", "--show-toplevel", "--absolute-git-dir"]).splitlines()
    except (GitError, ValueError):
        return None
    return Path(git_dir) if Path(top).resolve() == path.resolve() else None


def _run_git_lines(
    cwd: Path,
    args: Sequence[str],
    read: Callable[[Iterable[str]], _T],
    *,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> _T:
    """`read(lines of git's output)`, the output read as `read` goes (GitError as `_run_git` raises)."""
    command = ["git", *_GIT_FLAGS, *args]
    with tempfile.TemporaryFile() as stderr:  # a file: git never blocks on it while we read
        try:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                pass_fds=pass_fds,
                env=_git_env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        except FileNotFoundError as error:
            raise _git_missing(command) from error
        with process:
            assert process.stdout is not None
            # lines end where git ends them ("\n"): no universal newlines, which would also cut at
            # a "\r" inside a line
            output = io.TextIOWrapper(process.stdout, encoding="utf-8", errors="replace", newline="\n")
            result = read(output)
            output.read()  # whatever `read` left, so git can finish
        if process.returncode != 0:
            stderr.seek(0)
            raise _git_failed(cwd, args, command, stderr.read().decode("utf-8", "replace"))
    return result


def _run_git(
    cwd: Path,
    args: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
    ok_codes: tuple[int, ...] = (0,),
    pass_fds: tuple[int, ...] = (),
    stdin: IO[bytes] | None = None,
) -> str:
    command = ["git", *_GIT_FLAGS, *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            pass_fds=pass_fds,
            env=_git_env(env),
            input=input,
            stdin=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except FileNotFoundError as error:
        raise _git_missing(command) from error
    if check and done.returncode not in ok_codes:
        raise _git_failed(cwd, args, command, done.stderr)
    return done.stdout


def _git_missing(command: list[str]) -> GitError:
    return GitError("git is not installed (Duragent needs the git command)", command)


def _git_failed(cwd: Path, args: Sequence[str], command: list[str], stderr: str) -> GitError:
    return GitError(f"git {args[0]} failed in {cwd}", command, stderr)
