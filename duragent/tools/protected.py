"""Files only a person (or the runtime itself) changes: an agent's definition and policy, the
server's configuration, git's own files and the server's run files.

The file tools refuse to write them whatever the roots and the policy say; a bash command that
names one is never auto-allowed (`runtime.policy`); and a change a tool call made to one is
committed as the agent's, never as the person's (`runtime.loop`).
"""

from __future__ import annotations

import glob
import itertools
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

#: Names protected wherever they are: the definition and policy files, prompts, the config.
PROTECTED_NAMES = frozenset(
    {
        "agent.yaml",
        "policy.yaml",
        "policy.local.yaml",
        "SOUL.md",
        "SYSTEM_PROMPT.md",
        "INSTRUCTIONS.md",
        "duragent.yaml",
    }
)
#: Folders whose whole content is protected: git's own, and the server's run files (tokens).
PROTECTED_FOLDERS = frozenset({".git", "run"})
#: Run files, protected by name too (bash could reach them from anywhere).
RUN_FILES = frozenset({"tokens.json", "serve.json"})


def protected_reason(path: Path, protected_dirs: Iterable[Path] = ()) -> str | None:
    """Why `path` (absolute, resolved) must not be written by a tool, or None when it may be."""
    if path.name in PROTECTED_NAMES or path.name in RUN_FILES:
        return f"{path.name} is an agent's definition, policy or the server's configuration"
    if ".git" in path.parts:
        return "files under .git belong to git"
    for folder in protected_dirs:
        if path == folder or path.is_relative_to(folder):
            return f"{folder} holds an agent's definition or the server's own files"
    return None


def names_protected_file(command: str, words: Iterable[str] = ()) -> bool:
    """Whether a command line (its text, or any of its lexed `words`) names a protected file."""
    needles = (*PROTECTED_NAMES, *RUN_FILES, ".git")
    return any(needle in text for text in (command, *words) for needle in needles)


#: Glob characters: a word holding one is expanded the way bash would before it is checked.
_GLOB_CHARS = frozenset("*?[")
#: How many matches of one glob are checked: a glob matching more is asked about (where the
#: others lead, a symlink among them, is not known).
_GLOB_MATCHES_CHECKED = 1000
#: Files of /proc that hold another process's secrets (the server's environment: its API keys).
_PROC_SECRETS = frozenset({"environ", "mem"})
_CHANGE_DIRECTORY = frozenset({"cd", "pushd"})


def reached_outside_workdir(command: str, workdir: Path, data_dir: Path | None) -> Path | None:
    """A place a bash command line names that an auto-allowed command must not touch, or None.

    That is the data directory outside the work folder (other agents, sessions, memory, git, the
    run files with the server's tokens), a folder holding it, a protected file, or another
    process's environment under /proc. Each word is resolved as bash would see it: from the work
    folder (and from every folder a `cd` in the line goes to), `~` and braces expanded, globs
    matched against the disk, symlinks followed. A glob (`../../run/*`) or a symlink made
    earlier names nothing, but resolves to the tokens all the same. A glob matching more than
    `_GLOB_MATCHES_CHECKED` paths returns its folder: where the ones not checked lead is unknown.

    A glob over a large folder makes this slow (it reads the folder): the runtime calls it in a
    thread, never on the event loop.
    """
    words = shell_tokens(command)
    if words is None:
        return workdir  # unbalanced quotes: bash would refuse it, a person may read it
    data = data_dir.resolve() if data_dir is not None else None  # (once, not for each match)
    try:
        return _first_reached(words, workdir.resolve(), data)
    except _TooManyMatches as exc:
        return exc.folder


class _TooManyMatches(Exception):
    """A glob matched more than `_GLOB_MATCHES_CHECKED` paths (in `folder`)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"a glob in {folder} matches more than {_GLOB_MATCHES_CHECKED} paths")
        self.folder = folder


def _first_reached(words: list[str], workdir: Path, data: Path | None) -> Path | None:
    """The first path `words` reach that `_forbidden` refuses, or None (`workdir`, `data` resolved)."""
    bases = [workdir]
    for previous, word in zip(["", *words], words, strict=False):
        if previous in _CHANGE_DIRECTORY:
            bases += [path for base in bases for path in _expanded(word, base)]
    for word in words:
        for text in {word, word.partition("=")[2]} - {""}:
            for base in bases:
                for path in _expanded(text, base):
                    if _forbidden(path, workdir, data):
                        return path
    return None


def _forbidden(path: Path, workdir: Path, data: Path | None) -> bool:
    """Whether a resolved `path` is off limits (`workdir` and `data`, the data directory, resolved)."""
    if path == workdir or path.is_relative_to(workdir):
        return protected_reason(path) is not None
    if path.parts[:2] == ("/", "proc") and path.name in _PROC_SECRETS:
        return True
    if protected_reason(path) is not None:
        return True
    if data is None:
        return False
    return path.is_relative_to(data) or data.is_relative_to(path)


def shell_tokens(command: str) -> list[str] | None:
    """Words and operators as bash would split them, or None for unbalanced quotes."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


def _expanded(word: str, base: Path) -> list[Path]:
    """The paths `word` may stand for, from `base`: braces and `~` expanded, globs matched, resolved."""
    paths: list[Path] = []
    for text in _braces(word):
        text = os.path.expanduser(text)
        full = text if os.path.isabs(text) else os.path.join(base, text)
        if _GLOB_CHARS.intersection(text):
            found = list(itertools.islice(glob.iglob(full), _GLOB_MATCHES_CHECKED + 1))
            # (also the pattern's own folder: `../../run/*` over an empty folder still reaches it)
            full_dir = os.path.dirname(full.split("*")[0].split("?")[0].split("[")[0])
            if len(found) > _GLOB_MATCHES_CHECKED:
                raise _TooManyMatches(Path(full_dir or os.sep))
            candidates = [*found, full_dir or os.sep]
        else:
            candidates = [full]
        for candidate in candidates:
            try:
                paths.append(Path(candidate).resolve())
            except (OSError, RuntimeError, ValueError):
                continue  # a symlink loop or a NUL: bash fails on it too
    return paths


def _braces(word: str, depth: int = 0) -> list[str]:
    """Bash brace expansion of `word` (`tok{e,}ns` -> `tokens`, `toks`), at most a few hundred."""
    start = word.find("{")
    end = word.find("}", start + 1)
    if start < 0 or end < 0 or depth > 8:
        return [word]
    options = word[start + 1 : end].split(",")
    if len(options) < 2:
        return [word]
    head, tail = word[:start], word[end + 1 :]
    return [expanded for option in options for expanded in _braces(head + option + tail, depth + 1)][:256]
