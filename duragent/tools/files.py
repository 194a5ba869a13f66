"""File tools: `read_file`, `write_file`, `edit_file`, `list_files`, confined to the context's roots.

Paths are relative to the working directory (absolute ones are accepted). Every path is
resolved first (`..` folded, symlinks followed) and must then lie inside one of
`ToolContext.roots`; anything else is refused before a byte is read or written. Writes are
atomic (temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from duragent.errors import DuragentError
from duragent.ids import ulid
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.protected import is_the_tokens_file, protected_reason

DEFAULT_READ_LINES = 2000
#: Largest file `edit_file` changes (it reads the whole file to replace text in it).
MAX_EDIT_BYTES = 16 * 1024 * 1024
_BINARY_PROBE_BYTES = 8192
#: How much of a line longer than a read's limit is read at a time while it is skipped.
_SKIP_CHUNK = 64 * 1024
_SKIPPED_IN_LISTINGS = frozenset({".git"})


class PathRefused(DuragentError):
    """A path resolves outside every allowed root, or names something the tool cannot use."""


def resolve_inside_roots(raw: str, ctx: ToolContext, *, reading: bool = False) -> Path:
    """The absolute, symlink-free path for `raw`, or PathRefused when it escapes the roots.

    `reading` also admits the read-only roots (the folders of the agent's skills).
    """
    if "\x00" in raw:
        raise PathRefused(f"path {raw!r} contains a NUL byte")
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = ctx.workdir / candidate
    resolved = candidate.resolve()
    roots = ctx.roots + (ctx.readable_roots if reading else ())
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise PathRefused(f"{raw!r} resolves to {resolved}, outside the allowed folders ({allowed})")
    if is_the_tokens_file(resolved, ctx.git_ceiling):
        raise PathRefused(f"{raw!r} is the server's tokens file under another name: only a person reads it")
    return resolved


def resolve_writable(raw: str, ctx: ToolContext) -> Path:
    """Like `resolve_inside_roots`, also refusing protected files (an agent's definition, policy,
    the server's configuration, `.git`, run files), whatever the roots and the policy say."""
    path = resolve_inside_roots(raw, ctx)
    reason = protected_reason(path, ctx.protected_dirs)
    if reason is not None:
        raise PathRefused(f"{raw!r} is protected ({reason}): only a person changes it")
    return path


def display_path(path: Path, ctx: ToolContext) -> str:
    """`path` relative to the working directory when it is inside it, else absolute."""
    workdir = ctx.workdir.resolve()
    return str(path.relative_to(workdir)) if path.is_relative_to(workdir) else str(path)


def path_invocation(raw: str, ctx: ToolContext) -> str:
    """The policy text of a file tool's path: resolved, relative to workdir when inside it."""
    try:
        return display_path(resolve_inside_roots(raw, ctx, reading=True), ctx)
    except PathRefused:
        # The call will be refused when run; policy still sees the path the model gave.
        return raw


@dataclass(frozen=True)
class _ReadWindow:
    text: str
    first_line: int
    last_line: int
    more: bool
    stopped_at_bytes: bool
    #: The first line shown only in part (longer than the read's byte limit), if any.
    cut_line: int | None = None


class ReadFileArgs(ToolArgs):
    """Arguments of `read_file`."""

    path: str = Field(min_length=1, description="File to read, relative to the working directory.")
    offset: int = Field(1, ge=1, description="First line to return (1 = the first line).")
    limit: int = Field(DEFAULT_READ_LINES, ge=1, description="How many lines to return at most.")


class ReadFileTool(Tool[ReadFileArgs]):
    """Read a text file, a window of lines at a time."""

    name = "read_file"
    description = (
        "Read a text file (relative to the working directory). Returns up to `limit` lines "
        "starting at line `offset`; says how to continue when the file is longer."
    )
    Args = ReadFileArgs
    invocation_is_path = True

    async def run(self, args: ReadFileArgs, ctx: ToolContext) -> ToolResult:
        """Return the requested lines, or a failure naming the problem."""
        try:
            path = resolve_inside_roots(args.path, ctx, reading=True)
            window = await asyncio.to_thread(
                _read_window, path, args.offset, args.limit, ctx.limits.read_max_bytes
            )
        except PathRefused as exc:
            return ToolResult(False, str(exc))
        except OSError as exc:
            return ToolResult(False, f"cannot read {args.path}: {exc.strerror or exc}")
        content = window.text
        if window.more:
            limit = ctx.limits.read_max_bytes
            reason = f"stopped at {limit} bytes" if window.stopped_at_bytes else "more lines"
            content += (
                f"\n[{reason}: showing lines {window.first_line}-{window.last_line}; "
                f"call read_file with offset={window.last_line + 1} to continue]"
            )
        elif window.last_line < window.first_line:
            content = f"[{display_path(path, ctx)} has fewer than {window.first_line} lines]"
        if window.cut_line is not None:
            content += (
                f"\n[line {window.cut_line} is longer than {ctx.limits.read_max_bytes} bytes: "
                "only its start is shown]"
            )
        data = {"path": str(path), "first_line": window.first_line, "last_line": window.last_line}
        return ToolResult(True, content, data)

    def invocation(self, args: ReadFileArgs, ctx: ToolContext) -> str:
        """The resolved path."""
        return path_invocation(args.path, ctx)


def _read_window(path: Path, offset: int, limit: int, max_bytes: int) -> _ReadWindow:
    with open_regular_file(path) as handle:
        if b"\x00" in handle.read(_BINARY_PROBE_BYTES):
            raise PathRefused(f"{path} looks like a binary file; read_file shows text only")
        handle.seek(0)
        lines: list[bytes] = []
        size = 0
        cut_line = None
        for number, (line, whole) in enumerate(_bounded_lines(handle, max_bytes), start=1):
            if number < offset:
                continue
            if len(lines) == limit:
                return _window(lines, offset, more=True, stopped_at_bytes=False, cut_line=cut_line)
            if size + len(line) > max_bytes and lines:
                return _window(lines, offset, more=True, stopped_at_bytes=True, cut_line=cut_line)
            lines.append(line)
            size += len(line)
            if not whole and cut_line is None:
                cut_line = number
    return _window(lines, offset, more=False, stopped_at_bytes=False, cut_line=cut_line)


def open_regular_file(path: Path) -> BinaryIO:
    """`path` opened for reading; PathRefused unless it is a regular file.

    A pipe would block the read forever and a device may never end: the file is opened without
    waiting for a writer and looked at through the open handle (so a swap after a check cannot
    slip one in).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PathRefused(f"{path} is a folder; use list_files")
        if not stat.S_ISREG(mode):
            raise PathRefused(f"{path} is not a regular file (a device, socket or pipe)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _bounded_lines(handle: BinaryIO, keep: int) -> Iterator[tuple[bytes, bool]]:
    """Each line of `handle`, at most `keep` bytes of it, and whether it is whole: the rest of a
    longer line is read past a chunk at a time, never held (a file may be one line of gigabytes)."""
    while line := handle.readline(keep):
        if line.endswith(b"\n"):
            yield line, True
            continue
        skipped, ended = _skip_rest_of_line(handle)
        yield (line + b"\n" if ended else line), skipped == 0


def _skip_rest_of_line(handle: BinaryIO) -> tuple[int, bool]:
    """Read past the rest of the current line: how many bytes it had (its newline aside), and
    whether a newline ended it."""
    skipped = 0
    while chunk := handle.readline(_SKIP_CHUNK):
        if chunk.endswith(b"\n"):
            return skipped + len(chunk) - 1, True
        skipped += len(chunk)
    return skipped, False


def _window(
    lines: list[bytes], offset: int, *, more: bool, stopped_at_bytes: bool, cut_line: int | None
) -> _ReadWindow:
    text = b"".join(lines).decode("utf-8", errors="replace")
    return _ReadWindow(text, offset, offset + len(lines) - 1, more, stopped_at_bytes, cut_line)


class WriteFileArgs(ToolArgs):
    """Arguments of `write_file`."""

    path: str = Field(min_length=1, description="File to create or replace, relative to the workdir.")
    content: str = Field(description="The whole new content of the file.")


class WriteFileTool(Tool[WriteFileArgs]):
    """Create or replace a text file."""

    name = "write_file"
    description = (
        "Create a text file or replace its whole content (folders are created as needed). "
        "To change part of an existing file use edit_file."
    )
    Args = WriteFileArgs
    invocation_is_path = True

    async def run(self, args: WriteFileArgs, ctx: ToolContext) -> ToolResult:
        """Write the file atomically."""
        try:
            path = resolve_writable(args.path, ctx)
            if path.is_dir():
                raise PathRefused(f"{args.path} is a folder")
            data = args.content.encode("utf-8")
            created = await asyncio.to_thread(_write_atomically, path, data)
        except PathRefused as exc:
            return ToolResult(False, str(exc))
        except OSError as exc:
            return ToolResult(False, f"cannot write {args.path}: {exc.strerror or exc}")
        verb = "created" if created else "replaced"
        shown = display_path(path, ctx)
        data_info = {"path": str(path), "bytes": len(data)}
        return ToolResult(True, f"{verb} {shown} ({len(data)} bytes)", data_info)

    def invocation(self, args: WriteFileArgs, ctx: ToolContext) -> str:
        """The resolved path."""
        return path_invocation(args.path, ctx)


def _write_atomically(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` via a temp file beside it; True when the file is new."""
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = None if created else path.stat().st_mode & 0o7777
    temp = path.with_name(f".{path.name}.{ulid()}.tmp")
    try:
        with temp.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            temp.chmod(mode)  # an edit keeps the file's permissions (e.g. an executable script)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return created


class EditFileArgs(ToolArgs):
    """Arguments of `edit_file`."""

    path: str = Field(min_length=1, description="File to change, relative to the working directory.")
    old: str = Field(min_length=1, description="Exact text to replace (include enough context to be unique).")
    new: str = Field(description="Text to put in its place.")
    count: int | None = Field(
        None,
        ge=1,
        description="Replace all occurrences; must equal how many there are. Default: exactly one.",
    )


class EditFileTool(Tool[EditFileArgs]):
    """Replace exact text in a file."""

    name = "edit_file"
    description = (
        "Replace exact text in a file. `old` must occur exactly once (or exactly `count` times "
        "when count is given); otherwise nothing changes and the reply says how often it was found."
    )
    Args = EditFileArgs
    invocation_is_path = True

    async def run(self, args: EditFileArgs, ctx: ToolContext) -> ToolResult:
        """Apply the replacement, or explain why it was not applied."""
        try:
            path = resolve_writable(args.path, ctx)
            replaced = await asyncio.to_thread(_edit, path, args)
        except PathRefused as exc:
            return ToolResult(False, str(exc))
        except FileNotFoundError:
            return ToolResult(False, f"{args.path} does not exist; use write_file to create it")
        except OSError as exc:
            return ToolResult(False, f"cannot edit {args.path}: {exc.strerror or exc}")
        shown = display_path(path, ctx)
        plural = "s" if replaced != 1 else ""
        return ToolResult(True, f"replaced {replaced} occurrence{plural} in {shown}", {"path": str(path)})

    def invocation(self, args: EditFileArgs, ctx: ToolContext) -> str:
        """The resolved path."""
        return path_invocation(args.path, ctx)


def _edit(path: Path, args: EditFileArgs) -> int:
    if path.is_dir():
        raise PathRefused(f"{args.path} is a folder")
    with open_regular_file(path) as handle:
        raw = handle.read(MAX_EDIT_BYTES + 1)
    if len(raw) > MAX_EDIT_BYTES:
        raise PathRefused(
            f"{args.path} is larger than {MAX_EDIT_BYTES} bytes; edit_file changes smaller files "
            "(use bash, e.g. sed, for this one)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused(f"{args.path} is not UTF-8 text; edit_file changes text files only") from None
    found = text.count(args.old)
    expected = args.count or 1
    if found == 0:
        raise PathRefused(f"the old text was not found in {args.path}; read the file and copy it exactly")
    if found != expected:
        if args.count is None:
            raise PathRefused(
                f"the old text occurs {found} times in {args.path}; add surrounding lines to make it "
                f"unique, or set count={found} to replace them all"
            )
        raise PathRefused(
            f"the old text occurs {found} times in {args.path}, not {args.count}; nothing changed"
        )
    _write_atomically(path, text.replace(args.old, args.new).encode("utf-8"))
    return found


class ListFilesArgs(ToolArgs):
    """Arguments of `list_files`."""

    path: str = Field(".", description="Folder to list, relative to the working directory.")
    pattern: str | None = Field(
        None, description="Glob such as `*.py` or `**/*.md` (`**` descends into sub-folders). Default: `*`."
    )


class ListFilesTool(Tool[ListFilesArgs]):
    """List a folder's entries, optionally matching a glob."""

    name = "list_files"
    description = (
        "List files and folders (folders end with `/`) in a folder relative to the working "
        "directory; `pattern` is a glob such as `*.py` or `**/*.md`."
    )
    Args = ListFilesArgs
    invocation_is_path = True

    async def run(self, args: ListFilesArgs, ctx: ToolContext) -> ToolResult:
        """The matching entries, sorted, one per line."""
        try:
            folder = resolve_inside_roots(args.path, ctx, reading=True)
            if not folder.is_dir():
                raise PathRefused(f"{args.path} is not a folder")
            if args.pattern and args.pattern.startswith(("/", "~")):
                raise PathRefused(
                    f"pattern {args.pattern!r} must be relative to the folder listed; "
                    "put the folder in path instead"
                )
            entries, more = await asyncio.to_thread(_list, folder, args.pattern or "*", ctx)
        except PathRefused as exc:
            return ToolResult(False, str(exc))
        except (OSError, ValueError) as exc:
            return ToolResult(False, f"cannot list {args.path}: {exc}")
        if not entries:
            pattern = args.pattern or "*"
            return ToolResult(True, f"(nothing in {args.path} matches {pattern})", {"entries": []})
        content = "\n".join(entries)
        if more:
            content += f"\n[stopped after {len(entries)} entries; narrow the pattern]"
        return ToolResult(True, content, {"entries": entries})

    def invocation(self, args: ListFilesArgs, ctx: ToolContext) -> str:
        """The resolved folder."""
        return path_invocation(args.path, ctx)


def _list(folder: Path, pattern: str, ctx: ToolContext) -> tuple[list[str], bool]:
    entries: list[str] = []
    for match in sorted(_matches(folder, pattern)):
        if len(entries) == ctx.limits.list_max_entries:
            return entries, True
        try:
            resolved = resolve_inside_roots(str(match), ctx, reading=True)
        except PathRefused:
            continue  # a symlink pointing out of the roots is not shown (nor followed)
        name = display_path(match, ctx)
        entries.append(name + "/" if resolved.is_dir() else name)
    return entries, False


def _matches(folder: Path, pattern: str) -> Iterator[Path]:
    for match in folder.glob(pattern):
        if not _SKIPPED_IN_LISTINGS.intersection(match.relative_to(folder).parts):
            yield match
