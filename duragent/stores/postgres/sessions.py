"""The PostgreSQL SessionStore: events keyed by (session_id, seq), a sessions row, snapshots.

An append is one statement (one round trip): it upserts and locks the session's row, moving its
`last_seq`, `status` and `updated_at` only if the batch continues the log, and inserts every
event if it did (see `_APPEND`). The row lock
serialises writers of one session across processes, and the (session_id, seq) primary key is
the last line of defence: a duplicate seq is a SequenceConflict, never a second event.

History: events are append-only; a replaced snapshot is copied to `snapshot_history` in the
same transaction. Git does not cover PostgreSQL, so `on_change` is accepted for the same
signature as the filesystem store and never called.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args

from duragent.ids import check_name
from duragent.stores.base import (
    FIRST_MESSAGE_WITHIN,
    ChangeListener,
    ListKey,
    SequenceConflict,
    SessionEvent,
    SessionNotFound,
    SessionReadOptions,
    SessionSnapshot,
    SessionStatus,
    SessionSummary,
    already_durable,
    first_message,
    ignore_changes,
    name_in_start,
)
from duragent.stores.postgres.pool import QUERY_TIMEOUT, LazyPool, parse_postgres_url

if TYPE_CHECKING:
    import asyncpg
    from pydantic import TypeAdapter

log = logging.getLogger(__name__)

Redactor = Callable[[dict[str, Any]], dict[str, Any]]
SNAPSHOT_SCHEMA_VERSION = 1
_STATUSES: frozenset[str] = frozenset(get_args(SessionStatus))
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

#: An append in one statement (one round trip, its own transaction). The upsert moves the sessions
#: row only if the batch continues the log (`last_seq = first - 1`; a new session must start at
#: seq 1) and locks it, serialising writers of the session across processes; the events go in only
#: if it did. Nothing inserted means a sequence conflict. $1 session, $2 agent, $3 first ts, $4 first
#: seq, $5 last seq, $6 status after the batch (NULL: unchanged), $7 latest ts, $8.. the columns.
_APPEND = """
WITH advanced AS (
    INSERT INTO sessions AS s (id, agent, status, created_at, updated_at, last_seq)
    SELECT $1, $2, COALESCE($6::text, 'active'), $3, $7, $5
    WHERE $4::bigint = 1 OR EXISTS (SELECT 1 FROM sessions WHERE id = $1)
    ON CONFLICT (id) DO UPDATE SET
        last_seq = EXCLUDED.last_seq,
        status = COALESCE($6::text, s.status),
        updated_at = GREATEST(s.updated_at, $7)
    WHERE s.last_seq = $4::bigint - 1
    RETURNING s.id
)
INSERT INTO events (session_id, seq, id, ts, type, payload)
SELECT $1, e.* FROM unnest($8::bigint[], $9::text[], $10::timestamptz[], $11::text[], $12::json[]) AS e
WHERE EXISTS (SELECT 1 FROM advanced)
"""
_READ_EVENTS = """
SELECT seq, id, ts, type, payload::text AS payload FROM events
WHERE session_id = $1 AND seq > $2 AND ($3::text[] IS NULL OR type = ANY($3::text[]))
ORDER BY seq LIMIT $4
"""
#: A page of the listing: only the conditions a call needs are put in (`_list_query`), so each
#: shape gets a plan that walks `sessions_by_activity_and_id` (or `sessions_by_agent`) from the
#: cursor and stops after LIMIT rows, however many sessions there are. The name comes from a
#: subquery per row (one primary-key lookup each), never from a join the planner might run over
#: every event.
_LIST_SESSIONS = """
SELECT s.id, s.agent, s.status, s.created_at, s.updated_at, s.last_seq,
       (SELECT e.payload::text FROM events e
        WHERE e.session_id = s.id AND e.seq = 1 AND e.type = 'session_start') AS start,
       ARRAY(SELECT e.payload::text FROM events e
             WHERE e.session_id = s.id AND e.seq <= {within} AND e.type = 'user_message'
             ORDER BY e.seq) AS first_messages
FROM sessions s
WHERE {conditions}
ORDER BY s.updated_at DESC, s.id COLLATE "C" DESC LIMIT $1
"""
_UPSERT_SNAPSHOT_SESSION = """
INSERT INTO sessions (id, agent, status, created_at, updated_at, last_seq)
VALUES ($1, $2, $3, $4, $5, 0)
ON CONFLICT (id) DO UPDATE SET
    agent = EXCLUDED.agent, status = EXCLUDED.status,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
"""
_KEEP_OLD_SNAPSHOT = """
INSERT INTO snapshot_history (session_id, last_seq, snapshot, saved_at)
SELECT session_id, last_seq, snapshot, saved_at FROM snapshots WHERE session_id = $1
"""
_SAVE_SNAPSHOT = """
INSERT INTO snapshots (session_id, last_seq, snapshot, saved_at) VALUES ($1, $2, $3::json, now())
ON CONFLICT (session_id) DO UPDATE SET
    last_seq = EXCLUDED.last_seq, snapshot = EXCLUDED.snapshot, saved_at = EXCLUDED.saved_at
"""


class PostgresSessionStore:
    """SessionStore on PostgreSQL, for stateless workers sharing one database.

    Give a `url` (`postgresql://...`, optional `?schema=`; see duragent.stores.postgres.pool) or
    an asyncpg `pool` made by `create_pool` (with its `schema`). The pool is opened and the
    schema migrated on first use. `redact` rewrites each payload before it is stored (the secret
    guard); `on_change` is accepted and ignored (git does not cover PostgreSQL). A query the
    database leaves unanswered for `query_timeout` seconds raises TimeoutError.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str | None = None,
        redact: Redactor | None = None,
        on_change: ChangeListener = ignore_changes,
        migrate: bool = True,
        max_connections: int = 10,
        query_timeout: float = QUERY_TIMEOUT,
    ):
        target = parse_postgres_url(url, schema) if url is not None else None
        self._pool = LazyPool(
            target,
            pool,
            schema=schema,
            migrate=migrate,
            max_size=max_connections,
            query_timeout=query_timeout,
        )
        self._redact = redact
        del on_change  # git does not version PostgreSQL; see the module docstring

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding this store's tables."""
        return self._pool.schema

    async def append(self, session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        """Append one event or a batch in one transaction; SequenceConflict (nothing stored) on a gap."""
        check_name(session_id, "session id")
        batch = [events] if isinstance(events, SessionEvent) else list(events)
        if not batch:
            return
        if any(later.seq != earlier.seq + 1 for earlier, later in itertools.pairwise(batch)):
            # A batch with a gap inside is refused; report it as the step-by-step check would.
            _check_sequence(session_id, await self.last_seq(session_id), batch)
        payloads = [_JSON_ENCODER.encode(self._redacted(event.payload)) for event in batch]
        status = _status_after(batch)
        latest = max(event.ts for event in batch)
        pool = await self._pool.get()
        try:
            outcome = await pool.execute(
                _APPEND,
                session_id,
                _agent_of(batch[0]),
                batch[0].ts,
                batch[0].seq,
                batch[-1].seq,
                status,
                latest,
                [event.seq for event in batch],
                [event.id for event in batch],
                [event.ts for event in batch],
                [event.type for event in batch],
                payloads,
            )
        except _unique_violation() as error:
            last_seq = await self.last_seq(session_id)
            raise SequenceConflict(session_id, last_seq + 1, batch[0].seq) from error
        if outcome.split()[-1] == "0":  # "INSERT 0 <rows>": the batch did not continue the log
            last_seq = await self.last_seq(session_id)
            _check_sequence(session_id, last_seq, batch)
            # The log moved between the two queries; report it against what is stored now.
            raise SequenceConflict(session_id, last_seq + 1, batch[0].seq)

    async def append_unsynced(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent]
    ) -> asyncio.Future[None]:
        """`append`: the commit that writes a batch is what makes it durable (the future is done)."""
        await self.append(session_id, events)
        return already_durable()

    async def read(
        self, session_id: str, options: SessionReadOptions = SessionReadOptions()
    ) -> list[SessionEvent]:
        """Events in seq order after `options.after_seq`, of `options.types`, at most `options.limit`."""
        check_name(session_id, "session id")
        pool = await self._pool.get()
        types = sorted(options.types) if options.types is not None else None
        rows = await pool.fetch(_READ_EVENTS, session_id, options.after_seq, types, options.limit)
        if not rows and not await pool.fetchval("SELECT true FROM sessions WHERE id = $1", session_id):
            raise SessionNotFound(session_id)
        return [
            SessionEvent(int(row["seq"]), row["id"], row["ts"], row["type"], json.loads(row["payload"]))
            for row in rows
        ]

    async def delete(self, session_id: str) -> None:
        """Remove the session's events, snapshot and snapshot history; SessionNotFound if absent."""
        check_name(session_id, "session id")
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            deleted = await connection.fetchval("DELETE FROM sessions WHERE id = $1 RETURNING id", session_id)
            if deleted is None:
                raise SessionNotFound(session_id)
            await connection.execute("DELETE FROM snapshot_history WHERE session_id = $1", session_id)

    async def last_seq(self, session_id: str) -> int:
        """The highest stored seq; 0 for a session with no events or that does not exist."""
        check_name(session_id, "session id")
        pool = await self._pool.get()
        value = await pool.fetchval("SELECT last_seq FROM sessions WHERE id = $1", session_id)
        return int(value or 0)

    async def list(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        after: ListKey | None = None,
    ) -> builtins.list[SessionSummary]:
        """Sessions newest activity first (ties: greater id first), filtered, from after `after` on."""
        query, arguments = _list_query(agent=agent, status=status, limit=limit, after=after)
        pool = await self._pool.get()
        rows = await pool.fetch(query, *arguments)
        return [
            SessionSummary(
                row["id"],
                row["agent"],
                row["status"],
                row["created_at"],
                row["updated_at"],
                int(row["last_seq"]),
                _name(row["start"]),
                _first_message(row["first_messages"]),
            )
            for row in rows
        ]

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        """Replace the session's snapshot (the old one goes to snapshot_history) and its sessions row."""
        session_id = check_name(snapshot.session_id, "session id")
        if self._redact is not None:
            # Secrets stay out of the snapshot as out of the events.
            snapshot = replace(
                snapshot,
                conversation=[self._redact(message) for message in snapshot.conversation],
                pending_approvals=[self._redact(approval) for approval in snapshot.pending_approvals],
                metadata=self._redact(snapshot.metadata),
            )
        document = _JSON_ENCODER.encode(snapshot_to_record(snapshot))
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(
                _UPSERT_SNAPSHOT_SESSION,
                session_id,
                snapshot.agent,
                snapshot.status,
                snapshot.created_at,
                snapshot.updated_at,
            )
            await self._apply_events_after_snapshot(connection, snapshot)
            await connection.execute(_KEEP_OLD_SNAPSHOT, session_id)
            await connection.execute(_SAVE_SNAPSHOT, session_id, snapshot.last_seq, document)

    async def load_snapshot(self, session_id: str) -> SessionSnapshot | None:
        """The latest snapshot, or None when there is none or it cannot be read (rebuild from the log)."""
        check_name(session_id, "session id")
        pool = await self._pool.get()
        text = await pool.fetchval("SELECT snapshot::text FROM snapshots WHERE session_id = $1", session_id)
        if text is None:
            return None
        try:
            snapshot = snapshot_from_record(json.loads(text))
        except ValueError as error:
            log.warning(
                "session %s: ignoring unreadable snapshot (%s); rebuilding from the log", session_id, error
            )
            return None
        return snapshot if snapshot.session_id == session_id else None

    async def release(self, session_id: str) -> None:
        """Nothing to do: this store keeps nothing open per session (the pool is shared)."""
        check_name(session_id, "session id")

    async def close(self) -> None:
        """Close the pool if this store opened it."""
        await self._pool.close()

    def _redacted(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._redact(payload) if self._redact is not None else payload

    async def _apply_events_after_snapshot(self, connection: Any, snapshot: SessionSnapshot) -> None:
        """Events newer than the snapshot still move status and activity, as on files."""
        rows = await connection.fetch(
            "SELECT seq, id, ts, type, payload::text AS payload FROM events"
            " WHERE session_id = $1 AND seq > $2 ORDER BY seq",
            snapshot.session_id,
            snapshot.last_seq,
        )
        if not rows:
            return
        later = [
            SessionEvent(int(row["seq"]), row["id"], row["ts"], row["type"], json.loads(row["payload"]))
            for row in rows
        ]
        status, updated_at = _fold(snapshot.status, snapshot.updated_at, later)
        await connection.execute(
            "UPDATE sessions SET status = $2, updated_at = $3 WHERE id = $1",
            snapshot.session_id,
            status,
            updated_at,
        )


# --- snapshots as JSON -------------------------------------------------------------------------


def snapshot_to_record(snapshot: SessionSnapshot) -> dict[str, Any]:
    """The JSON document stored for a snapshot: state.yaml's fields, timestamps as ISO 8601."""
    record: dict[str, Any] = {"schema_version": SNAPSHOT_SCHEMA_VERSION, **asdict(snapshot)}
    record["created_at"] = _iso(snapshot.created_at)
    record["updated_at"] = _iso(snapshot.updated_at)
    return record


def snapshot_from_record(record: Any) -> SessionSnapshot:
    """Validate a stored snapshot document; ValueError when it is not one."""
    from pydantic import ValidationError

    if not isinstance(record, dict):
        raise ValueError("not an object")
    document = {key: value for key, value in record.items() if key != "schema_version"}
    try:
        return _snapshot_adapter().validate_python(document)
    except ValidationError as error:
        raise ValueError(str(error)) from error


@functools.cache
def _snapshot_adapter() -> TypeAdapter[SessionSnapshot]:
    from pydantic import TypeAdapter

    return TypeAdapter(SessionSnapshot)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- folding events into the sessions row ------------------------------------------------------


def _check_sequence(session_id: str, last_seq: int, batch: Sequence[SessionEvent]) -> None:
    expected = last_seq + 1
    for event in batch:
        if event.seq != expected:
            raise SequenceConflict(session_id, expected, event.seq)
        expected += 1


def _agent_of(first: SessionEvent) -> str:
    """The agent named by a session_start event ("" otherwise), as the filesystem store reads it."""
    if first.type == "session_start":
        agent = first.payload.get("agent")
        if isinstance(agent, str):
            return agent
    return ""


def _status_after(events: Sequence[SessionEvent]) -> str | None:
    """The status the batch leaves the session in, or None when no event of it changes the status."""
    status: str | None = None
    for event in events:
        if event.type == "session_end":
            status = "ended"
        elif event.type == "status_change":
            target = event.payload.get("to")
            if isinstance(target, str) and target in _STATUSES:
                status = target
    return status


def _fold(status: str, updated_at: datetime, events: Sequence[SessionEvent]) -> tuple[str, datetime]:
    """Status and latest activity after `events`: status_change moves it, session_end ends it."""
    for event in events:
        if event.type == "session_end":
            status = "ended"
        elif event.type == "status_change":
            target = event.payload.get("to")
            if isinstance(target, str) and target in _STATUSES:
                status = target
        updated_at = max(updated_at, event.ts)
    return status, updated_at


def _unique_violation() -> type[Exception]:
    import asyncpg

    error_type: type[Exception] = asyncpg.UniqueViolationError
    return error_type


def _list_query(
    *, agent: str | None, status: str | None, limit: int | None, after: ListKey | None
) -> tuple[str, builtins.list[object]]:
    """`_LIST_SESSIONS` with the conditions these filters need, and its arguments ($1 is the limit)."""
    arguments: builtins.list[object] = [limit]
    conditions: builtins.list[str] = []
    if agent is not None:
        arguments.append(agent)
        conditions.append(f"s.agent = ${len(arguments)}")
    if status is not None:
        arguments.append(status)
        conditions.append(f"s.status = ${len(arguments)}")
    if after is not None:
        arguments += after
        conditions.append(f'(s.updated_at, s.id COLLATE "C") < (${len(arguments) - 1}, ${len(arguments)})')
    query = _LIST_SESSIONS.format(conditions=" AND ".join(conditions) or "true", within=FIRST_MESSAGE_WITHIN)
    return query, arguments


def _first_message(payloads: builtins.list[str]) -> str | None:
    """The shown start of the first of these `user_message` payloads that has one (`first_message`).

    They are read as text and decoded here, as `_name`'s: any JSON operator in the query (even to
    skip a silent message) fails on a payload holding U+0000."""
    return next(
        (text for payload in payloads if (text := first_message("user_message", json.loads(payload)))),
        None,
    )


def _name(start: str | None) -> str | None:
    """A session's name, from its `session_start` payload read as text and decoded here:
    PostgreSQL cannot extract a name holding U+0000 as text (one such name failed every listing)."""
    return name_in_start(json.loads(start)) if start else None
