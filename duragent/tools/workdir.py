"""An agent's work folder: where its tools, background processes and MCP servers run."""

from __future__ import annotations

from pathlib import Path


def prepare_workdir(folder: Path) -> Path:
    """Create the working directory and return it, git-ignored when it sits in a `work/` folder.

    The ignore file is checked whatever made the folder (a tool call, an MCP server started
    first): what tools leave in their scratch space never belongs in the agent's history.
    """
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
    ignore = folder.parent / ".gitignore"
    if folder.parent.name == "work" and not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return folder
