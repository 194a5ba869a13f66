"""Where schedules and their run history live: files in the data directory, or PostgreSQL.

`ScheduleStore` is what the scheduler needs: the documents, changed in place so concurrent
changes never undo one another, a claim on each due run (so one run fires once however many
workers look at it), a mark on a run going on (so no worker starts the next beside it), and a
bounded run history. The filesystem store keeps one YAML file per schedule (committed to git,
editable by a person) and one JSON Lines file of runs per schedule (git-ignored: it is
rewritten when pruned).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from duragent.errors import ConfigError, NotFound, Problem
from duragent.scheduling.spec import Schedule, format_time, is_schedule_id
from duragent.stores.base import Change, ChangeListener, ignore_changes, utcnow
from duragent.stores.filesystem.atomic import write_atomic
from duragent.validation import validate_document
from duragent.yaml_source import load_yaml_text

if TYPE_CHECKING:
    from duragent.config import DuragentConfig

log = logging.getLogger(__name__)

#: Runs kept per schedule (older ones are dropped when the history is twice this long).
DEFAULT_RUNS_KEPT = 200


class ScheduleNotFound(NotFound):
    """No schedule has this id."""

    def __init__(self, schedule_id: str):
        super().__init__(f"no schedule {schedule_id!r} (see `duragent schedule list`)")
        self.schedule_id = schedule_id


@dataclass(frozen=True)
class RunRecord:
    """One line of a schedule's run history.

    `status` is `started` (claimed, about to run), `ok`, `error`, `missed` (a one-shot found
    too late after a restart) or `cancelled`.
    """

    slot: datetime
    status: str
    ts: datetime = field(default_factory=utcnow)
    attempts: int = 0
    duration_ms: int | None = None
    error: str | None = None
    session_id: str | None = None
    worker: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored JSON object (None fields left out)."""
        record: dict[str, Any] = {"ts": format_ms(self.ts), "slot": format_time(self.slot)}
        record["status"] = self.status
        for name in ("attempts", "duration_ms", "error", "session_id", "worker"):
            value = getattr(self, name)
            if value not in (None, 0) or (name == "attempts" and self.status not in ("started", "missed")):
                record[name] = value
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Parse a stored line (KeyError/ValueError when malformed)."""
        return cls(
            slot=parse_time(str(data["slot"])),
            status=str(data["status"]),
            ts=parse_time(str(data["ts"])),
            attempts=int(data.get("attempts") or 0),
            duration_ms=data.get("duration_ms"),
            error=data.get("error"),
            session_id=data.get("session_id"),
            worker=data.get("worker"),
        )


def format_ms(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (a `Z` suffix allowed)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Listing:
    """Every schedule that parses, and a problem (with file:line) for each that does not."""

    schedules: list[Schedule]
    problems: list[Problem] = field(default_factory=list)


class ScheduleStore(Protocol):
    """Schedule documents, run claims and run history."""

    async def load_all(self) -> Listing:
        """Every schedule, oldest first; unreadable ones are reported, not raised."""

    async def get(self, schedule_id: str) -> Schedule:
        """One schedule (ScheduleNotFound, or ConfigError when its file is invalid)."""

    async def put(self, schedule: Schedule, summary: str) -> None:
        """Create or replace a schedule; `summary` says why (it ends up in the commit message)."""

    async def update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule | None], summary: str
    ) -> Schedule:
        """Apply `change` (None: no change; it may raise to refuse) to the schedule as stored now,
        with no other change landing between the read and the write; returns the stored result."""

    async def delete(self, schedule_id: str) -> None:
        """Remove a schedule and its history (ScheduleNotFound when absent)."""

    async def claim(self, schedule_id: str, slot: datetime, worker: str) -> bool:
        """Take the run of `slot`: True for exactly one caller, ever (it records a `started` run)."""

    async def hold_run(self, schedule_id: str) -> bool:
        """Mark a run of the schedule as going on; False when one goes on already, in this
        server or any worker sharing the store (no worker holds the mark of one that died)."""

    async def release_run(self, schedule_id: str) -> None:
        """The run `hold_run` marked has ended."""

    async def record_run(self, schedule_id: str, run: RunRecord) -> None:
        """Append a run to the history (pruned to the newest runs)."""

    async def runs(self, schedule_id: str, limit: int = 20) -> list[RunRecord]:
        """The newest `limit` runs, oldest first."""

    async def close(self) -> None:
        """Release what the store holds."""


class FileScheduleStore:
    """`<folder>/<id>.yaml` per schedule and `<folder>/runs/<id>.jsonl` per history.

    Claims are kept in the process (one server per data directory holds its lock) and on disk
    as the `started` line, so a run a crash interrupted is not fired again after the restart.
    Runs going on, and changes in progress, are known in the process alone for the same reason.
    """

    def __init__(
        self, folder: Path, *, on_change: ChangeListener = ignore_changes, runs_kept: int = DEFAULT_RUNS_KEPT
    ):
        self.folder = folder
        self.runs_folder = folder / "runs"
        self.on_change = on_change
        self.runs_kept = runs_kept
        self._lock = asyncio.Lock()
        #: Held from the read to the write of each `update`, and by each `put`.
        self._writing = asyncio.Lock()
        self._run_lines: dict[str, int] = {}
        self._running: set[str] = set()

    def path_of(self, schedule_id: str) -> Path:
        """The schedule's YAML file."""
        if not is_schedule_id(schedule_id):
            raise ScheduleNotFound(schedule_id)
        return self.folder / f"{schedule_id}.yaml"

    async def load_all(self) -> Listing:
        """Every `*.yaml` in the folder, parsed."""
        return await asyncio.to_thread(self._list)

    def _list(self) -> Listing:
        schedules: list[Schedule] = []
        problems: list[Problem] = []
        if not self.folder.is_dir():
            return Listing(schedules)
        for path in sorted(self.folder.glob("sch_*.yaml")):
            try:
                schedules.append(read_schedule_file(path))
            except ConfigError as exc:
                problems.extend(exc.problems)
        schedules.sort(key=lambda s: (s.created_at, s.id))
        return Listing(schedules, problems)

    async def get(self, schedule_id: str) -> Schedule:
        """Read one schedule file."""
        path = self.path_of(schedule_id)
        if not path.is_file():
            raise ScheduleNotFound(schedule_id)
        return await asyncio.to_thread(read_schedule_file, path)

    async def put(self, schedule: Schedule, summary: str) -> None:
        """Write the file atomically and tell git."""
        path = self.path_of(schedule.id)
        async with self._writing:
            await asyncio.to_thread(self._write, path, render_schedule(schedule))
        self.on_change(Change((path,), "schedule", schedule.id, summary))

    async def update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule | None], summary: str
    ) -> Schedule:
        """Read the file, apply `change`, write it back, with no other change of this server between."""
        path = self.path_of(schedule_id)
        async with self._writing:
            current = await self.get(schedule_id)
            changed = change(current)
            if changed is None or changed == current:
                return current
            await asyncio.to_thread(self._write, path, render_schedule(changed))
        self.on_change(Change((path,), "schedule", schedule_id, summary))
        return changed

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())

    async def delete(self, schedule_id: str) -> None:
        """Remove the file (git records the deletion) and the run history."""
        path = self.path_of(schedule_id)
        async with self._writing:  # (an `update` in progress would write the file back)
            if not path.exists():
                raise ScheduleNotFound(schedule_id)
            path.unlink()
        (self.runs_folder / f"{schedule_id}.jsonl").unlink(missing_ok=True)
        self._run_lines.pop(schedule_id, None)
        self.on_change(Change((path,), "schedule", schedule_id, "removed"))

    async def claim(self, schedule_id: str, slot: datetime, worker: str) -> bool:
        """True unless this slot already has a run in the history."""
        async with self._lock:
            recent = await asyncio.to_thread(self._read_runs, schedule_id, self.runs_kept * 2)
            if any(run.slot == slot for run in recent):
                return False
            await asyncio.to_thread(self._append_run, schedule_id, RunRecord(slot, "started", worker=worker))
            return True

    async def hold_run(self, schedule_id: str) -> bool:
        """True unless a run of this schedule goes on in this server."""
        if schedule_id in self._running:
            return False
        self._running.add(schedule_id)
        return True

    async def release_run(self, schedule_id: str) -> None:
        """Forget the run `hold_run` marked."""
        self._running.discard(schedule_id)

    async def record_run(self, schedule_id: str, run: RunRecord) -> None:
        """Append one line; prune the file to the newest runs when it grows past twice that."""
        async with self._lock:
            await asyncio.to_thread(self._append_run, schedule_id, run)

    def _append_run(self, schedule_id: str, run: RunRecord) -> None:
        path = self._runs_path(schedule_id)
        lines = self._run_lines.get(schedule_id)
        line = json.dumps(run.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        if lines is None:  # the first append since the server started
            lines = _count_lines(path)
            if not _ends_a_line(path):
                # A crash tore the last line: end it, or this run (a claim, perhaps) would be
                # glued to it, skipped as malformed, and its slot run again after a restart.
                line = "\n" + line
        with path.open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        lines += 1
        if lines > 2 * self.runs_kept:
            kept = path.read_text(encoding="utf-8").splitlines(keepends=True)[-self.runs_kept :]
            write_atomic(path, "".join(kept).encode())
            lines = len(kept)
        self._run_lines[schedule_id] = lines

    def _runs_path(self, schedule_id: str) -> Path:
        if not is_schedule_id(schedule_id):
            raise ScheduleNotFound(schedule_id)
        if not self.runs_folder.is_dir():
            self.runs_folder.mkdir(parents=True, exist_ok=True)
            # Histories are rewritten when pruned and change every run: not for git.
            (self.runs_folder / ".gitignore").write_text("*\n")
        return self.runs_folder / f"{schedule_id}.jsonl"

    async def runs(self, schedule_id: str, limit: int = 20) -> list[RunRecord]:
        """The newest runs from the JSON Lines file (malformed lines skipped)."""
        return await asyncio.to_thread(self._read_runs, schedule_id, limit)

    def _read_runs(self, schedule_id: str, limit: int) -> list[RunRecord]:
        path = self.runs_folder / f"{schedule_id}.jsonl"
        if not is_schedule_id(schedule_id) or not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines()[-limit:]:
            try:
                records.append(RunRecord.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: skipping a malformed run line", path)
        return records

    async def close(self) -> None:
        """Nothing to release."""


def open_schedule_store(
    config: DuragentConfig, *, on_change: ChangeListener = ignore_changes
) -> ScheduleStore:
    """Files under `<data_dir>/schedules`, or PostgreSQL when sessions are there (stateless workers)."""
    runs_kept = config.scheduling.runs_kept
    if config.services.session.backend == "postgres":
        from duragent.scheduling.postgres import PostgresScheduleStore
        from duragent.stores.factory import postgres_url

        return PostgresScheduleStore(postgres_url(config, "session"), runs_kept=runs_kept)
    return FileScheduleStore(schedules_folder(config), on_change=on_change, runs_kept=runs_kept)


def schedules_folder(config: DuragentConfig) -> Path:
    """`<data_dir>/schedules`."""
    return config.data_path / "schedules"


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(1 for _ in file)


def _ends_a_line(path: Path) -> bool:
    """True when the file is empty, absent, or ends with a newline."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            if file.tell() == 0:
                return True
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"
    except FileNotFoundError:
        return True


def read_schedule_file(path: Path) -> Schedule:
    """Parse one schedule file; ConfigError with file:line for anything wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    schedule = parse_schedule_text(text, str(path))
    if schedule.id != path.stem:
        raise ConfigError(f"{path}: id {schedule.id!r} does not match the file name (expected {path.stem!r})")
    return schedule


def parse_schedule_text(text: str, source: str) -> Schedule:
    """Parse a schedule document (`source` names it in errors)."""
    doc = load_yaml_text(text, source, {}, interpolate=False)
    schedule, _warnings = validate_document(Schedule, doc)
    return schedule


def render_schedule(schedule: Schedule) -> str:
    """The YAML text of a schedule file."""
    header = "# A Duragent schedule: edit or delete this file and the server picks the change up.\n"
    return header + _dump_yaml(schedule.to_document(), width=100)


def _dump_yaml(document: dict[str, Any], *, width: int = 80) -> str:
    """`document` as YAML people can read (text as is), that reads back as the same document.

    PyYAML writes U+0085 (NEL) as is but reads it as a line break (`x<NEL>y` came back `x y`):
    a document holding such a character is written double-quoted, where it is escaped.
    """
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=width)
    if yaml.safe_load(body) != document:
        body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=width, default_style='"')
    return body
