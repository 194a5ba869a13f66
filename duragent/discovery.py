"""Which workspace a command works in: the nearest `duragent.yaml` up from the current folder, like git.

Only the standard library is used here: the fast paths of `send`/`chat` find the workspace
before anything heavy is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from duragent.errors import UsageError

CONFIG_FILENAME = "duragent.yaml"


class NotAWorkspace(UsageError):
    """No duragent.yaml in the current folder or any parent (exit status 2)."""

    def __init__(self, start: Path):
        super().__init__("not a Duragent workspace (or any parent): run duragent init")
        self.start = start


def find_config(start: Path | None = None) -> Path | None:
    """The nearest `duragent.yaml` in `start` (default: the current folder) or a parent, else None."""
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        path = candidate / CONFIG_FILENAME
        if path.is_file():
            # Relative to the current folder, so messages name it as the person would (`../duragent.yaml`).
            return Path(os.path.relpath(path)) if start is None else path
    return None


def require_config(start: Path | None = None) -> Path:
    """The nearest `duragent.yaml`; NotAWorkspace when there is none."""
    found = find_config(start)
    if found is None:
        raise NotAWorkspace((start or Path.cwd()).absolute())
    return found
