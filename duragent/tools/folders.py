"""Tool folders: each subfolder of `tools/` holding an executable `run` (or `run.*`) is a cli tool.

The layout of Rust Duragent: `.duragent/agents/<agent>/tools/<name>/run` (the agent's own) and
`.duragent/tools/<name>/run` (every agent's); the folder's README.md is the tool's description.
The tool runs like a `type: cli` tool: in the agent's working directory, with the model's `args`
split but never given to a shell, the same environment, and the policy deciding on `<name>`
with the args as its text. Folders are scanned at the start of every turn, and by the
`reload_tools` tool in the middle of one.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duragent.agents.spec import NAME_PATTERN, CliToolSpec
from duragent.errors import Location, Problem
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.bash import CliTool
from duragent.tools.files import PathRefused, open_regular_file

TOOLS_FOLDER = "tools"
README = "README.md"
#: Longest README offered as a description (the rest is cut: it goes to the model every turn).
MAX_DESCRIPTION_CHARS = 2000
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class ToolFolder:
    """A valid tool folder: its name, its program and its description."""

    name: str
    directory: Path
    program: Path
    description: str


class FolderTool(CliTool):
    """The program of a tool folder, offered to the model under the folder's name."""

    def __init__(self, folder: ToolFolder):
        super().__init__(
            CliToolSpec(
                name=folder.name, command=shlex.quote(str(folder.program)), description=folder.description
            )
        )
        self.folder = folder


def tool_folders_dirs(agent_dir: Path | None, data_dir: Path | None) -> list[Path]:
    """Where tool folders are looked for: the workspace's `tools/`, then the agent's (which wins)."""
    dirs = []
    if data_dir is not None:
        dirs.append(data_dir / TOOLS_FOLDER)
    if agent_dir is not None:
        dirs.append(agent_dir / TOOLS_FOLDER)
    return dirs


def has_tool_folders(agent_dir: Path | None, data_dir: Path | None) -> bool:
    """Whether any tool folder (valid or not) exists: then `reload_tools` is worth offering."""
    for folder in tool_folders_dirs(agent_dir, data_dir):
        try:
            with os.scandir(folder) as entries:
                if any(entry.is_dir() and not entry.name.startswith(".") for entry in entries):
                    return True
        except OSError:
            continue  # no such folder
    return False


def discover_tool_folders(
    agent_dir: Path | None, data_dir: Path | None
) -> tuple[dict[str, ToolFolder], list[Problem]]:
    """The agent's tool folders by name (its own win over the workspace's) and the invalid ones."""
    found: dict[str, ToolFolder] = {}
    problems: list[Problem] = []
    for folder in tool_folders_dirs(agent_dir, data_dir):
        tools, wrong = scan_tool_folders(folder)
        found.update((tool.name, tool) for tool in tools)
        problems += wrong
    return found, problems


def scan_tool_folders(folder: Path) -> tuple[list[ToolFolder], list[Problem]]:
    """The valid tool folders under `folder` and a problem for each subfolder that is not one."""
    if not folder.is_dir():
        return [], []
    tools: list[ToolFolder] = []
    problems: list[Problem] = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        outcome = _read_folder(child)
        if isinstance(outcome, Problem):
            problems.append(outcome)
        else:
            tools.append(outcome)
    return tools, problems


def add_folder_tools(tools: MutableMapping[str, Any], folders: dict[str, ToolFolder]) -> list[Problem]:
    """Replace the folder tools in `tools` with `folders`; a name another tool has is a problem."""
    for name in [name for name, tool in tools.items() if isinstance(tool, FolderTool)]:
        del tools[name]
    problems = []
    for name, folder in sorted(folders.items()):
        if name in tools:
            problems.append(
                Problem(
                    f"tool folder {name!r} is skipped: the agent already has a tool of that name",
                    Location(_shown(folder.directory)),
                )
            )
            continue
        tools[name] = FolderTool(folder)
    return problems


def reload_summary(before: set[str], after: set[str], problems: list[Problem]) -> str:
    """What `reload_tools` tells the model: the folder tools now, what changed, what was skipped."""
    lines = [f"tool folders: {', '.join(sorted(after)) or 'none'}"]
    if after - before:
        lines.append(f"added: {', '.join(sorted(after - before))}")
    if before - after:
        lines.append(f"removed: {', '.join(sorted(before - after))}")
    lines += [f"skipped: {problem}" for problem in problems]
    return "\n".join(lines)


def _read_folder(directory: Path) -> ToolFolder | Problem:
    def problem(message: str) -> Problem:
        return Problem(message, Location(_shown(directory)))

    if not _NAME.fullmatch(directory.name):
        return problem("a tool folder's name must be 1-64 letters, digits, '-' or '_'")
    from duragent.vcs.watch import is_editor_junk

    with os.scandir(directory) as entries:
        # (an editor's backup or swap file beside the program, `run.py~` or `.run.py.swp`, is
        # no second program: counted, it would take the tool away until it is deleted)
        programs = sorted(
            entry.name
            for entry in entries
            if (entry.name == "run" or entry.name.startswith("run."))
            and not is_editor_junk(entry.name)
            and entry.is_file()
        )
    if not programs:
        return problem("no `run` program in this tool folder (an executable file named run or run.*)")
    if len(programs) > 1:
        return problem(f"several programs ({', '.join(programs)}): a tool folder holds one run or run.* file")
    program = directory.absolute() / programs[0]
    if not os.access(program, os.X_OK):
        return problem(f"{program.name} is not executable (chmod +x {_shown(program)})")
    return ToolFolder(directory.name, directory, program, _description(directory))


def _description(directory: Path) -> str:
    text = _readme_start(directory / README)
    if not text:
        return f"Run the program of the tool folder {directory.name} with the given arguments."
    return text if len(text) <= MAX_DESCRIPTION_CHARS else text[: MAX_DESCRIPTION_CHARS - 1] + "…"


def _readme_start(readme: Path) -> str:
    """The start of a README, enough for the description; "" when there is none, or it is no
    regular file (a pipe would block the scan for good, /dev/zero would never end)."""
    try:
        with open_regular_file(readme) as handle:
            # (a character is at most 4 bytes in UTF-8: the description never needs more)
            start = handle.read(MAX_DESCRIPTION_CHARS * 4 + 1)
    except (OSError, PathRefused):
        return ""
    return start.decode("utf-8", errors="replace").strip()


def _shown(path: Path) -> str:
    from duragent.agents.loader import display_path

    return display_path(path.absolute())


class ReloadArgs(ToolArgs):
    """Arguments of `reload_tools` (none)."""


class ReloadToolsTool(Tool[ReloadArgs]):
    """Scan the tool folders again, so a tool added or changed during the turn can be called."""

    name = "reload_tools"
    description = (
        "Scan the tool folders again (tools/<name>/run) and update your tools: use it after "
        "creating or changing a tool folder. Says which tools were added and removed."
    )
    Args = ReloadArgs

    def __init__(self, rescan: Callable[[], Awaitable[str]]):
        self.rescan = rescan

    async def run(self, args: ReloadArgs, ctx: ToolContext) -> ToolResult:
        """Rescan and report the change."""
        return ToolResult(True, await self.rescan())

    def invocation(self, args: ReloadArgs, ctx: ToolContext) -> str:
        """Nothing: the call has no arguments."""
        return ""
