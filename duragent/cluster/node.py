"""ClusterNode: one worker's membership in a cluster of `duragent serve` processes on PostgreSQL.

It owns the worker's dedicated connection (session locks and LISTEN; PostgreSQL frees the locks
when it drops) and a small pool (claims, NOTIFY, shared agents, requests for sessions other
workers run), and runs the failover scan:
every `scan_interval` seconds, sessions claimed by workers that died are adopted and recovered
like at start (continue-mode turns resume from the last durable step, pause-mode ones pause).

When the dedicated connection drops (a database restart, a network blip, `pg_terminate_backend`;
a connection that stops answering is found by a ping every `probe_interval` seconds), the worker
holds no session any more: other workers take them over. Its copies of them write nothing, their
turns are stopped, and requests for its sessions answer 503 while it reconnects, with backoff.
Once reconnected it serves again, taking sessions afresh as requests for them come.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from duragent.cluster.agents import SharedAgents
from duragent.cluster.events import EventBus
from duragent.cluster.ownership import DEFAULT_RELEASE_WAIT, SessionOwnership
from duragent.cluster.requests import OwnerRequests
from duragent.stores.postgres.pool import PostgresUnavailable, create_pool, import_asyncpg, parse_postgres_url

if TYPE_CHECKING:
    import asyncpg

    from duragent.sessions.manager import SessionManager

log = logging.getLogger(__name__)

#: Seconds between looks for sessions whose worker died.
DEFAULT_SCAN_INTERVAL = 1.0
#: Seconds between pings of the lock connection (a peer gone without a word is found this way)...
DEFAULT_PROBE_INTERVAL = 5.0
#: ...and how long a ping may take before the connection is taken for dead.
PROBE_TIMEOUT = 10.0
#: How long closing a connection (or the pool) may take before it is cut.
CLOSE_TIMEOUT = 5.0
#: Reconnecting waits this long after the first failed try, twice as long after each next one...
RECONNECT_FIRST_DELAY = 0.2
#: ...up to this.
RECONNECT_MAX_DELAY = 10.0

#: Opens a new dedicated connection (locks and LISTEN).
Connector = Callable[[], Awaitable["asyncpg.Connection"]]


def channel_name(schema: str, kind: str) -> str:
    """The NOTIFY channel of `kind` ("events", "release", "agents", "requests") for one schema (at most
    63 bytes)."""
    digest = hashlib.blake2b(schema.encode(), digest_size=6).hexdigest()
    return f"duragent_{kind}_{digest}"


def _why(error: BaseException) -> str:
    """What went wrong, for the log (asyncpg's timeouts carry no message)."""
    if isinstance(error, TimeoutError) and not str(error):
        return "no answer in time"
    return str(error) or type(error).__name__


def worker_name() -> str:
    """How this process appears in `session_claims` and logs: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ClusterNode:
    """The cluster side of one worker: ownership, event bus, shared agents, failover."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connection: asyncpg.Connection,
        *,
        schema: str,
        worker: str | None = None,
        release_wait: float = DEFAULT_RELEASE_WAIT,
        scan_interval: float = DEFAULT_SCAN_INTERVAL,
        connect: Connector | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ):
        self.pool = pool
        self.connection = connection
        self.schema = schema
        self.worker = worker or worker_name()
        self.scan_interval = scan_interval
        self.probe_interval = probe_interval
        #: Opens a new lock connection when the one held drops (None: the worker stays lost).
        self._connect = connect
        self.release_channel = channel_name(schema, "release")
        self.ownership = SessionOwnership(
            connection,
            pool,
            schema=schema,
            worker=self.worker,
            ask_release=self._ask_release,
            release_wait=release_wait,
        )
        self.events = EventBus(pool, channel_name(schema, "events"))
        self.agents = SharedAgents(pool, channel_name(schema, "agents"), worker=self.worker)
        self.requests = OwnerRequests(
            pool,
            channel_name(schema, "requests"),
            worker=self.worker,
            owns=self.ownership.owns,
            backend_pid=connection.get_server_pid(),
        )
        self._manager: SessionManager | None = None
        self._scanner: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: How many times the lock connection was opened again.
        self.reconnects = 0
        #: The server side of the lock connection: (pid, backend start), to end it when it outlives
        #: the connection (see `_end_backend`).
        self._backend: tuple[int, Any] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        release_wait: float = DEFAULT_RELEASE_WAIT,
        scan_interval: float = DEFAULT_SCAN_INTERVAL,
        worker: str | None = None,
    ) -> ClusterNode:
        """Connect to the database at `url` (`?schema=` honoured), migrate it, and start listening.

        `worker` names this worker in `session_claims` and `session_requests` (default: host:pid).
        """
        from duragent.stores.postgres.migrations import ensure_schema

        target = parse_postgres_url(url)
        driver = import_asyncpg()
        pool = await create_pool(target, min_size=1, max_size=4)

        async def connect() -> asyncpg.Connection:
            connection: asyncpg.Connection = await driver.connect(
                target.dsn,
                timeout=PROBE_TIMEOUT,
                server_settings={"search_path": target.schema, "application_name": "duragent-worker"},
            )
            return connection

        try:
            await ensure_schema(pool, target.schema)
            connection = await connect()
        except (OSError, driver.PostgresError, driver.InterfaceError) as error:
            await pool.close()
            raise PostgresUnavailable(
                f"cannot connect to PostgreSQL at {target.describe()}: {error}"
            ) from error
        except BaseException:
            await pool.close()
            raise
        node = cls(
            pool,
            connection,
            schema=target.schema,
            worker=worker,
            release_wait=release_wait,
            scan_interval=scan_interval,
            connect=connect,
        )
        try:
            await node._listen(connection)
        except BaseException:
            await node.close()
            raise
        return node

    async def _listen(self, connection: asyncpg.Connection) -> None:
        # Told first: a connection that drops while listeners are added is noticed too.
        connection.add_termination_listener(self._on_connection_lost)
        started = await connection.fetchval(
            "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        self._backend = (connection.get_server_pid(), started)
        await connection.add_listener(self.events.channel, self._on_event)
        await connection.add_listener(self.release_channel, self._on_release_request)
        await connection.add_listener(self.agents.channel, self._on_agent_change)
        await connection.add_listener(self.requests.channel, self._on_session_request)

    def start(self, manager: SessionManager) -> None:
        """Serve release requests for `manager`'s sessions and start the failover scan.

        (Requests other workers hand this one for its sessions are served once a handler is set:
        `requests.serve`.)
        """
        self._manager = manager
        self._spawn(self.requests.forget_abandoned())
        loop = asyncio.get_running_loop()
        self._scanner = loop.create_task(self._scan_forever(), name="failover scan")
        if self.probe_interval > 0:
            self._prober = loop.create_task(self._probe_forever(), name="lock connection ping")

    async def close(self) -> None:
        """Stop scanning, send pending events, close the connections (frees any lock still held)."""
        self._closed = True
        for task in (self._scanner, self._prober, self._reconnecting):
            if task is not None:
                task.cancel()
                # (a task that died of an error must not stop the rest of the close)
                await asyncio.gather(task, return_exceptions=True)
        await self.requests.close()
        await self.events.close()
        await self.agents.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        import asyncpg

        # Bounded: a database gone without a word would otherwise hold the worker's stop for ever.
        try:
            await self.connection.close(timeout=CLOSE_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("the PostgreSQL connection holding session locks did not close cleanly: %s", error)
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            self.pool.terminate()

    # --- failover -------------------------------------------------------------------------------

    async def scan_once(self) -> list[str]:
        """Adopt and recover the sessions of dead workers once; returns the adopted ids."""
        from duragent.sessions.live import ServerClosing

        manager = self._manager
        if manager is None or manager.closing:
            return []  # (a worker that stops takes no session over)
        adopted = await self.ownership.adopt_orphans()
        for session_id in adopted:
            try:
                outcome = await manager.recover_session(session_id)
            except ServerClosing:
                # This worker began to stop meanwhile: the session stays for another to adopt.
                await self.ownership.release(session_id, to_adopt=True)
                continue
            except Exception:
                # One unreadable session (or an agent unknown here) must not stop the scan.
                log.exception("session %s could not be taken over", session_id)
                await self.ownership.release(session_id)
                continue
            log.info("took over session %s from a worker that stopped (%s)", session_id, outcome or "idle")
        return adopted

    async def _scan_forever(self) -> None:
        import asyncpg

        while True:
            try:
                await self.scan_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("failover scan failed: %s", _why(error))
            except Exception:
                # Whatever went wrong this time, the scan must go on: a worker whose scan died
                # would never adopt a dead worker's sessions again.
                log.exception("failover scan failed")
            await asyncio.sleep(self.scan_interval)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            await self.ownership.ping(within=PROBE_TIMEOUT)

    # --- the lock connection dropped --------------------------------------------------------------

    def _on_connection_lost(self, connection: Any) -> None:
        if self._closed or connection is not self.connection:
            return
        self.ownership.mark_lost()
        # Whoever asked this worker for those requests hears that it stopped serving them.
        self._spawn(self.requests.close())
        manager = self._manager
        if manager is not None:
            self._spawn(_stop_copies(manager))
        if self._reconnecting is not None and not self._reconnecting.done():
            return
        if self._connect is None:
            log.critical(
                "lost the PostgreSQL connection holding this worker's session locks: other workers take "
                "its sessions over; restart this worker"
            )
            return
        log.error(
            "lost the PostgreSQL connection holding this worker's session locks: other workers take its "
            "sessions over; reconnecting"
        )
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="reconnect")

    async def _reconnect(self) -> None:
        """Open a new lock connection, with backoff, and serve sessions again on it."""
        import asyncpg

        connect = self._connect
        assert connect is not None  # checked before starting
        lost = self._backend
        delay = RECONNECT_FIRST_DELAY
        while not self._closed:
            connection: asyncpg.Connection | None = None
            try:
                connection = await connect()
                self.connection = connection
                await self._listen(connection)
                if lost is not None:
                    await _end_backend(connection, *lost)
                if connection.is_closed():
                    raise OSError("the new connection dropped at once")
            except Exception as error:
                # Whatever failed (asyncpg's own InternalClientError is a plain Exception), the
                # worker must keep trying: a reconnect that gave up would leave it 503 for ever.
                if connection is not None:
                    connection.terminate()
                expected = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
                log.warning(
                    "reconnecting to PostgreSQL failed (%s); trying again in %.1fs",
                    _why(error),
                    delay,
                    exc_info=not isinstance(error, expected),
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            self.requests.reconnected(connection.get_server_pid())
            self.ownership.reconnected(connection)
            self.reconnects += 1
            log.warning("reconnected to PostgreSQL: serving sessions again")
            # Notifications sent meanwhile were lost: agents deployed then are applied now.
            # (Streams read the events table anyway; askers ask again.)
            self._spawn(self._catch_up_agents())
            return

    async def _catch_up_agents(self) -> None:
        import asyncpg

        try:
            await self.agents.catch_up()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("could not read the agents deployed while disconnected: %s", error)

    # --- notifications (LISTEN callbacks run on the event loop) -----------------------------------

    def _on_event(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.events.deliver(payload)

    def _on_release_request(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        manager = self._manager
        if manager is None or not self.ownership.owns(payload):
            return
        # A turn ending within the asker's wait still hands the session over (not a 409).
        self._spawn(manager.release_if_idle(payload, wait=self.ownership.release_wait))

    def _on_agent_change(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.agents.deliver(payload)

    def _on_session_request(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.requests.deliver(payload)

    async def _ask_release(self, session_id: str) -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", self.release_channel, session_id)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _stop_copies(manager: SessionManager) -> None:
    """Make every loaded copy of a session stale (it writes nothing more) and stop its turn: another
    worker may run the session already, and picks its turn up from the last stored step."""
    from duragent.sessions.log import StaleLog

    for live in list(manager.live.values()):
        with contextlib.suppress(StaleLog):
            live.log.check_writable()
        if live.log.stale is not None and live.busy:  # (not a copy loaded since, once reconnected)
            await live.cancel()


async def _end_backend(connection: asyncpg.Connection, pid: int, started: Any) -> None:
    """End the server side of a lost lock connection if it still runs (a connection cut without a
    word lives on there, holding its locks until the server notices: nobody could take its sessions).

    Its start time tells it from a later backend that got the same pid.
    """
    import asyncpg

    try:
        ended = await connection.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2",
            pid,
            started,
        )
    except asyncpg.InsufficientPrivilegeError as error:
        log.warning("could not end this worker's previous PostgreSQL connection (pid %d): %s", pid, error)
        return
    if ended:
        log.warning("ended this worker's previous PostgreSQL connection (pid %d), which was still open", pid)
