"""ScheduleStore on PostgreSQL: schedules shared by every worker, claims that make a run fire once.

The claim is a `started` row under a unique index on (schedule, slot): every worker whose timer
fires tries to insert it and exactly one succeeds, the same way the session store's primary key
keeps two writers from storing the same seq. A run going on is an advisory lock of the worker
running it (duragent.scheduling.run_locks), so no worker starts the next slot beside it.
A change to a stored schedule (pause, a run's session) is made on the row locked for it, so two
workers' changes never undo one another.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from duragent.errors import ConfigError, Problem
from duragent.scheduling.run_locks import RunLocks
from duragent.scheduling.spec import Schedule
from duragent.scheduling.store import DEFAULT_RUNS_KEPT, Listing, RunRecord, ScheduleNotFound
from duragent.stores.postgres.pool import LazyPool, parse_postgres_url

if TYPE_CHECKING:
    import asyncpg

_UPSERT = """
INSERT INTO schedules (id, agent, document, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (id) DO UPDATE SET agent = EXCLUDED.agent, document = EXCLUDED.document, updated_at = now()
"""
_CLAIM = """
INSERT INTO schedule_runs (schedule_id, slot, status, record) VALUES ($1, $2, 'started', $3)
ON CONFLICT (schedule_id, slot) WHERE status = 'started' DO NOTHING
RETURNING n
"""
_PRUNE = """
DELETE FROM schedule_runs WHERE schedule_id = $1 AND n <= (
    SELECT n FROM schedule_runs WHERE schedule_id = $1 ORDER BY n DESC OFFSET $2 LIMIT 1)
"""


class PostgresScheduleStore:
    """Schedules and runs in the `schedules` and `schedule_runs` tables."""

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str | None = None,
        runs_kept: int = DEFAULT_RUNS_KEPT,
    ):
        target = parse_postgres_url(url, schema) if url is not None else None
        # (one of the connections is the run locks' for as long as the store is open)
        self._pool = LazyPool(target, pool, schema=schema, max_size=5)
        self._run_locks = RunLocks(self._pool)
        self.runs_kept = runs_kept

    async def load_all(self) -> Listing:
        """Every schedule row, oldest first; a row that no longer validates is reported."""
        pool = await self._pool.get()
        rows = await pool.fetch("SELECT id, document FROM schedules ORDER BY id")
        schedules: list[Schedule] = []
        problems: list[Problem] = []
        for row in rows:
            try:
                schedules.append(_parse(row["id"], row["document"]))
            except ConfigError as exc:
                problems.extend(exc.problems)
        schedules.sort(key=lambda s: (s.created_at, s.id))
        return Listing(schedules, problems)

    async def get(self, schedule_id: str) -> Schedule:
        """One schedule row."""
        pool = await self._pool.get()
        document = await pool.fetchval("SELECT document FROM schedules WHERE id = $1", schedule_id)
        if document is None:
            raise ScheduleNotFound(schedule_id)
        return _parse(schedule_id, document)

    async def put(self, schedule: Schedule, summary: str) -> None:
        """Insert or replace the row (`summary` is for git, which does not cover PostgreSQL)."""
        del summary
        pool = await self._pool.get()
        await pool.execute(_UPSERT, schedule.id, schedule.agent, json.dumps(schedule.to_document()))

    async def update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule | None], summary: str
    ) -> Schedule:
        """Apply `change` to the row as stored now, locked against every other writer meanwhile."""
        del summary
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            document = await connection.fetchval(
                "SELECT document FROM schedules WHERE id = $1 FOR UPDATE", schedule_id
            )
            if document is None:
                raise ScheduleNotFound(schedule_id)
            current = _parse(schedule_id, document)
            changed = change(current)
            if changed is None or changed == current:
                return current
            await connection.execute(
                "UPDATE schedules SET agent = $2, document = $3, updated_at = now() WHERE id = $1",
                schedule_id,
                changed.agent,
                json.dumps(changed.to_document()),
            )
        return changed

    async def delete(self, schedule_id: str) -> None:
        """Remove the row and its runs."""
        pool = await self._pool.get()
        async with pool.acquire() as connection, connection.transaction():
            deleted = await connection.execute("DELETE FROM schedules WHERE id = $1", schedule_id)
            await connection.execute("DELETE FROM schedule_runs WHERE schedule_id = $1", schedule_id)
        if deleted.endswith(" 0"):
            raise ScheduleNotFound(schedule_id)

    async def claim(self, schedule_id: str, slot: datetime, worker: str) -> bool:
        """Insert the slot's `started` row; True for the one worker whose insert went in."""
        pool = await self._pool.get()
        record = RunRecord(slot, "started", worker=worker)
        number = await pool.fetchval(_CLAIM, schedule_id, slot, json.dumps(record.to_json()))
        return number is not None

    async def hold_run(self, schedule_id: str) -> bool:
        """Mark a run of the schedule as going on in this worker; False when one goes on in any worker."""
        return await self._run_locks.hold(schedule_id)

    async def release_run(self, schedule_id: str) -> None:
        """The run `hold_run` marked has ended."""
        await self._run_locks.release(schedule_id)

    async def record_run(self, schedule_id: str, run: RunRecord) -> None:
        """Append a run row; keep only the newest ones."""
        pool = await self._pool.get()
        await pool.execute(
            "INSERT INTO schedule_runs (schedule_id, slot, status, record) VALUES ($1, $2, $3, $4)",
            schedule_id,
            run.slot,
            run.status,
            json.dumps(run.to_json()),
        )
        await pool.execute(_PRUNE, schedule_id, self.runs_kept * 2)

    async def runs(self, schedule_id: str, limit: int = 20) -> list[RunRecord]:
        """The newest `limit` runs, oldest first."""
        pool = await self._pool.get()
        rows = await pool.fetch(
            "SELECT record FROM schedule_runs WHERE schedule_id = $1 ORDER BY n DESC LIMIT $2",
            schedule_id,
            limit,
        )
        return [RunRecord.from_json(json.loads(row["record"])) for row in reversed(rows)]

    async def close(self) -> None:
        """Let the run locks go and close the pool."""
        await self._run_locks.close()
        await self._pool.close()


def _parse(schedule_id: str, document: str) -> Schedule:
    from pydantic import ValidationError

    try:
        return Schedule.model_validate(json.loads(document))
    except ValidationError as exc:
        reason = "; ".join(str(error["msg"]) for error in exc.errors(include_url=False))
        raise ConfigError(f"schedule {schedule_id} in PostgreSQL is invalid: {reason}") from None
