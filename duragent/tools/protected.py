"""Files only a person (or the runtime itself) changes: an agent's definition and policy, the
server's configuration, git's own files and the server's run files.

The file tools refuse to write them whatever the roots and the policy say; a bash command that
names one is never auto-allowed (`runtime.policy`); and a change a tool call made to one is
committed as the agent's, never as the person's (`runtime.loop`).
"""

from __future__ import annotations

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
