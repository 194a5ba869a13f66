"""The three store protocols and the records that cross them.

The operations are the deployment plan's (`SessionStore.append/read/delete`,
`MemoryStore.put/query/export`, `ArtifactStore.put/get/list`) plus the few a user needs,
each marked "Addition" in its docstring and documented in docs/sessions.md / docs/memory.md.
Every backend (filesystem, PostgreSQL, S3) implements these and passes the same contract tests
in tests/contract/.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

from duragent.errors import DuragentError, NotFound, ServiceUnavailable
from duragent.terminal_text import shortened

SessionStatus = Literal["active", "running", "paused", "ended"]
MemorySection = Literal["decision", "preference", "fact"]

#: Markdown headings of the daily memory file, in the order they are written.
SECTION_HEADINGS: dict[str, str] = {
    "decision": "Decisions Made",
    "preference": "Preferences Learned",
    "fact": "Facts Stored",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


# --- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionEvent:
    """One line of a session's append-only log. `seq` is 1, 2, 3... with no gaps."""

    seq: int
    id: str
    ts: datetime
    type: str
    payload: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON object stored for this event (one line of events.jsonl)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "ts": self.ts.isoformat().replace("+00:00", "Z"),
            "type": self.type,
            "payload": self.payload,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SessionEvent:
        """Parse a stored JSON object; raises KeyError/ValueError/TypeError when malformed."""
        ts = datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
        payload = record.get("payload", {})
        if not isinstance(payload, dict) or not isinstance(record["type"], str):
            raise ValueError("malformed event record")
        return cls(int(record["seq"]), str(record["id"]), ts, record["type"], payload)


@dataclass(frozen=True)
class SessionReadOptions:
    """Which events `SessionStore.read` returns: after a seq, of some types, at most `limit`."""

    after_seq: int = 0
    limit: int | None = None
    types: frozenset[str] | None = None


@dataclass(frozen=True)
class SessionSnapshot:
    """state.yaml: enough to resume without replaying the whole log (events after `last_seq` are replayed)."""

    session_id: str
    agent: str
    status: SessionStatus
    last_seq: int
    created_at: datetime
    updated_at: datetime
    on_disconnect: Literal["continue", "pause"] = "continue"
    conversation: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    pending_approvals: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionSummary:
    """A row of `session list`: what a session is without loading it."""

    session_id: str
    agent: str
    status: SessionStatus
    created_at: datetime
    updated_at: datetime
    last_seq: int
    #: The name given at creation (`session fork --name`, `metadata.name`), if any.
    name: str | None = None
    #: The start of the first message a person sent (`first_message`), if the log's first
    #: `FIRST_MESSAGE_WITHIN` events hold one: what tells sessions apart in a list.
    first_message: str | None = None


#: How many events from the start of a log a listing looks through for its first message.
FIRST_MESSAGE_WITHIN: Final = 16
#: How much of the first message a listing shows (characters, whitespace collapsed).
FIRST_MESSAGE_CHARS: Final = 100


def first_message(event_type: str, payload: object) -> str | None:
    """The shown start of a `user_message` event's text (None for another event, a silent
    message or one without text): whitespace collapsed, `FIRST_MESSAGE_CHARS` at most."""
    if event_type != "user_message" or not isinstance(payload, dict) or payload.get("silent"):
        return None
    content = payload.get("content")
    if isinstance(content, list):  # content parts: their text, in order
        content = " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    if not isinstance(content, str):
        return None
    text = " ".join(content.split())
    if not text:
        return None
    return shortened(text, FIRST_MESSAGE_CHARS)


#: A session's place in a listing: (updated_at, session_id). Listings run from the greatest key
#: down (newest activity first, a tie by the greater id first); a page's last key starts the next.
ListKey = tuple[datetime, str]


def list_key(summary: SessionSummary) -> ListKey:
    """The summary's place in a listing (see `ListKey`)."""
    return (summary.updated_at, summary.session_id)


def session_name(first: SessionEvent | None) -> str | None:
    """The `metadata.name` a session_start event gives its session, if any."""
    if first is None or first.type != "session_start":
        return None
    return name_in_start(first.payload)


def name_in_start(payload: object) -> str | None:
    """The `metadata.name` in a session_start event's payload, if it is a non-empty string."""
    metadata = payload.get("metadata") if isinstance(payload, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name else None


def already_durable() -> asyncio.Future[None]:
    """The `append_unsynced` answer of a backend whose batches are durable once written."""
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


class SessionNotFound(NotFound):
    """No session with this id exists in the store."""

    def __init__(self, session_id: str):
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class SequenceConflict(DuragentError):
    """An append whose seq is not the next one: another writer got there first."""

    def __init__(self, session_id: str, expected: int, got: int):
        super().__init__(f"session {session_id}: expected seq {expected}, got {got}")
        self.session_id, self.expected, self.got = session_id, expected, got


class SessionLocked(DuragentError):
    """Another process holds the session (or the data directory)."""


class MemoryConflict(DuragentError):
    """A memory file changed between reading it and writing an edit of it back."""


#: Why a write to the data directory can fail that a person can put right, and what to do.
_STORAGE_FIXES = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space or raise the quota",
    errno.EROFS: "remount it read-write",
    errno.EACCES: "give the user the server runs as write access to it (e.g. `chown -R`)",
    errno.EPERM: "give the user the server runs as write access to it (e.g. `chown -R`)",
}


class StorageUnavailable(ServiceUnavailable, OSError):
    """The data directory cannot be written (the disk is full, read-only, or owned by another
    user): a 503, and the same request works once a person has put it right, without a restart.

    Still an OSError with the original errno, so code that handles a failed write goes on too.
    """

    def __init__(self, path: Path, error: OSError):
        reason = error.strerror or str(error)
        super().__init__(error.errno, reason, str(path))
        fix = _STORAGE_FIXES.get(error.errno or 0, "")
        self.detail = f"cannot write {path}: {reason}; nothing of this was stored: {fix}, then try again"

    def __str__(self) -> str:
        return self.detail


def storage_error(error: OSError, path: Path) -> OSError | StorageUnavailable:
    """`error` as a StorageUnavailable naming `path` when a person can fix its cause (a full,
    read-only or foreign-owned disk); any other error (EIO: a failing disk) as it is."""
    if error.errno in _STORAGE_FIXES and not isinstance(error, StorageUnavailable):
        return StorageUnavailable(path, error)
    return error


@runtime_checkable
class SessionStore(Protocol):
    """Append-only session logs plus snapshots."""

    async def append(self, session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        """Append one event or a batch; durable (per `session.fsync`) when this returns.

        The first event of each call must have seq = last stored seq + 1 and the rest follow
        without gaps, else SequenceConflict; nothing of a refused batch is stored.
        """
        ...

    async def append_unsynced(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent]
    ) -> asyncio.Future[None]:
        """Addition: append like `append`, but return once the batch is written, with a future
        that is done when it is durable (so the caller can go on meanwhile).

        The future raises the error of a batch that could not be made durable: the batch is then
        no longer in the log (it ends on the events before), and the next append must continue
        from there. Nothing may be acknowledged, nor acted on, before the future is done; a later
        append waits for it first. A backend whose write is its durability (PostgreSQL: the
        commit) returns a future that is already done (`already_durable()`).
        """
        ...

    async def read(
        self, session_id: str, options: SessionReadOptions = SessionReadOptions()
    ) -> list[SessionEvent]:
        """Events in seq order, filtered by `options`; SessionNotFound if there is no such session."""
        ...

    async def delete(self, session_id: str) -> None:
        """Remove the session's log and snapshot; SessionNotFound if absent."""
        ...

    async def last_seq(self, session_id: str) -> int:
        """Addition: the highest stored seq (0 for a session with no events yet)."""
        ...

    async def list(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        after: ListKey | None = None,
    ) -> list[SessionSummary]:
        """Addition: stored sessions in `ListKey` order, optionally filtered, from after `after` on.

        A page costs about the page: `limit` rows (PostgreSQL) or the sessions active since the
        page's own (files, by modification time), not every session.
        """
        ...

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        """Addition: write the snapshot atomically (a reader sees the old or the new, never half)."""
        ...

    async def load_snapshot(self, session_id: str) -> SessionSnapshot | None:
        """Addition: the last snapshot, or None when missing or unreadable (rebuild from the log)."""
        ...

    async def release(self, session_id: str) -> None:
        """Addition: forget what is held open for one session (its log, lock, caches) until next used.

        Called when a session is unloaded; a later append or snapshot opens it again.
        """
        ...

    async def close(self) -> None:
        """Addition: release files, locks and connections."""
        ...


# --- memory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEntry:
    """One remembered item: a bullet in a section of an agent's daily file."""

    text: str
    section: str = "fact"
    day: date = field(default_factory=lambda: utcnow().date())
    created_at: datetime | None = None
    source: str | None = None  # provenance: a session id, "human", "import"


@dataclass(frozen=True)
class MemoryQuery:
    """A memory search: words (case-insensitive), a section, a date range, a limit."""

    text: str | None = None
    section: str | None = None
    since: date | None = None
    until: date | None = None
    limit: int = 20


@dataclass(frozen=True)
class ContextMemory:
    """What context assembly reads from memory each turn, fetched in one call."""

    long_term: str = ""
    world: dict[str, str] = field(default_factory=dict)
    #: The Markdown of each asked-for day that has memory (days without any are left out).
    days: dict[date, str] = field(default_factory=dict)


@runtime_checkable
class MemoryStore(Protocol):
    """An agent's daily memory, long-term MEMORY.md and the shared world memory."""

    async def put(self, agent_id: str, entry: MemoryEntry) -> None:
        """Add the entry as a bullet in its section of its day, leaving everything else as it was."""
        ...

    async def query(self, agent_id: str, query: MemoryQuery) -> list[MemoryEntry]:
        """Matching entries, best first (exact phrase and recent days rank higher)."""
        ...

    def export(self, agent_id: str | None = None) -> AsyncIterator[bytes]:
        """A tar.gz of the Markdown tree (one agent's, or all with None), streamed in chunks."""
        ...

    async def read_long_term(self, agent_id: str) -> str:
        """Addition: MEMORY.md, the curated long-term memory ("" when there is none)."""
        ...

    async def write_long_term(self, agent_id: str, text: str) -> None:
        """Addition: replace MEMORY.md (used by `reflect`)."""
        ...

    async def read_day(self, agent_id: str, day: date) -> str | None:
        """Addition: the Markdown of one daily file, or None when that day has none."""
        ...

    async def days(self, agent_id: str) -> list[date]:
        """Addition: the days that have a daily file, newest first."""
        ...

    async def replace_text(self, agent_id: str, day: date | None, expected: str | None, text: str) -> None:
        """Addition: a person's edit: replace one day's file (MEMORY.md when `day` is None) with `text`.

        Only if it still reads `expected` (None: it does not exist yet); MemoryConflict otherwise,
        with nothing written. The text is stored as given (a person's words are not redacted).
        """
        ...

    async def read_world(self) -> dict[str, str]:
        """Addition: the shared world memory, topic -> Markdown."""
        ...

    async def write_world(self, topic: str, text: str) -> None:
        """Addition: replace one world-memory topic (used by `update_world`)."""
        ...

    async def read_for_context(self, agent_id: str, days: Sequence[date]) -> ContextMemory:
        """Addition: MEMORY.md, world memory and the given days in one call (once per turn, so cheap)."""
        ...

    async def close(self) -> None:
        """Addition: release connections."""
        ...


# --- artifacts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactMeta:
    """What is known about an artifact's bytes."""

    content_type: str = "application/octet-stream"
    size: int | None = None
    sha256: str | None = None
    created_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact: stable id, its name, a URL where the backend has one, its metadata."""

    id: str
    name: str
    url: str | None
    meta: ArtifactMeta


class ArtifactNotFound(NotFound):
    """No artifact with this id."""


@runtime_checkable
class ArtifactStore(Protocol):
    """Files agents produce or receive, streamed in and out."""

    async def put(
        self, agent_id: str, name: str, data: AsyncIterator[bytes], meta: ArtifactMeta
    ) -> ArtifactRef:
        """Store the stream as `name` (`/` folders allowed, never `..`); size and sha256 are computed."""
        ...

    def get(self, ref: ArtifactRef) -> AsyncIterator[bytes]:
        """The artifact's bytes in chunks; ArtifactNotFound when it is gone."""
        ...

    async def list(self, agent_id: str, prefix: str = "", limit: int = 100) -> list[ArtifactRef]:
        """The agent's artifacts whose name starts with `prefix`, sorted by name, at most `limit`."""
        ...

    async def delete(self, ref: ArtifactRef) -> None:
        """Addition: remove an artifact; ArtifactNotFound when absent."""
        ...

    async def close(self) -> None:
        """Addition: release connections."""
        ...


# --- change notification (stores -> git committer) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """Files a store changed and why, for the committer to batch into readable commits.

    `kind` is "session", "memory", "artifact", "agent" or "edit" (a person's edit);
    `subject` is what changed (a session id, `agent/date`), `summary` a short phrase
    like "+5 events" or "facts +1" that ends up in the commit subject.
    `content`, for a change of one file, is the exact bytes the store wrote (or, for an "edit",
    found): the committer commits those rather than what is on disk by the time it runs, so a
    person's line written meanwhile is never committed under the agent's name.
    """

    paths: tuple[Path, ...]
    kind: str
    subject: str
    summary: str
    details: tuple[str, ...] = ()
    content: bytes | None = None
    #: The session whose turn made an agent's change (a memory it remembered), else None.
    session: str | None = None
    #: True for a change a person asked for (a CLI command, the admin API): committed as theirs.
    by_person: bool = False
    #: For a change that only appended to its one file (a session's log): the file's length after
    #: it. Committed apart from what someone else appended next (a person's answer, then the
    #: agent's turn, in one batch), the file is committed cut there.
    appended_up_to: int | None = None


ChangeListener = Callable[[Change], None]

#: The session whose turn is changing the stores now (the memory tool sets it around its writes),
#: so the commit of what the agent remembered names the session it was said in.
turn_session: ContextVar[str | None] = ContextVar("turn_session", default=None)
#: True while a person's command changes the stores (`duragent schedule rm`, an admin API call):
#: those changes are committed with the person's git identity, not the agent's.
person_acting: ContextVar[bool] = ContextVar("person_acting", default=False)


@contextmanager
def changes_by_person() -> Iterator[None]:
    """Have the stores' changes made inside this block committed as the person's."""
    token = person_acting.set(True)
    try:
        yield
    finally:
        person_acting.reset(token)


def agents_context() -> Context:
    """A copy of the current context whose store changes are the agent's: for a task a person's
    command starts that goes on as the agent's own (the turn a resumed session runs)."""
    context = copy_context()
    context.run(person_acting.set, False)
    return context


@contextmanager
def changes_for_session(session_id: str) -> Iterator[None]:
    """Have the agent's changes made inside this block committed as made in `session_id`."""
    token = turn_session.set(session_id)
    try:
        yield
    finally:
        turn_session.reset(token)


def ignore_changes(change: Change) -> None:
    """A ChangeListener for stores used without git (tests, `git.enabled: false`)."""
    del change
