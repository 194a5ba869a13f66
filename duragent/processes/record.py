"""The metadata of one background process (`.duragent/processes/<handle>.yaml`).

A record is written when the process starts and again when it ends; `reported` says whether
its `[process finished]` message reached the owning session, so a completion that a crash
interrupted is reported at the next start instead of being lost.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from duragent.errors import ConfigError, NotFound, UsageError
from duragent.ids import new_id
from duragent.validation import validate_document
from duragent.yaml_source import load_yaml_text

ProcessStatus = Literal["running", "exited", "killed", "timed_out", "lost"]
#: Statuses of a process that has ended (`lost`: the server restarted and could not follow it).
ENDED = frozenset({"exited", "killed", "timed_out", "lost"})
_HANDLE = re.compile(r"proc_[A-Za-z0-9]{1,64}")
#: How the message telling a session that one of its processes ended starts (clients and tests
#: recognise it by this), followed by the process's handle.
FINISHED_MARKER = "[process finished]"
_FINISHED = re.compile(r"^\[process finished\] (proc_[A-Za-z0-9]{1,64})\b")


class ProcessNotFound(NotFound):
    """No process of this agent has this handle."""

    def __init__(self, handle: str):
        # (no hint where to look: the tool, the schedule tool, the CLI and the API each add their own)
        super().__init__(f"no background process {handle!r}")
        self.handle = handle


def new_handle() -> str:
    """A fresh process handle, `proc_<ULID>`."""
    return new_id("proc")


def finished_process_of(content: str) -> str | None:
    """The handle when a user message is a `[process finished]` message, else None."""
    match = _FINISHED.match(content)
    return match.group(1) if match else None


def is_handle(value: str) -> bool:
    """True when `value` has the form of a process handle (safe as a file name)."""
    return bool(_HANDLE.fullmatch(value))


class ProcessRecord(BaseModel):
    """What the server knows of one background process."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    handle: str
    agent: str
    session_id: str
    command: str
    #: The working directory, relative to the agent's work folder (`.` for the folder itself).
    workdir: str = "."
    label: str | None = None
    interactive: bool = False
    status: ProcessStatus = "running"
    pid: int | None = None
    #: The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for it.
    pid_started: int | None = None
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    timeout_seconds: float | None = None
    #: Bytes of output written so far (the log keeps only the newest, see `log_cap_bytes`).
    output_bytes: int = 0
    #: Why it ended when that was not its own exit (killed, timed out, lost).
    reason: str | None = None
    reported: bool = Field(False, description="Whether the session was told that the process ended.")
    #: The schedule whose task's turn started it: the turn its end starts is that task's too, so
    #: it is bound by the same rules (`scheduling.tasks_may_schedule`).
    scheduled_by: str | None = None

    @property
    def ended(self) -> bool:
        """True once the process is over."""
        return self.status in ENDED

    def duration_seconds(self, now: datetime) -> float:
        """How long it ran (until now while it runs)."""
        return max(((self.ended_at or now) - self.started_at).total_seconds(), 0.0)

    def outcome(self) -> str:
        """`exited with code 0`, `killed`, `timed out`, `lost` (with the reason), or `running`."""
        if self.status == "exited":
            return f"exited with code {self.exit_code}"
        if self.status == "running":
            return "running"
        text = self.status.replace("_", " ")
        if self.exit_code is not None:
            text += f" (exit code {self.exit_code})"
        return f"{text}: {self.reason}" if self.reason else text

    def to_document(self) -> dict[str, object]:
        """The YAML document (None fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


def render_record(record: ProcessRecord) -> str:
    """The YAML text of a record file."""
    document = record.to_document()
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(text) != document:
        # PyYAML writes U+0085 (NEL) as is but reads it back as a line break: a command holding
        # one is written double-quoted (where it is escaped), so the record reads back as it was
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_style='"')
    return text


def read_record(path: Path) -> ProcessRecord:
    """Parse a record file; ConfigError with file:line when it is not a valid record."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    document = load_yaml_text(text, str(path), {}, interpolate=False)
    record, _warnings = validate_document(ProcessRecord, document)
    if record.handle != path.stem:
        raise ConfigError(f"{path}: handle {record.handle!r} does not match the file name")
    return record


def check_followable(record: ProcessRecord, agent: str) -> None:
    """Refuse `until_process` on another agent's process (ProcessNotFound) or one that ended (UsageError)."""
    if record.agent != agent:
        raise ProcessNotFound(record.handle)
    if record.ended:
        raise UsageError(f"process {record.handle} has already ended ({record.outcome()})")


def read_stored(folder: Path, handle: str) -> ProcessRecord:
    """The record of `handle` in a processes folder (ProcessNotFound when there is none)."""
    path = folder / f"{handle}.yaml"
    if not is_handle(handle) or not path.is_file():
        raise ProcessNotFound(handle)
    return read_record(path)
