"""An agent's work folder: where its tools, background processes and MCP servers run."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def prepare_workdir(folder: Path) -> Path:
    """Create the working directory and return it, git-ignored when it sits in a `work/` folder.

    The ignore file is checked whatever made the folder (a tool call, an MCP server started
    first): what tools leave in their scratch space never belongs in the agent's history. A
    folder that cannot be made raises OSError; an ignore file that cannot be written is logged,
    and the folder is still used.
    """
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
    ignore = folder.parent / ".gitignore"
    if folder.parent.name == "work" and not ignore.exists():
        try:
            ignore.write_text("*\n", encoding="utf-8")
        except OSError as exc:
            log.warning("could not write %s (what tools leave there may be committed): %s", ignore, exc)
    return folder
