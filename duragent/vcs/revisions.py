"""What a revision of the data repository changed, and undoing it: show, diff, revert, gc.

Memory files are Markdown whose meaning is bullets in sections, so their diffs are reported as
bullets added and removed per section (plus any other text lines that changed) rather than as
patch hunks; other files keep git's unified diff.

A revert is a NEW commit that applies the inverse of a commit to the files as they are now
(a three-way merge per file, like `git revert`, without touching the person's index). Only
memory and agent-definition changes can be reverted: session logs are append-only, so a commit
of session logs alone is refused with that reason (fork the session instead). The committer
keeps memory apart from session logs; a commit holding both (made by an older version, or by
hand) has its memory and agent files reverted and its session logs left as they are.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from duragent.errors import DuragentError
from duragent.memory.markdown import (
    add_bullet,
    heading_lines,
    lines_outside_entries,
    parse_daily,
    render_bullet,
    section_heading,
)
from duragent.stores.filesystem.atomic import write_atomic
from duragent.stores.filesystem.locks import memory_file_lock
from duragent.vcs.committer import TRAILER_AGENT, TRAILER_KIND
from duragent.vcs.repo import GitRepo, Identity
from duragent.vcs.watch import EDIT_KIND

if TYPE_CHECKING:
    from duragent.secrets import SecretGuard

_STATUS = {"A": "added", "M": "modified", "D": "deleted", "T": "modified"}


class RevertRefused(DuragentError):
    """The commit cannot be reverted; the message says why."""


class RevertConflict(DuragentError):
    """Something stands in the way of a revert now (later changes to the same lines, a secret, a
    rebase in progress); nothing was written."""


# --- diffs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SectionChange:
    """Bullets added to and removed from one section of a Markdown memory file."""

    section: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileDiff:
    """One file's change: per-section bullets for Markdown, git's patch for anything else."""

    path: str
    status: str  # added, modified, deleted
    sections: list[SectionChange] = field(default_factory=list)
    text_added: list[str] = field(default_factory=list)
    text_removed: list[str] = field(default_factory=list)
    patch: str = ""

    @property
    def is_markdown(self) -> bool:
        """True when the change is reported as Markdown sections rather than a patch."""
        return self.path.endswith(".md")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "path": self.path,
            "status": self.status,
            "sections": [
                {"section": s.section, "added": list(s.added), "removed": list(s.removed)}
                for s in self.sections
            ],
            "text_added": list(self.text_added),
            "text_removed": list(self.text_removed),
            "patch": self.patch,
        }


def markdown_diff(path: str, status: str, old: str | None, new: str | None) -> FileDiff:
    """The change between two versions of a Markdown memory file, as bullets per section."""
    anyday = date(2000, 1, 1)  # parse_daily needs a day; entries' days are not compared
    before = Counter((e.section, e.text) for e in parse_daily(old or "", anyday))
    after = Counter((e.section, e.text) for e in parse_daily(new or "", anyday))
    sections: dict[str, SectionChange] = {}
    for (section, text), count in (after - before).items():
        sections.setdefault(section, SectionChange(section)).added.extend([text] * count)
    for (section, text), count in (before - after).items():
        sections.setdefault(section, SectionChange(section)).removed.extend([text] * count)
    old_other = lines_outside_entries(old or "")
    new_other = lines_outside_entries(new or "")
    if not sections and Counter(old_other) == Counter(new_other):
        # Only headings may have changed: name them, so "whitespace or order only" is never said
        # of a heading a person added or removed.
        old_other = heading_lines(old or "")
        new_other = heading_lines(new or "")
    return FileDiff(
        path,
        status,
        sections=list(sections.values()),
        text_added=_unmatched(new_other, old_other),
        text_removed=_unmatched(old_other, new_other),
    )


def _unmatched(lines: list[str], others: list[str]) -> list[str]:
    """The lines that `others` does not hold (as many times), in their order in the file: a
    front matter's `---` lines stay around what they enclose."""
    left = Counter(others)
    unmatched: list[str] = []
    for line in lines:
        if left[line] > 0:
            left[line] -= 1
        else:
            unmatched.append(line)
    return unmatched


def diff_revisions(
    repo: GitRepo, old: str | None, new: str | None, paths: Sequence[str] = (), *, raw: bool = False
) -> list[FileDiff]:
    """What changed from `old` to `new` (None: the working tree); `old` None with a `new` is its parent.

    Markdown files are diffed by section unless `raw`; other files carry git's patch.
    """
    changed = repo.diff_files(old, new, paths)
    diffs: list[FileDiff] = []
    for letter, path in changed:
        status = _STATUS.get(letter[:1], "modified")
        if path.endswith(".md") and not raw:
            before = repo.file_at(old, path) if old is not None else None
            after = repo.file_at(new, path) if new is not None else _shown_text(repo.root / path)
            diffs.append(markdown_diff(path, status, before, after))
        else:
            diffs.append(FileDiff(path, status, patch=_patch_or_added(repo, old, new, path, status)))
    return diffs


def _patch_or_added(repo: GitRepo, old: str | None, new: str | None, path: str, status: str) -> str:
    if new is None and status == "added" and old is not None:
        # an untracked file: git diff shows nothing for it, show its text as added lines
        text = _shown_text(repo.root / path) or ""
        return "".join(f"+{line}\n" for line in text.splitlines())
    return repo.patch(old, new, [path])


def render_diff(diffs: Sequence[FileDiff]) -> str:
    """Diffs as text for a terminal: sections with +/- bullets for Markdown, patches otherwise."""
    blocks: list[str] = []
    for diff in diffs:
        if not diff.is_markdown or diff.patch:
            blocks.append(f"{diff.path} ({diff.status})\n{diff.patch.rstrip()}".rstrip())
            continue
        lines = [f"{diff.path} ({diff.status})"]
        for change in diff.sections:
            lines.append(f"  ## {section_heading(change.section)}")
            lines += [f"  + {_one_line(text)}" for text in change.added]
            lines += [f"  - {_one_line(text)}" for text in change.removed]
        if diff.text_added or diff.text_removed:
            lines.append("  (other text)")
            lines += [f"  + {text}" for text in diff.text_added]
            lines += [f"  - {text}" for text in diff.text_removed]
        if len(lines) == 1:
            lines.append("  (whitespace or order only)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _one_line(text: str) -> str:
    return " / ".join(text.splitlines())


# --- show ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """One commit: who, when, why, and what it changed."""

    sha: str
    parent: str | None
    author: str
    when: datetime
    message: str
    diffs: list[FileDiff]

    @property
    def subject(self) -> str:
        """The first line of the message."""
        return self.message.split("\n", 1)[0]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for `duragent show --json`."""
        return {
            "sha": self.sha,
            "parent": self.parent,
            "author": self.author,
            "when": self.when.isoformat(),
            "subject": self.subject,
            "message": self.message,
            "files": [diff.to_json() for diff in self.diffs],
        }


def show_revision(repo: GitRepo, rev: str, *, raw: bool = False) -> Revision:
    """The commit `rev` names and its changes against its first parent."""
    sha = repo.resolve(rev)
    parents = repo.parents(sha)
    header = "".join(repo.stream(["show", "-s", "--format=%an <%ae>%x1f%aI%x1f%B", sha]))
    author, when, message = header.split("\x1f", 2)
    parent = parents[0] if parents else None
    diffs = _commit_diffs(repo, sha, parent, raw=raw)
    return Revision(sha, parent, author, datetime.fromisoformat(when), message.strip() + "\n", diffs)


def _commit_diffs(repo: GitRepo, sha: str, parent: str | None, *, raw: bool) -> list[FileDiff]:
    diffs: list[FileDiff] = []
    for letter, path in repo.commit_files(sha):
        status = _STATUS.get(letter[:1], "modified")
        if path.endswith(".md") and not raw:
            before = repo.file_at(parent, path) if parent else None
            diffs.append(markdown_diff(path, status, before, repo.file_at(sha, path)))
        else:
            diffs.append(FileDiff(path, status, patch=repo.patch(parent, sha, [path])))
    return diffs


# --- revert --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevertResult:
    """The new commit (None when the files already matched the state before `reverted`), the
    files it changed, and the files of `reverted` left as they are (session logs)."""

    sha: str | None
    reverted: str
    files: list[str]
    kept: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RevertPlan:
    """What reverting a commit undoes (`files`) and what it leaves as it is (`kept`: session
    logs, which are append-only, and files that are neither memory nor agent definitions)."""

    files: list[str]
    kept: list[str] = field(default_factory=list)


def check_revertible(
    repo: GitRepo, rev: str, *, revertible: Sequence[str], append_only: Sequence[str]
) -> RevertPlan:
    """The commit's files a revert undoes and those it keeps; RevertRefused when it undoes none.

    `revertible` and `append_only` are repo-relative folders (memory and agents; sessions).
    """
    sha = repo.resolve(rev)
    if len(repo.parents(sha)) > 1:
        raise RevertRefused(f"{sha[:10]} is a merge commit; revert the commits it merged instead")
    files = [path for _, path in repo.commit_files(sha)]
    if not files:
        raise RevertRefused(f"{sha[:10]} changes no files")
    undone = [path for path in files if _under(path, revertible) and not _under(path, append_only)]
    kept = [path for path in files if path not in undone]
    if undone:
        return RevertPlan(undone, kept)
    logs = [path for path in files if _under(path, append_only)]
    if logs:
        raise RevertRefused(
            f"{sha[:10]} changes session logs ({_some(logs)}), "
            "which are append-only: history that happened is never rewritten. "
            "To continue from an earlier point, fork the session: `duragent session fork ID@SEQ`."
        )
    raise RevertRefused(
        f"{sha[:10]} changes files that are neither memory nor agent definitions "
        f"({_some(files)}); only those can be reverted"
    )


def _some(paths: Sequence[str]) -> str:
    return ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")


def revert_revision(
    repo: GitRepo,
    rev: str,
    *,
    revertible: Sequence[str] = ("memory", "agents"),
    append_only: Sequence[str] = ("sessions",),
    identity: Identity | None = None,
    memory_root: Path | None = None,
    guard: SecretGuard | None = None,
    before_write: Callable[[str, bytes], object] | None = None,
) -> RevertResult:
    """Undo commit `rev` with a new commit by `identity` (default: the person's git identity).

    Each file gets the inverse of the commit's change merged into its current text, so later
    edits survive; RevertConflict (nothing written) when they touch the same lines, or when a
    file would be committed holding a secret `guard` knows (one the committer kept out of git,
    uncommitted on disk). Files under `memory_root` are read and written holding the memory
    store's lock on each. `before_write(path, current bytes)` is called for each file about to
    be replaced, under that lock (`HumanEditCommitter.commit_agent_write`: an agent's write a
    server has not committed yet is committed as the agent's, not in the revert).
    """
    sha = repo.resolve(rev)
    plan = check_revertible(repo, sha, revertible=revertible, append_only=append_only)
    with contextlib.ExitStack() as locks:
        for path in sorted(plan.files):
            target = repo.root / path
            if memory_root is not None and target.is_relative_to(memory_root):
                locks.enter_context(memory_file_lock(memory_root, target))
        return _revert_locked(repo, sha, plan, identity, guard, before_write)


def _revert_locked(
    repo: GitRepo,
    sha: str,
    plan: RevertPlan,
    identity: Identity | None,
    guard: SecretGuard | None,
    before_write: Callable[[str, bytes], object] | None,
) -> RevertResult:
    files = plan.files
    parents = repo.parents(sha)
    parent = parents[0] if parents else None
    planned: dict[str, str | None] = {}
    conflicts: list[str] = []
    found_bytes: dict[str, bytes | None] = {}
    for path in files:
        before = _text(path, repo.bytes_at(parent, path) if parent else None)
        after = _text(path, repo.bytes_at(sha, path))
        found_bytes[path] = _read_or_none(repo.root / path)
        current = _text(path, found_bytes[path])
        if current == before:
            continue
        if current == after:
            planned[path] = before
            continue
        by_bullets = _revert_bullets(path, before, after, current) if path.endswith(".md") else None
        if by_bullets is not None:
            planned[path] = by_bullets
            continue
        merged, conflicted = repo.merge_text(current or "", after or "", before or "")
        if conflicted:
            conflicts.append(path)
        else:
            planned[path] = None if before is None and not merged else merged
    if conflicts:
        raise RevertConflict(
            f"cannot revert {sha[:10]}: later changes to {', '.join(conflicts)} touch the same lines; "
            "edit the file by hand instead"
        )
    for path, text in planned.items():
        found = guard.find(text) if guard is not None and text else []
        if found:
            raise RevertConflict(
                f"cannot revert {sha[:10]}: {path} would be committed holding a secret "
                f"({', '.join(found)}); remove it from the file first"
            )
    operation = repo.operation_in_progress()
    if planned and operation is not None:
        # its commit would have to wait: the files reverted on disk would then be committed as an edit
        raise RevertConflict(
            f"cannot revert {sha[:10]} while {operation} is in progress in {repo.root}; finish it "
            "(or abort it) and run revert again"
        )
    detached = repo.detached_head() if planned else None
    if detached is not None:
        raise RevertConflict(f"cannot revert {sha[:10]}: {detached}, and run revert again")
    for path in planned:
        on_disk = found_bytes[path]
        if before_write is not None and on_disk is not None:
            before_write(path, on_disk)
    for path, text in planned.items():
        target = repo.root / path
        if text is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, text.encode("utf-8"))
    if not planned:
        return RevertResult(None, sha, [], plan.kept)
    subject = show_subject(repo, sha)
    message = _revert_message(sha, subject, list(planned), plan.kept)
    person = identity or repo.person_identity()
    new = repo.commit_paths([repo.root / path for path in planned], message, str(person))
    return RevertResult(new, sha, list(planned), plan.kept)


def _revert_bullets(path: str, before: str | None, after: str | None, current: str | None) -> str | None:
    """Undo a commit that only added/removed bullets: remove what it added, re-add what it removed.

    Bullets are what memory changes are made of, and a line-based merge would call the next
    bullet appended to the same section a conflict. None when the commit changed other text.
    """
    if after is None or current is None:
        return None
    change = markdown_diff(path, "modified", before or "", after)
    if change.text_added or change.text_removed:
        return None
    day = _day_of(path)
    text = current
    for section in change.sections:
        for bullet in section.added:
            text, found = _remove_bullet(text, section.section, bullet)
            if not found:
                return None  # changed since: let the line merge decide (and report the conflict)
        for bullet in section.removed:
            if (section.section, bullet) not in {(e.section, e.text) for e in parse_daily(text, day)}:
                text = add_bullet(text, day, section.section, bullet)
    return text


def _day_of(path: str) -> date:
    try:
        return date.fromisoformat(PurePosixPath(path).stem)
    except ValueError:
        return date.today()


def _remove_bullet(text: str, section: str, bullet: str) -> tuple[str, bool]:
    """`text` without the first bullet `bullet` of `section`, and whether there was one."""
    lines = text.split("\n")
    heading = section_heading(section).casefold()
    wanted = [line.rstrip() for line in render_bullet(bullet)]
    in_section = False
    for index, line in enumerate(lines):
        if line.startswith("#"):
            in_section = line.startswith("## ") and line[3:].strip().strip("#").strip().casefold() == heading
            continue
        block = [
            candidate.rstrip().replace("* ", "- ", 1) for candidate in lines[index : index + len(wanted)]
        ]
        if in_section and block == wanted:
            follows = lines[index + len(wanted)] if index + len(wanted) < len(lines) else ""
            if follows.startswith((" ", "\t")) and follows.strip():
                continue  # a longer bullet that merely starts with the same text
            return "\n".join(lines[:index] + lines[index + len(wanted) :]), True
    return text, False


def show_subject(repo: GitRepo, rev: str) -> str:
    """The subject line of a commit."""
    return "".join(repo.stream(["show", "-s", "--format=%s", repo.resolve(rev)])).strip()


def _revert_message(sha: str, subject: str, files: list[str], kept: Sequence[str] = ()) -> str:
    agents = dict.fromkeys(
        parts[1]
        for parts in (PurePosixPath(f).parts for f in files)
        if len(parts) >= 3 and parts[1] != "world"
    )
    trailers = [f"{TRAILER_KIND}: {EDIT_KIND}", *(f"{TRAILER_AGENT}: {agent}" for agent in agents)]
    body = f"This reverts commit {sha}."
    quoted = _shorten(subject, _MAX_REVERT_SUBJECT - len('revert: ""'))
    if quoted != subject:
        body += f"\nIts subject: {subject}"
    if kept:
        left = "\n".join(f"- {file}" for file in kept)
        body += f"\nLeft as they are (only memory and agent definitions are reverted):\n{left}"
    return f'revert: "{quoted}"\n\n{body}\n\n' + "\n".join(trailers) + "\n"


#: A revert's subject stays readable in `git log --oneline` however long the reverted one was
#: (or a revert of a revert of ...): the whole subject is in the body.
_MAX_REVERT_SUBJECT = 72


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _under(path: str, folders: Sequence[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _shown_text(path: Path) -> str | None:
    """A file's text for showing (bytes that are not UTF-8 replaced), None when there is none."""
    data = _read_or_none(path)
    return None if data is None else data.decode("utf-8", errors="replace")


def _text(path: str, data: bytes | None) -> str | None:
    """`data` as text, line endings as they are (a CRLF file stays CRLF); RevertRefused for a
    file that is not UTF-8 text, which a line merge would corrupt."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RevertRefused(
            f"{path} is not text: restore it with `git -C <data dir> checkout <commit> -- {path}`"
        ) from None


# --- gc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcReport:
    """Sizes in bytes: the `.git` folder before and after `git gc`, and the files git tracks."""

    git_before: int
    git_after: int
    tracked: int

    @property
    def ratio(self) -> float:
        """`.git` size after gc per byte of tracked files."""
        return self.git_after / self.tracked if self.tracked else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "git_before": self.git_before,
            "git_after": self.git_after,
            "tracked": self.tracked,
            "ratio": round(self.ratio, 3),
        }


def gc_repository(repo: GitRepo) -> GcReport:
    """Run `git gc` on the data repository and report the sizes around it."""
    before = folder_size(repo.git_dir)
    repo.gc()
    return GcReport(before, folder_size(repo.git_dir), tracked_size(repo))


def folder_size(folder: Path) -> int:
    """Bytes of every regular file under `folder`."""
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                continue
    return total


def tracked_size(repo: GitRepo) -> int:
    """Bytes of the files git tracks, as they are on disk (the working tree git has to store)."""
    out = "".join(repo.stream(["ls-files", "-z"]))
    total = 0
    for path in out.split("\0"):
        if path:
            try:
                total += os.lstat(repo.root / path).st_size
            except FileNotFoundError:
                continue
    return total
