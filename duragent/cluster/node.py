"""ClusterNode: one worker's membership in a cluster of `duragent serve` processes on PostgreSQL.

It owns the worker's dedicated connection (session locks and LISTEN; PostgreSQL frees the locks
when it drops) and a small pool (claims, NOTIFY, shared agents, requests for sessions other
workers run), and runs the failover scan:
every `scan_interval` seconds, sessions claimed by workers that died are adopted and recovered
like at start (continue-mode turns resume from the last durable step, pause-mode ones pause).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
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


def channel_name(schema: str, kind: str) -> str:
    """The NOTIFY channel of `kind` ("events", "release", "agents", "requests") for one schema (at most
    63 bytes)."""
    digest = hashlib.blake2b(schema.encode(), digest_size=6).hexdigest()
    return f"duragent_{kind}_{digest}"


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
    ):
        self.pool = pool
        self.connection = connection
        self.schema = schema
        self.worker = worker or worker_name()
        self.scan_interval = scan_interval
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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

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
        try:
            await ensure_schema(pool, target.schema)
            connection = await driver.connect(
                target.dsn,
                server_settings={"search_path": target.schema, "application_name": "duragent-worker"},
            )
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
        )
        await node._listen()
        return node

    async def _listen(self) -> None:
        await self.connection.add_listener(self.events.channel, self._on_event)
        await self.connection.add_listener(self.release_channel, self._on_release_request)
        await self.connection.add_listener(self.agents.channel, self._on_agent_change)
        await self.connection.add_listener(self.requests.channel, self._on_session_request)
        self.connection.add_termination_listener(self._on_connection_lost)

    def start(self, manager: SessionManager) -> None:
        """Serve release requests for `manager`'s sessions and start the failover scan.

        (Requests other workers hand this one for its sessions are served once a handler is set:
        `requests.serve`.)
        """
        self._manager = manager
        self._spawn(self.requests.forget_abandoned())
        self._scanner = asyncio.get_running_loop().create_task(self._scan_forever(), name="failover scan")

    async def close(self) -> None:
        """Stop scanning, send pending events, close the connections (frees any lock still held)."""
        self._closed = True
        if self._scanner is not None:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
        await self.requests.close()
        await self.events.close()
        await self.agents.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.connection.is_closed():
            await self.connection.close()
        await self.pool.close()

    # --- failover -------------------------------------------------------------------------------

    async def scan_once(self) -> list[str]:
        """Adopt and recover the sessions of dead workers once; returns the adopted ids."""
        manager = self._manager
        if manager is None:
            return []
        adopted = await self.ownership.adopt_orphans()
        for session_id in adopted:
            try:
                outcome = await manager.recover_session(session_id)
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
                log.warning("failover scan failed: %s", error)
            await asyncio.sleep(self.scan_interval)

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

    def _on_connection_lost(self, connection: Any) -> None:
        if self._closed:
            return
        self.ownership.mark_lost()
        log.critical(
            "lost the PostgreSQL connection holding this worker's session locks: other workers take its "
            "sessions over; restart this worker"
        )

    async def _ask_release(self, session_id: str) -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", self.release_channel, session_id)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
