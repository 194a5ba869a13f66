"""`duragent memory import`: merge a `memory export` archive into the memory folder, safely.

Every member is checked before anything is written: a regular file named
`memory/<agent|world>/<name>.md`, no absolute path, no `..`, no hidden or link entries, within
the size limits. Then each file is merged, never blindly replaced:

- a daily file (`YYYY-MM-DD.md`) that exists gets only the bullets it lacks, each added to its
  section with the same minimal edit the agent uses;
- any other Markdown file that exists gets the lines it lacks appended;
- a file that does not exist is written as it is in the archive.

Bytes that are not UTF-8 (a Latin-1 `é` a person saved, which `memory export` archives as it is)
are kept exactly: texts are decoded with `surrogateescape` and written back the same way.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath

from duragent.errors import DuragentError
from duragent.ids import check_name
from duragent.memory.markdown import add_bullet, parse_daily
from duragent.stores.filesystem.atomic import write_atomic
from duragent.stores.filesystem.locks import memory_file_lock

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
_DAILY = re.compile(r"^\d{4}-\d{2}-\d{2}\.md$")


class InvalidMemoryArchive(DuragentError):
    """The archive holds entries that are not memory files; nothing was imported."""

    exit_code = 2


@dataclass
class ImportReport:
    """What an import changed: repo paths written, and how."""

    created: list[Path] = field(default_factory=list)
    merged: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    entries_added: int = 0

    @property
    def written(self) -> list[Path]:
        """Files created or changed."""
        return [*self.created, *self.merged]


def read_memory_archive(archive: Path) -> dict[PurePosixPath, str]:
    """The archive's memory files (path under `memory/` -> text); InvalidMemoryArchive lists problems."""
    problems: list[str] = []
    files: dict[PurePosixPath, str] = {}
    total = 0
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                problem = _member_problem(member)
                if problem:
                    problems.append(f"{member.name}: {problem}")
                    continue
                if member.isdir():
                    continue
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise InvalidMemoryArchive(f"{archive} unpacks to more than {MAX_TOTAL_BYTES} bytes")
                handle = tar.extractfile(member)
                assert handle is not None  # a regular file, checked above
                text = handle.read().decode("utf-8", errors="surrogateescape")
                files[PurePosixPath(member.name).relative_to("memory")] = text
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InvalidMemoryArchive(f"{archive} is not a readable tar.gz archive: {error}") from error
    if problems:
        raise InvalidMemoryArchive(
            "not importing, the archive has entries that are not memory files:\n  " + "\n  ".join(problems)
        )
    return files


def _member_problem(member: tarfile.TarInfo) -> str | None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        return "path escapes the memory folder"
    if not path.parts or path.parts[0] != "memory":
        return "not under memory/"
    if member.isdir():
        return None if len(path.parts) <= 2 else "unexpected folder"
    if not member.isfile():
        return "not a regular file (links and devices are refused)"
    if len(path.parts) < 3:
        return "expected memory/<agent or world>/<file>.md"
    if any(part.startswith(".") for part in path.parts):
        return "hidden file"
    if path.suffix != ".md":
        return "not a Markdown file"
    if member.size > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES} bytes"
    if _DAILY.match(path.name):
        try:
            date.fromisoformat(path.stem)
        except ValueError:
            return f"{path.stem} is not a date (daily files are named YYYY-MM-DD.md)"
    try:
        for part in path.parts[1:-1]:
            check_name(part, "memory folder")
    except DuragentError as error:
        return str(error)
    return None


#: Called with an existing file about to be replaced, holding its lock.
BeforeWrite = Callable[[Path], object]


def import_memory(
    files: dict[PurePosixPath, str], memory_root: Path, *, before_write: BeforeWrite | None = None
) -> ImportReport:
    """Merge validated archive files (from `read_memory_archive`) into `memory_root`.

    `before_write(path)` is called, holding the file's lock, for each existing file about to be
    changed: what a running server's agent wrote there and has not committed yet is then committed
    as the agent's (`duragent.memory.files.commit_agents_write_first`), not in the import.
    """
    report = ImportReport()
    for relative, text in sorted(files.items()):
        target = memory_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # the memory store's lock: a write of the server's between our read and write is kept
        with memory_file_lock(memory_root, target):
            _import_file(relative, text, target, report, before_write)
    return report


def _import_file(
    relative: PurePosixPath, text: str, target: Path, report: ImportReport, before_write: BeforeWrite | None
) -> None:
    """Merge one archive file into `target` (held under its lock), noting what happened in `report`."""
    existing = target.read_bytes().decode("utf-8", errors="surrogateescape") if target.is_file() else None
    if existing is None:
        merged, added = text, len(parse_daily(text, date.min)) if _DAILY.match(relative.name) else 0
    elif _DAILY.match(relative.name):
        merged, added = _merge_daily(existing, text, date.fromisoformat(relative.stem))
    else:
        merged, added = _merge_lines(existing, text), 0
    report.entries_added += added
    if existing == merged:
        report.unchanged.append(target)
        return
    if before_write is not None and existing is not None:
        before_write(target)
    write_atomic(target, merged.encode("utf-8", errors="surrogateescape"))
    (report.created if existing is None else report.merged).append(target)


def _merge_daily(existing: str, incoming: str, day: date) -> tuple[str, int]:
    have = {(entry.section, entry.text) for entry in parse_daily(existing, day)}
    text, added = existing, 0
    for entry in parse_daily(incoming, day):
        if (entry.section, entry.text) not in have:
            text = add_bullet(text, day, entry.section, entry.text)
            have.add((entry.section, entry.text))
            added += 1
    return text, added


def _merge_lines(existing: str, incoming: str) -> str:
    have = {line.strip() for line in existing.splitlines()}
    missing = [line for line in incoming.splitlines() if line.strip() and line.strip() not in have]
    if not missing:
        return existing
    joined = existing if existing.endswith("\n") or not existing else existing + "\n"
    return joined + "\n" + "\n".join(missing) + "\n"
