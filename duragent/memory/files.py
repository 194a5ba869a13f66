"""Memory files as a person edits them: each agent's MEMORY.md and daily files, read and saved.

A save writes the file atomically and commits it as the person (their git identity, a
`Duragent-Kind: edit` trailer), apart from the agent's own commits, as `duragent memory edit`
does. Only the filesystem memory backend keeps memory as files.

Every write holds the memory store's lock on the file, and first commits what the agent last
wrote there as the agent's when a running server's committer has not yet (within its debounce):
the person's commit that follows must not carry the agent's lines in under their name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from duragent.errors import InvalidName, UsageError
from duragent.ids import check_name
from duragent.stores.filesystem.atomic import write_atomic
from duragent.stores.filesystem.locks import memory_file_lock
from duragent.workspace import Workspace

LONG_TERM = "MEMORY.md"
_DAY_FILE = re.compile(r"\d{4}-\d{2}-\d{2}\.md")


@dataclass(frozen=True)
class SavedMemory:
    """A saved memory file: its repo-relative path and the commit (None: unchanged or git off)."""

    path: str
    sha: str | None
    committed_as: str | None


def memory_folder(workspace: Workspace, agent: str) -> Path:
    """`<memory>/<agent>/` (UsageError when memory is not kept in files)."""
    if workspace.config.services.memory.backend != "filesystem":
        raise UsageError("memory is in PostgreSQL, not in files: edit it with `duragent memory edit`")
    return workspace.config.service_path("memory") / check_name(agent, "agent name")


def memory_file_names(workspace: Workspace, agent: str) -> list[str]:
    """MEMORY.md first (listed even before it exists), then the daily files, newest first."""
    folder = memory_folder(workspace, agent)
    days = sorted((p.name for p in folder.glob("*.md") if _is_day_file(p.name)), reverse=True)
    return [LONG_TERM, *days]


def memory_path(workspace: Workspace, agent: str, name: str) -> Path:
    """The file `name` (MEMORY.md or YYYY-MM-DD.md) of `agent`; InvalidName for anything else."""
    if name != LONG_TERM and not _is_day_file(name):
        raise InvalidName(f"invalid memory file {name!r}: MEMORY.md or a day like 2026-01-31.md")
    return memory_folder(workspace, agent) / name


def _is_day_file(name: str) -> bool:
    """`YYYY-MM-DD.md` of a day that exists (the agent reads no `2026-13-45.md`)."""
    if not _DAY_FILE.fullmatch(name):
        return False
    try:
        date.fromisoformat(name[:-3])
    except ValueError:
        return False
    return True


def read_memory_file(workspace: Workspace, agent: str, name: str) -> str:
    """The file's text ("" when it does not exist yet), each byte that is not UTF-8 as U+FFFD."""
    path = memory_path(workspace, agent, name)
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


class MemoryChanged(UsageError):
    """The file holds other text than the edit started from: nothing was saved."""

    def __init__(self, current: str):
        super().__init__("the file changed since it was opened; nothing was saved")
        self.current = current


class MemoryFileNotText(UsageError):
    """The file holds bytes that are not UTF-8 (a Latin-1 `é`): a save from the text shown, with
    U+FFFD in their place, would destroy them; nothing was saved."""

    def __init__(self, path: Path, error: UnicodeDecodeError):
        super().__init__(
            f"{path} is not UTF-8 text (byte {error.start} is 0x{error.object[error.start]:02x}); saving "
            "here would replace such bytes with \ufffd: edit it with `duragent memory edit`, which keeps "
            "them, or save it as UTF-8 in an editor; nothing was saved"
        )


def text_stamp(text: str) -> str:
    """A digest of a memory file's text as `read_memory_file` returns it (what an editor opened)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_memory_file(
    workspace: Workspace, agent: str, name: str, text: str, *, opened: str | None = None
) -> SavedMemory:
    """Write the file and commit it as the person's edit (blocking: call it in a thread).

    `opened`: the `text_stamp` of the text the edit started from; when the file holds other text
    now (the agent wrote meanwhile), MemoryChanged and nothing is saved (checked under the file's
    lock, so no write lands between the check and the save).
    """
    path = memory_path(workspace, agent, name)
    text = text.replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with memory_file_lock(workspace.config.service_path("memory"), path):
        found = commit_agents_write_first(workspace, path)
        try:
            decoded = "" if found is None else found.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MemoryFileNotText(path, error) from None
        if opened is not None:
            # (as `read_memory_file` reads it: universal newlines)
            current = decoded.replace("\r\n", "\n").replace("\r", "\n")
            if not hmac.compare_digest(opened, text_stamp(current)):
                raise MemoryChanged(current)
        if decoded.count("\r\n") * 2 > decoded.count("\n"):
            # a file written on Windows stays CRLF (the editor was shown it with LF): else every
            # line of it would change in git
            text = text.replace("\n", "\r\n")
        write_atomic(path, text.encode("utf-8"))
    edits = workspace.human_edits
    relative = str(path.relative_to(workspace.config.data_path))
    if edits is None:
        return SavedMemory(relative, None, None)
    relative = edits.repo.relative(path)
    result = edits.commit([relative], summary="in the dashboard")
    return SavedMemory(relative, result.sha, str(edits.repo.person_identity()) if result.sha else None)


def commit_agents_write_first(workspace: Workspace, path: Path) -> bytes | None:
    """The file's bytes (None when missing), committed as the agent's if the agent wrote them last
    and nobody committed them yet. Call it holding the file's lock, before replacing the file."""
    try:
        found = path.read_bytes()
    except FileNotFoundError:
        return None
    edits = workspace.human_edits
    if edits is not None:
        edits.commit_agent_write(edits.repo.relative(path), found)
    return found
