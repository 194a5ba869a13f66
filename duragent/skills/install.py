"""Add a skill to a workspace (copied from a folder, or cloned from a git repository) and remove one.

A person does this (`duragent skill add|remove`); the change is committed as their edit, like a
memory edit from the command line. `add` validates the skill before anything is written, and
never replaces a skill that is already there. An `add` killed midway (kill -9, power loss) leaves
its hidden staging folder behind; the next `add` or `remove` in that skills folder removes it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from yarl import URL

from duragent.errors import DuragentError, NotFound, UsageError
from duragent.skills.skill import NAME_PATTERN, SKILL_FILE, Skill, load_skill

if TYPE_CHECKING:
    from duragent.secrets import SecretGuard

GIT_SCHEMES = ("http://", "https://", "ssh://", "git://", "file://", "git@")
CLONE_TIMEOUT_SECONDS = 300.0
#: What `--ref` may be: a branch, tag or commit name (not an option, a refspec or a pattern).
_REF = re.compile(r"^(?![-/.+])[\w./+@-]+$")
#: An abbreviated commit id, which a fetch does not take.
_SHORT_COMMIT = re.compile(r"^[0-9a-f]{4,39}$")
#: How deep `add` looks for SKILL.md files in a repository that holds several skills.
_SEARCH_DEPTH = 4
#: In the name of the hidden folder a skill is copied into before it is renamed into place:
#: `.<skill>.adding-<random>`.
_STAGING_MARK = ".adding-"
#: Exactly the names `_staging_folder` makes (`mkdtemp` adds 8 characters): the sweep of
#: abandoned ones must never take a person's hidden folder that merely looks alike.
_STAGING_NAME = re.compile(r"\.[a-z0-9][a-z0-9-]*\.adding-[a-z0-9_]{8}")
#: Attempts at a staging folder that is still ours once locked (a sweep may take a new one
#: before its lock): more failures mean something else is wrong.
_STAGING_ATTEMPTS = 5

log = logging.getLogger(__name__)


class SkillSourceError(DuragentError):
    """The source of `skill add` cannot be read: a clone failed, or it holds no (or many) skills."""

    exit_code = 2


class SkillExists(DuragentError):
    """A skill of that name is already in the target folder."""

    exit_code = 2


class SkillNotFound(NotFound):
    """No skill of that name in the folder."""


@dataclass(frozen=True)
class Installed:
    """What `add_skill` did: the skill (at its new place) and the files written."""

    skill: Skill
    files: tuple[Path, ...]
    #: The commit a skill from a git repository was installed from (None for a folder).
    commit: str | None = None

    def origin(self, source: str, ref: str | None = None, subpath: str | None = None) -> str:
        """Where the skill came from, as printed and committed: the source (without a password),
        the folder in it, the ref asked for and the commit installed
        (`https://…/skills.git, folder skills/pdf, at v1 (commit 3f2a9c01d4)`)."""
        shown = shown_source(source)
        if subpath:
            shown += f", folder {subpath}" + ("," if ref else "")
        if ref:
            shown += f" at {ref}"
        return f"{shown} (commit {self.commit[:10]})" if self.commit else shown


def is_git_source(source: str) -> bool:
    """True for a repository (`https://…`, `git@…`, `file://…`, `….git`, a bare repository on
    disk), False for a folder path."""
    if source.startswith(GIT_SCHEMES):
        return True
    folder = Path(source).expanduser()
    if folder.is_dir():
        return _is_bare_repository(folder)  # it has no files to copy: only a clone has
    return source.endswith(".git")


def _is_bare_repository(folder: Path) -> bool:
    """Whether `folder` is a git repository without a working tree (`git clone --bare`)."""
    return (
        (folder / "HEAD").is_file()
        and (folder / "objects").is_dir()
        and (folder / "refs").is_dir()
        and not (folder / SKILL_FILE).exists()
    )


def shown_source(source: str) -> str:
    """The source as it may be printed and committed: a URL without its user name and password."""
    if "://" not in source:
        return source
    try:
        return str(URL(source).with_user(None))
    except ValueError:
        return source


def add_skill(
    source: str,
    skills_dir: Path,
    *,
    subpath: str | None = None,
    ref: str | None = None,
    guard: SecretGuard | None = None,
) -> Installed:
    """Copy the skill at `source` (a folder, or a git URL cloned shallowly) into `skills_dir`.

    `subpath` names the skill's folder inside the source when it holds several skills; `ref`
    the branch, tag or full commit id of a git source to install (default: its HEAD). Raises
    ConfigError (with file:line) for an invalid skill, SkillExists when the name is taken, and
    UsageError for a file holding a secret (`guard`) or a link leading out of the skill: nothing
    is copied then.
    """
    with staged_skill(source, skills_dir, subpath=subpath, ref=ref, guard=guard) as staged:
        return staged.place()


@dataclass(frozen=True)
class StagedSkill:
    """A checked skill copied into a hidden folder beside its place, not yet in it."""

    target: Path
    copy: Path
    #: The commit a skill from a git repository is installed from (None for a folder).
    commit: str | None

    def place(self) -> Installed:
        """Move the copy to its place in one rename: a turn never sees half a skill."""
        if self.target.exists() or self.target.is_symlink():
            raise SkillExists(_taken(self.target, self.target.name))  # (added meanwhile)
        try:
            os.rename(self.copy, self.target)
        except OSError as exc:
            raise UsageError(f"could not copy the skill into {self.target.parent}: {exc}") from None
        files = tuple(sorted(p for p in self.target.rglob("*") if p.is_file() or p.is_symlink()))
        return Installed(load_skill(self.target), files, self.commit)


@contextmanager
def staged_skill(
    source: str,
    skills_dir: Path,
    *,
    subpath: str | None = None,
    ref: str | None = None,
    guard: SecretGuard | None = None,
) -> Iterator[StagedSkill]:
    """`add_skill` in two steps: the skill checked and copied beside its place, for the caller
    to `place()` when it is ready to commit it (the slow part, a clone, is done by then). A copy
    not placed is removed on exit. Raises as `add_skill` does."""
    remove_abandoned_copies(skills_dir)
    with _materialised(source, ref) as (root, commit):
        folder = _skill_folder(root, subpath, source)
        skill = load_skill(folder, shown=_shown_skill_file(source, folder, root))
        target = skills_dir / skill.name
        if target.exists() or target.is_symlink():
            raise SkillExists(_taken(target, skill.name))
        _check_files(folder, guard)
        with _copied_beside(folder, target) as copy:
            yield StagedSkill(target, copy, commit)


def _taken(target: Path, name: str) -> str:
    """Why `target` cannot receive the skill, and what to do: `skill remove` for a skill, a
    person's own decision for anything else there (remove would refuse it)."""
    if (target / SKILL_FILE).is_file():
        return (
            f"a skill named {name!r} is already in {target}; remove it first (duragent skill remove {name})"
        )
    if target.is_symlink() and not target.exists():
        what = "a link to nothing"
    elif target.is_dir():
        what = f"a folder without a {SKILL_FILE}, not a skill"
    else:
        what = "a file, not a skill"
    return f"{target} is in the way: {what}; move it elsewhere (or delete it) and add the skill again"


@contextmanager
def _copied_beside(folder: Path, target: Path) -> Iterator[Path]:
    """A copy of `folder` named as `target`, in a hidden folder beside it (skipped by the skill
    scan and the edit watcher), removed on exit unless it was renamed into place. A copy that
    fails midway leaves nothing that would block the next `add`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _staging_folder(target.parent, target.name) as staging:
        copy = staging / target.name
        try:
            shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".git"), symlinks=True)
        except shutil.Error as exc:
            # (copytree copies what it can, then lists what it could not: the first one says why)
            failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
            reason = str(failures[0][2]) if failures and len(failures[0]) == 3 else str(exc)
            raise UsageError(f"could not copy the skill into {target.parent}: {reason}") from None
        except OSError as exc:
            raise UsageError(f"could not copy the skill into {target.parent}: {exc}") from None
        yield copy


@contextmanager
def _staging_folder(skills_dir: Path, name: str) -> Iterator[Path]:
    """A new hidden folder `.<name>.adding-…` in `skills_dir`, removed on exit. It is flocked for
    as long as it is in use: the kernel drops the lock when the process dies, however it dies, so
    `remove_abandoned_copies` can tell an add still running (in any process) from a killed one."""
    for _attempt in range(_STAGING_ATTEMPTS):
        staging = Path(tempfile.mkdtemp(prefix=f".{name}{_STAGING_MARK}", dir=skills_dir))
        try:
            lock = _lock_folder(staging)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UsageError(f"could not lock {staging} to copy the skill into: {exc}") from None
        if lock is not None and _still_named(staging, lock):
            break
        # another add or remove swept the folder between its creation and its lock (it had no
        # holder yet), or it cannot be opened: make another, leaving none behind
        if lock is not None:
            os.close(lock)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        raise UsageError(
            f"could not make a folder to copy the skill into in {skills_dir}: "
            "each one vanished or could not be opened"
        )
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


def remove_abandoned_copies(skills_dir: Path) -> list[Path]:
    """Remove the staging folders in `skills_dir` that adds killed midway left (no process holds
    their lock); returns the folders removed. The folder of an add still running stays. Best
    effort: what cannot be looked at or removed is logged and left."""
    removed: list[Path] = []
    for staging in sorted(skills_dir.glob(f".*{_STAGING_MARK}*")):
        if not _STAGING_NAME.fullmatch(staging.name) or staging.is_symlink() or not staging.is_dir():
            continue
        try:
            lock = _lock_folder(staging)
        except OSError as exc:
            log.warning("could not check %s, left by an interrupted skill add: %s", staging, exc)
            continue
        if lock is None:
            continue  # an add in progress (or a folder gone meanwhile)
        try:
            shutil.rmtree(staging)
        except OSError as exc:
            log.warning("could not remove %s, left by an interrupted skill add: %s", staging, exc)
            continue
        finally:
            os.close(lock)
        log.info("removed %s, left by a skill add that was interrupted", staging)
        removed.append(staging)
    return removed


def _lock_folder(folder: Path) -> int | None:
    """A descriptor of `folder` holding an exclusive flock on it (closing it releases the lock);
    None when another open descriptor holds it, or the folder is gone or not ours to open.
    Raises OSError when the filesystem cannot lock it (the descriptor closed)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None  # (a folder another user's add left is theirs to clear)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _still_named(folder: Path, lock: int) -> bool:
    """Whether `folder` is still the folder `lock` was opened on (not removed meanwhile)."""
    try:
        named = os.stat(folder)
    except FileNotFoundError:
        return False
    held = os.fstat(lock)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _check_files(folder: Path, guard: SecretGuard | None) -> None:
    """Refuse a skill that would bring a secret into the data repository (it would never be
    committed, and every later commit would complain), a link to a file outside it (also one
    that only leads back into the source folder, which the installed copy is not), or a file
    that cannot be copied (a named pipe, a socket, a device)."""
    inside = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if ".git" in path.relative_to(folder).parts:
            continue
        shown = path.relative_to(folder)
        if path.is_symlink():
            _check_link(path, shown, inside)
            continue
        kind = _special_kind(path)
        if kind is not None:
            raise UsageError(f"{shown} is not a file, folder or link ({kind}); remove it from the skill")
        if guard is None or not path.is_file():
            continue
        found = guard.find(path.read_bytes().decode("utf-8", errors="replace"))
        if found:
            raise UsageError(
                f"{shown} holds a secret ({', '.join(found)}); remove it from the skill: "
                "keys belong in the environment"
            )


def _check_link(path: Path, shown: Path, inside: Path) -> None:
    """A link must stay inside the skill as written (copied, it keeps its text) and as resolved."""
    target = os.readlink(path)
    if os.path.isabs(target):
        raise UsageError(
            f"{shown} links by an absolute path ({target}); make it relative to the skill's folder"
        )
    written = os.path.normpath(os.path.join(os.path.dirname(shown), target))
    if (
        written == os.pardir
        or written.startswith(os.pardir + os.sep)
        or not path.resolve().is_relative_to(inside)
    ):
        raise UsageError(f"{shown} links outside the skill ({target}); remove the link")


def _special_kind(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (None otherwise)."""
    mode = path.lstat().st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def remove_skill(name: str, skills_dir: Path) -> tuple[Path, ...]:
    """Delete the skill folder `skills_dir/name` (or the link by that name); returns the files it held."""
    remove_abandoned_copies(skills_dir)
    target = skills_dir / name
    if "/" in name or name.startswith(".") or not (target / SKILL_FILE).is_file():
        known = sorted(path.parent.name for path in skills_dir.glob(f"*/{SKILL_FILE}"))
        raise SkillNotFound(f"no skill {name!r} in {skills_dir}; skills there: {', '.join(known) or 'none'}")
    if target.is_symlink():
        # a link to a skill kept elsewhere (shared by several workspaces): the link goes, the
        # folder it points to stays
        target.unlink()
        return (target,)
    files = tuple(sorted(path for path in target.rglob("*") if path.is_file() or path.is_symlink()))
    shutil.rmtree(target)
    return files


@contextmanager
def _materialised(source: str, ref: str | None = None) -> Iterator[tuple[Path, str | None]]:
    """The source as a local folder and the commit it holds: the folder itself (no commit), or a
    shallow clone (of `ref`) removed afterwards."""
    if not is_git_source(source):
        folder = Path(source).expanduser()
        if ref is not None:
            raise UsageError(f"--ref needs a git repository; {source} is a folder")
        if folder.is_file():
            raise UsageError(_not_a_folder(source, folder))
        if not folder.is_dir():
            raise UsageError(f"{source}: no such folder (give a skill folder or a git URL)")
        yield folder.resolve(), None
        return
    with tempfile.TemporaryDirectory(prefix="duragent-skill-") as temp:
        name = source.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git") or "skill"
        clone = Path(temp) / name
        _clone(source, clone, ref)
        commit = _head_commit(clone, source)
        # A repository holding one skill at its root is seldom named as the skill is
        # (`pdf-skill.git` holding `name: pdf`): its clone is, as the installed copy will be.
        declared = _declared_name(clone / SKILL_FILE)
        if declared is not None and declared != clone.name:
            clone = clone.rename(clone.with_name(declared))
        # resolved as a folder source is: `--path` is checked against it resolved (a temporary
        # folder reached through a link, as /var/folders on macOS, would refuse every path)
        yield clone.resolve(), commit


def _declared_name(skill_file: Path) -> str | None:
    """The valid `name` the front matter of `skill_file` declares, if it can be read (`load_skill`
    reports whatever is wrong otherwise)."""
    import yaml
    from frontmatter.default_handlers import YAMLHandler

    if skill_file.is_symlink() or not skill_file.is_file():
        return None  # (a repository can hold a link to /dev/zero, which would be read forever)
    try:
        yaml_text, _body = YAMLHandler().split(skill_file.read_text(encoding="utf-8-sig"))
        front = yaml.safe_load(yaml_text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    name = front.get("name") if isinstance(front, dict) else None
    return name if isinstance(name, str) and NAME_PATTERN.fullmatch(name) else None


def _not_a_folder(source: str, file: Path) -> str:
    """Why a file is no source: the skill's SKILL.md (its folder is), or an archive (unpacked, it is)."""
    if file.name == SKILL_FILE:
        return f"{source} is the skill's {SKILL_FILE}: give its folder ({file.parent})"
    return f"{source} is a file, not a folder: give a skill folder (unpack an archive first) or a git URL"


def _clone(source: str, into: Path, ref: str | None) -> None:
    """A shallow clone of `source` into `into`: its HEAD, or the branch, tag or commit `ref`."""
    shown = shown_source(source)
    if ref is None:
        _git(["clone", "--depth", "1", "--quiet", "--", source, str(into)], None, shown)
        return
    if not _REF.fullmatch(ref):
        raise UsageError(f"--ref {ref!r} is not a branch, tag or commit name")
    # `clone --branch` takes no commit id; a fetch takes all three (a commit given in full)
    into.mkdir()
    _git(["init", "--quiet"], into, shown)
    _git(["fetch", "--depth", "1", "--quiet", "--", source, ref], into, f"{shown} at {ref}", ref)
    _git(["checkout", "--quiet", "--detach", "FETCH_HEAD"], into, f"{shown} at {ref}")


def _head_commit(clone: Path, source: str) -> str:
    """The commit checked out in `clone`; SkillSourceError for a repository without one."""
    try:
        return _git(
            ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], clone, shown_source(source)
        ).strip()
    except SkillSourceError:
        raise SkillSourceError(
            f"{shown_source(source)}: the repository has no commits: nothing to install"
        ) from None


def _git(arguments: list[str], cwd: Path | None, shown: str, ref: str | None = None) -> str:
    """Run git for a clone and return its output; SkillSourceError says what went wrong."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(
            ["git", *arguments],
            cwd=cwd,
            check=True,
            capture_output=True,
            text=True,
            timeout=CLONE_TIMEOUT_SECONDS,
            env=env,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise SkillSourceError(f"could not clone {shown}: {_git_failure(exc, ref)}") from None
    except subprocess.TimeoutExpired:
        raise SkillSourceError(f"cloning {shown} took longer than {CLONE_TIMEOUT_SECONDS:g} s") from None
    except FileNotFoundError:
        raise SkillSourceError("git is not installed: cannot clone a skill repository") from None


def _git_failure(exc: subprocess.CalledProcessError, ref: str | None) -> str:
    """The cause git gave: its first line past warnings and hints (what follows is advice,
    "...and the repository exists."), a missing ref said plainly."""
    lines = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith(("warning:", "hint:"))] or lines
    reason = causes[0].removeprefix("fatal:").strip() if causes else f"git exited with {exc.returncode}"
    if ref is not None and reason.startswith("couldn't find remote ref"):
        reason = f"no branch, tag or commit {ref} in the repository"
        if _SHORT_COMMIT.fullmatch(ref):
            reason += " (give a commit by its full 40-character id)"
    return reason


def _skill_folder(root: Path, subpath: str | None, source: str) -> Path:
    """The folder holding the skill: `subpath`, the root, or the one skill folder found inside."""
    if subpath is not None:
        folder = (root / subpath).resolve()
        if not folder.is_relative_to(root) or not (folder / SKILL_FILE).is_file():
            raise SkillSourceError(f"{shown_source(source)}: no {SKILL_FILE} in {subpath}")
        return folder
    if (root / SKILL_FILE).is_file():
        return root
    found = sorted(_skill_files(root))
    if not found:
        raise SkillSourceError(f"{shown_source(source)}: no {SKILL_FILE} found (a skill folder holds one)")
    if len(found) > 1:
        listed = ", ".join(_inside(path.parent, root).rstrip("/") for path in found)
        raise SkillSourceError(
            f"{shown_source(source)} holds {len(found)} skills ({listed}); choose one with --path"
        )
    return found[0].parent


def _skill_files(root: Path, depth: int = 0) -> Iterator[Path]:
    if depth > _SEARCH_DEPTH:
        return
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or child.is_symlink():
            continue
        if (child / SKILL_FILE).is_file():
            yield child / SKILL_FILE
        else:
            yield from _skill_files(child, depth + 1)


def _shown_skill_file(source: str, folder: Path, root: Path) -> str:
    """How messages name the source's SKILL.md: a path, or the URL and the path inside it."""
    from duragent.agents.loader import display_path

    if is_git_source(source):
        return f"{shown_source(source).rstrip('/')}/{_inside(folder, root)}{SKILL_FILE}"
    return display_path(folder / SKILL_FILE)


def _inside(folder: Path, root: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return "" if relative == "." else relative + "/"
