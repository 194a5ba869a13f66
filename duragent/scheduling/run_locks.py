"""Which schedules have a run going on in this worker, as PostgreSQL advisory locks every worker sees.

A worker holds the session-level advisory lock keyed by (schema, schedule id) for as long as a
run of that schedule goes on in it. Another worker whose timer fires meanwhile finds the lock
taken and skips the slot, as one server skips a slot while its previous run goes on.

Locks rather than a lease row with a heartbeat, because PostgreSQL frees a lock the moment its
connection ends: a worker killed mid-run blocks the schedule for no time at all, with no lease
to expire, no heartbeat task per run and no clock to trust (the reasoning of session ownership,
duragent.cluster.ownership). A lease long enough to survive a slow database would block a dead
worker's schedule for as long; one short enough not to would expire under a live run.

Every lock sits on one connection kept out of the store's pool. When it drops (a database
restart, a network blip, `pg_terminate_backend`) the locks go with it while the runs go on:
the locks of those runs are taken again at once on a new connection, with backoff while the
database is away. One that another worker took meanwhile is reported: that worker's run goes on
beside this one, as nothing can stop either now. A query whose outcome is unknown (an error, a
cancelled caller) drops the connection, so this worker never holds a lock it does not know of.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from duragent.stores.postgres.pool import LazyPool, PostgresUnavailable

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

#: Taking the locks again waits this long after the first failed try, twice as long after each next one...
RESTORE_FIRST_DELAY = 0.2
#: ...up to this.
RESTORE_MAX_DELAY = 10.0


#: The server probes a silent lock connection (a worker's host gone without a word) and ends it,
#: freeing its locks, within about 25 s rather than the system's default of over two hours.
_KEEPALIVES = "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"


def run_lock_key(schema: str, schedule_id: str) -> int:
    """The signed 64-bit advisory lock key of a schedule's runs (the schema keeps teams apart)."""
    digest = hashlib.blake2b(f"schedule\x00{schema}\x00{schedule_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class RunLocks:
    """The run locks of one worker, on a connection taken from `pool` for as long as it lives."""

    def __init__(self, pool: LazyPool):
        self._pool = pool
        self._connection: asyncpg.Connection | None = None
        #: The pool the connection came from (given back to it on close).
        self._source: asyncpg.Pool | None = None
        self._held: set[str] = set()
        # One connection runs one query at a time.
        self._guard = asyncio.Lock()
        self._restoring: asyncio.Task[None] | None = None
        self._closed = False

    async def hold(self, schedule_id: str) -> bool:
        """Take the schedule's run lock; False when a run of it goes on already (here or elsewhere)."""
        async with self._guard:
            if schedule_id in self._held:
                return False  # (a second lock on one connection would succeed: never ask)
            connection = await self._connect()
            if not await self._try_lock(connection, schedule_id):
                return False
            self._held.add(schedule_id)
            return True

    async def release(self, schedule_id: str) -> None:
        """Let the schedule's run lock go (nothing to do when it is not held)."""
        if schedule_id not in self._held:
            return
        self._held.discard(schedule_id)
        async with self._guard:
            connection = self._connection
            if connection is None:
                return  # its locks went with the connection
            try:
                await connection.fetchval(
                    "SELECT pg_advisory_unlock($1)", run_lock_key(self._pool.schema, schedule_id)
                )
            except BaseException as error:
                self._drop(connection)
                if isinstance(error, Exception):
                    log.warning(
                        "schedule %s: letting its run lock go failed (%s): dropped it with its connection",
                        schedule_id,
                        error,
                    )
                    return
                raise

    async def close(self) -> None:
        """Let every lock go and give the connection back."""
        self._closed = True
        if self._restoring is not None:
            self._restoring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restoring
        async with self._guard:
            connection, self._connection = self._connection, None
            self._held.clear()
            if connection is None:
                return
            try:
                assert self._source is not None  # (set with the connection)
                await self._source.release(connection)  # (its reset lets every advisory lock go)
            except Exception as error:
                log.warning("giving back the connection holding schedule run locks failed: %s", error)
                connection.terminate()

    # --- the connection --------------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        """The lock connection, taken from the pool when there is none (the caller holds `_guard`)."""
        if self._connection is not None:
            return self._connection
        pool = await self._pool.get()
        try:
            connection: asyncpg.Connection = await pool.acquire()
        except Exception as error:
            raise PostgresUnavailable(f"cannot open a connection for schedule run locks: {error}") from error
        try:
            await connection.execute(_KEEPALIVES)
        except BaseException as error:
            connection.terminate()
            if isinstance(error, Exception):
                raise PostgresUnavailable(
                    f"cannot set up the schedule run locks' connection: {error}"
                ) from error
            raise
        connection.add_termination_listener(self._on_lost)
        self._connection, self._source = connection, pool
        return connection

    async def _try_lock(self, connection: asyncpg.Connection, schedule_id: str) -> bool:
        """pg_try_advisory_lock on `connection` (the caller holds `_guard`)."""
        try:
            return bool(
                await connection.fetchval(
                    "SELECT pg_try_advisory_lock($1)", run_lock_key(self._pool.schema, schedule_id)
                )
            )
        except BaseException as error:
            # Taken or not, nobody knows: ending the connection frees it for sure.
            self._drop(connection)
            if isinstance(error, Exception):
                raise PostgresUnavailable(
                    f"the connection holding schedule run locks failed: {error}"
                ) from error
            raise

    def _drop(self, connection: asyncpg.Connection) -> None:
        """End `connection` at once (the server frees its locks); the locks still wanted are taken again."""
        current = self._connection
        if current is None or connection is not current:
            return  # an earlier connection, dropped already
        current.terminate()  # (the pool takes its place back)
        self._connection = None
        self._restore_soon()

    def _on_lost(self, connection: Any) -> None:
        """asyncpg's termination listener: the server or the network ended the lock connection."""
        if connection is not self._connection:
            return
        self._connection = None
        if self._held:
            log.warning("the PostgreSQL connection holding schedule run locks dropped; taking them again")
        self._restore_soon()

    def _restore_soon(self) -> None:
        if self._closed or not self._held or (self._restoring is not None and not self._restoring.done()):
            return
        self._restoring = asyncio.get_running_loop().create_task(self._restore(), name="schedule run locks")

    async def _restore(self) -> None:
        """Take the locks of the runs still going on here again, on a new connection."""
        delay = RESTORE_FIRST_DELAY
        while self._held and not self._closed:
            try:
                async with self._guard:
                    connection = await self._connect()
                    for schedule_id in list(self._held):
                        if schedule_id in self._held and not await self._try_lock(connection, schedule_id):
                            self._held.discard(schedule_id)
                            log.error(
                                "schedule %s: another worker took its run lock while the connection "
                                "holding it was away: its run there goes on beside the one here",
                                schedule_id,
                            )
                return
            except PostgresUnavailable as error:
                log.warning("taking schedule run locks again failed (%s); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTORE_MAX_DELAY)
