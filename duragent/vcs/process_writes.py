"""Changes no person made: those of the background processes agents started.

A background process (`background_process` spawn) goes on after the batch of tool calls that
started it has ended, so the runtime cannot report what it writes as the agent's change the way
it reports a tool call's, and the kernel does not say which process wrote a file. The rule the
human-edit watcher applies instead:

    a file in an agent's own folders (`memory/<agent>/`, `agents/<agent>/`), changed while one
    of that agent's background processes ran, is the agent's change; so is a file in a folder
    no one agent owns (`memory/world/`, the shared `skills/` and `tools/`) changed while any
    agent's background process ran.

"While it ran" comes from the records the server keeps of its processes (`<data dir>/processes/
<handle>.yaml`: `started_at`, and `ended_at` once it ended, written after its exit) and is
compared with when the change was made: the file's ctime, which the kernel sets on every write
and rename and no program can set back (for a deleted file, when the watcher saw it go).

A person's edit of those folders while such a process runs is taken for the agent's: nothing
tells the two apart, and a tool's change must never be put under a person's name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from duragent.errors import ConfigError

log = logging.getLogger(__name__)

#: Where the server keeps its background processes' records, under the data directory.
PROCESSES_FOLDER = "processes"
#: File times come from the kernel's coarse clock (a tick, up to 10 ms, behind the real time), a
#: process's start from the precise one: a write right after the start may look a tick older.
_CLOCK_TICK = 0.05


@dataclass(frozen=True)
class ProcessSpan:
    """When one background process of an agent ran (`ended` None: it still runs)."""

    handle: str
    agent: str
    started: float
    ended: float | None

    def covers(self, at: float) -> bool:
        """True when a change made at `at` (seconds since the epoch) was made while it ran."""
        return self.started - _CLOCK_TICK <= at and (self.ended is None or at <= self.ended)


def read_process_spans(folder: Path) -> list[ProcessSpan]:
    """The spans of the processes recorded in `folder` (unreadable records are skipped)."""
    from duragent.processes.record import read_record

    spans: list[ProcessSpan] = []
    for path in sorted(folder.glob("proc_*.yaml")):
        try:
            record = read_record(path)
        except ConfigError as error:
            log.debug("not reading %s: %s", path, error)
            continue
        ended = record.ended_at.timestamp() if record.ended_at is not None else None
        spans.append(ProcessSpan(record.handle, record.agent, record.started_at.timestamp(), ended))
    return spans


def change_time(path: Path, seen_at: float | None) -> float | None:
    """When the file was last changed: its ctime, else (it is gone) when the watcher saw it go."""
    try:
        return os.stat(path).st_ctime
    except FileNotFoundError:
        return seen_at


def process_that_changed(
    spans: Sequence[ProcessSpan], owner: str | None, at: float | None
) -> ProcessSpan | None:
    """The process a change made at `at` to a file of agent `owner` (None: a shared folder's) is
    taken to come from, by the rule above; None when the change is a person's."""
    if at is None:
        return None
    for span in spans:
        if (owner is None or span.agent == owner) and span.covers(at):
            return span
    return None
