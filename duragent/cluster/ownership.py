"""Which worker owns which live session: PostgreSQL session-level advisory locks.

A worker owns a session while it holds the advisory lock keyed by a 64-bit hash of (schema,
session id) on its one dedicated connection. Locks (not a lease row with a heartbeat) because
PostgreSQL frees them the moment that connection drops: a worker killed with SIGKILL loses
every session at once, with no lease to expire and no clock to trust.

Next to the lock, a `session_claims` row records that a worker took the session. The row is
written after the lock is taken and deleted before it is released, so a row whose lock is free
can only belong to a worker that died, or to one that stopped and left the row on purpose (work
left in the session: `release(to_adopt=True)`): `adopt_orphans` finds those sessions for recovery.

A worker that wants a session another worker holds asks it to let go (`ask_release`, sent
through NOTIFY; the owner releases it when no turn runs) and waits a moment for the lock.

When the dedicated connection drops, every lock goes with it: `mark_lost` forgets every session
(each copy loaded under a lock writes nothing more, see `term`) and `reconnected` hands over the
new connection (ClusterNode reconnects). Whatever happens to a lock query (an error, a
cancelled caller), this worker's view of its locks stays exact: a query whose outcome is unknown
drops the connection, and with it every lock, rather than leave a lock held that nobody knows of
(a session no worker could take again).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from duragent.stores.base import SessionLocked

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long `claim` waits for the owner to let a session go before giving up.
DEFAULT_RELEASE_WAIT = 3.0
_POLL_SECONDS = 0.05
#: How often a worker waiting for a session asks its owner again to let it go.
_ASK_AGAIN = 0.5


class SessionOwnedElsewhere(SessionLocked):
    """Another worker runs this session right now (HTTP 409: retry in a moment)."""

    def __init__(self, session_id: str):
        super().__init__(
            f"session {session_id} is running a turn on another worker; retry in a moment "
            f"(or follow it with GET /api/v1/sessions/{session_id}/events on any worker)"
        )
        self.session_id = session_id


class OwnershipLost(SessionLocked):
    """This worker's connection to PostgreSQL dropped, and with it every session lock it held.

    It reconnects on its own: the request may be sent again in a moment (to any worker).
    """

    def __init__(self) -> None:
        super().__init__(
            "this worker lost the PostgreSQL connection holding its session locks and is "
            "reconnecting; send the request again in a moment (any worker can serve it)"
        )


async def _to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """`await work`, which runs to its end even when the caller is cancelled (then its error, if
    any, is logged): what it does to a lock must be known whatever happens to the caller."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            task.add_done_callback(_log_failure)  # (nobody awaits it any more)
        raise


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("a session lock operation failed: %s", error)


def session_lock_key(schema: str, session_id: str) -> int:
    """The signed 64-bit advisory lock key of a session (the schema keeps test runs and teams apart)."""
    digest = hashlib.blake2b(f"{schema}\x00{session_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SessionOwnership:
    """The session locks of one worker, held on its dedicated `connection`; claims rows via `pool`."""

    def __init__(
        self,
        connection: asyncpg.Connection,
        pool: asyncpg.Pool,
        *,
        schema: str,
        worker: str,
        ask_release: Callable[[str], Awaitable[None]] | None = None,
        release_wait: float = DEFAULT_RELEASE_WAIT,
    ):
        self._connection = connection
        self._pool = pool
        self._schema = schema
        self.worker = worker
        self._ask_release = ask_release
        self._release_wait = release_wait
        self._held: set[str] = set()
        #: Sessions whose advisory lock the connection holds (a superset of `_held` while a lock
        #: taken is being checked): a lock is never taken twice, which would need two unlocks.
        self._locked: set[str] = set()
        #: Which taking of each held session this is (see `term`).
        self._terms: dict[str, int] = {}
        self._taken = itertools.count(1)
        # One connection runs one query at a time.
        self._guard = asyncio.Lock()
        self.lost = False
        #: Set while the lock connection is up (see `back`).
        self._connected = asyncio.Event()
        self._connected.set()

    @property
    def held(self) -> frozenset[str]:
        """Sessions this worker owns now."""
        return frozenset(self._held)

    @property
    def release_wait(self) -> float:
        """How long `claim` waits for an owner to let a session go (an owner asked waits as long)."""
        return self._release_wait

    def owns(self, session_id: str) -> bool:
        """True while this worker holds the session's lock."""
        return session_id in self._held and not self.lost

    def term(self, session_id: str) -> int | None:
        """Which taking of the session's lock this worker holds now, None when it does not hold it.

        A copy of the session loaded under another term may lack what other workers wrote while
        this one did not hold the lock.
        """
        return self._terms.get(session_id) if self.owns(session_id) else None

    def _took(self, session_id: str) -> None:
        self._held.add(session_id)
        self._terms[session_id] = next(self._taken)

    async def try_acquire(self, session_id: str) -> bool:
        """Take the session's lock if it is free (or already ours), recording the claim."""
        if self.lost:
            raise OwnershipLost()
        if session_id in self._held:
            return True
        # Shielded: a caller cancelled mid-way (its client left) must not leave a lock taken
        # that this worker does not know it holds.
        return await _to_the_end(self._acquire(session_id))

    async def _acquire(self, session_id: str) -> bool:
        async with self._guard:
            if self.lost:  # (while this waited for the connection)
                raise OwnershipLost()
            if session_id in self._held:
                return True
            if session_id in self._locked or not await self._try_lock(session_id):
                return False  # (locked here a moment ago by `adopt_orphans`: it decides first)
            self._took(session_id)
        try:
            await self._record_claim(session_id)
        except BaseException:
            await self.release(session_id)
            raise
        return True

    async def claim(self, session_id: str, *, ask_owner: bool = True) -> None:
        """Own the session, asking its owner to let go and waiting briefly; SessionOwnedElsewhere if not.

        With `ask_owner` False, the worker holding it is not asked: SessionOwnedElsewhere at once.
        """
        if await self.try_acquire(session_id):
            return
        if not ask_owner:
            raise SessionOwnedElsewhere(session_id)
        deadline = time.monotonic() + self._release_wait
        ask_at = time.monotonic()
        while time.monotonic() < deadline:
            if self._ask_release is not None and time.monotonic() >= ask_at:
                # Asked again now and then: the owner asked first may have handed the session to
                # a third worker meanwhile, which nobody asked.
                ask_at = time.monotonic() + _ASK_AGAIN
                await self._ask_release(session_id)
            await asyncio.sleep(_POLL_SECONDS)
            if await self.try_acquire(session_id):
                return
        raise SessionOwnedElsewhere(session_id)

    async def release(self, session_id: str, *, to_adopt: bool = False) -> None:
        """Let the session go: its claim row first, then the lock (see the module docstring).

        With `to_adopt`, the claim row stays: the failover scan of another worker adopts the
        session and takes up what it left, as when its worker dies (a worker that stops does so
        with a session it left work in).
        """
        if session_id not in self._held:
            return
        self._held.discard(session_id)
        self._terms.pop(session_id, None)
        if self.lost:
            return
        await _to_the_end(self._let_go(session_id, self._connection, keep_claim=to_adopt))

    async def _let_go(
        self, session_id: str, connection: asyncpg.Connection, *, keep_claim: bool = False
    ) -> None:
        try:
            if not keep_claim:
                await self._pool.execute(
                    "DELETE FROM session_claims WHERE session_id = $1 AND worker = $2",
                    session_id,
                    self.worker,
                )
        finally:
            # Unlocked even when the row stays: a row whose lock is free is only taken for an
            # orphan and recovered, where a lock kept would keep the session from every worker.
            await self._unlock(session_id, connection)

    async def adopt_orphans(self) -> list[str]:
        """Take the sessions of workers that died (claim row present, lock free); returns their ids."""
        if self.lost:
            return []
        rows = await self._pool.fetch("SELECT session_id FROM session_claims ORDER BY claimed_at")
        adopted: list[str] = []
        for row in rows:
            session_id = str(row["session_id"])
            try:
                if await _to_the_end(self._adopt(session_id)):
                    adopted.append(session_id)
            except OwnershipLost:
                break  # (the connection dropped: nothing more to adopt until it is back)
        return adopted

    async def _adopt(self, session_id: str) -> bool:
        async with self._guard:
            if self.lost:
                return False
            connection = self._connection
            if session_id in self._locked or not await self._try_lock(session_id):
                return False
        try:
            # Its owner may have released it cleanly between our read and our lock: then the row is gone.
            still_claimed = await self._pool.fetchval(
                "SELECT true FROM session_claims WHERE session_id = $1", session_id
            )
            # (and the lock went with its connection if that dropped meanwhile)
            if still_claimed and connection is self._connection and not self.lost:
                self._took(session_id)
                await self._record_claim(session_id)
                return True
        except BaseException:
            if session_id in self._held:
                await self.release(session_id)
            else:
                await self._unlock(session_id, connection)
            raise
        await self._unlock(session_id, connection)
        return False

    def mark_lost(self) -> None:
        """The dedicated connection is gone: every lock went with it."""
        self.lost = True
        self._connected.clear()
        self._held.clear()
        self._locked.clear()
        self._terms.clear()

    def reconnected(self, connection: asyncpg.Connection) -> None:
        """Hold locks on `connection` from now on (after `mark_lost`: no session is held)."""
        self._connection = connection
        self._held.clear()
        self._locked.clear()
        self._terms.clear()
        self.lost = False
        self._connected.set()

    async def back(self, *, within: float) -> bool:
        """True once this worker can own sessions again (at once when it never lost its lock
        connection); False when it is still reconnecting after `within` seconds."""
        try:
            async with asyncio.timeout(within):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def ping(self, *, within: float) -> bool:
        """True when the lock connection answers within `within` seconds; else it is dropped.

        A connection whose peer vanished without a word (a network partition) never says it is
        gone: without this, the worker would wait on it for ever.
        """
        if self.lost:
            return False
        connection = self._connection
        try:
            async with asyncio.timeout(within), self._guard:
                await connection.fetchval("SELECT 1")
        except TimeoutError:
            log.error("the PostgreSQL connection holding session locks did not answer in %gs", within)
            self._drop(connection)
            return False
        except Exception as error:  # (a dead connection raises one of asyncpg's many errors)
            log.error("the PostgreSQL connection holding session locks failed: %s", error)
            self._drop(connection)
            return False
        return True

    def _drop(self, connection: asyncpg.Connection) -> None:
        """Close `connection` at once (the server frees its locks) and hold nothing from now on.

        Its termination listener (ClusterNode) then reconnects.
        """
        if connection is not self._connection:
            return  # an earlier connection, dropped already
        connection.terminate()
        self.mark_lost()

    async def _try_lock(self, session_id: str) -> bool:
        """pg_try_advisory_lock on the dedicated connection (the caller holds `_guard`)."""
        connection = self._connection
        try:
            acquired = bool(
                await connection.fetchval(
                    "SELECT pg_try_advisory_lock($1)", session_lock_key(self._schema, session_id)
                )
            )
        except Exception as error:
            # Taken or not, nobody knows: dropping the connection frees it for sure.
            self._drop(connection)
            raise OwnershipLost() from error
        except BaseException:
            self._drop(connection)
            raise
        if acquired:
            self._locked.add(session_id)
        return acquired

    async def _unlock(self, session_id: str, connection: asyncpg.Connection) -> None:
        """pg_advisory_unlock on `connection`, the one the lock was taken on (nothing to do when
        that connection is gone: its locks went with it)."""
        async with self._guard:
            if connection is not self._connection or session_id not in self._locked or self.lost:
                return
            self._locked.discard(session_id)
            try:
                await connection.execute(
                    "SELECT pg_advisory_unlock($1)", session_lock_key(self._schema, session_id)
                )
            except BaseException:
                self._drop(connection)
                raise

    async def _record_claim(self, session_id: str) -> None:
        await self._pool.execute(
            "INSERT INTO session_claims (session_id, worker) VALUES ($1, $2)"
            " ON CONFLICT (session_id) DO UPDATE SET worker = EXCLUDED.worker, claimed_at = now()",
            session_id,
            self.worker,
        )
