"""Agents deployed through the admin API, shared by every worker through PostgreSQL.

The `dynamic_agents` table is the source of truth when sessions live in PostgreSQL: one row per
deployed agent with every file of its folder. Each worker mirrors the rows into its own
`agents.dynamic.path`, where the AgentRegistry reads them (with its LRU cache) as on one machine.

A deploy or removal on any worker reaches the table before the admin API answers (the registry's
change listener blocks its worker thread until the row is written), then a NOTIFY tells the
other workers, which apply the row to their folder. Applying a row deploys the same files again,
whose change is then found identical to the row and not published twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from duragent.agents.catalog import AgentNotFound
from duragent.errors import ConfigError, UsageError
from duragent.stores.base import Change, ChangeListener

if TYPE_CHECKING:
    import asyncpg

    from duragent.agents.registry import AgentRegistry

log = logging.getLogger(__name__)

#: How long a deploy waits for PostgreSQL before it reports the failure.
PUBLISH_TIMEOUT = 15.0


class SharedAgents:
    """Keeps one worker's deployed agents and the `dynamic_agents` table in step."""

    def __init__(self, pool: asyncpg.Pool, channel: str, *, worker: str):
        self._pool = pool
        self.channel = channel
        self.worker = worker
        self._registry: AgentRegistry | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def listener(self, forward: ChangeListener) -> ChangeListener:
        """A change listener for the registry: publishes agent deploys/removals, then calls `forward`."""

        def on_change(change: Change) -> None:
            if change.kind == "agent" and change.summary in ("deployed", "removed"):
                self._publish_from_any_thread(change.subject, change.summary)
            forward(change)

        return on_change

    async def attach(self, registry: AgentRegistry) -> None:
        """Start mirroring into `registry`: apply every row, and share agents only this worker has."""
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        rows = await self._pool.fetch("SELECT name, files::text AS files FROM dynamic_agents")
        shared = {str(row["name"]): _files(row["files"]) for row in rows}
        for name, files in shared.items():
            await self._apply(name, files)
        for name in registry.names():
            if name not in shared and registry.source(name) == "dynamic":
                # Deployed here before this worker joined a cluster: keep it, and share it.
                await self._publish(name, "deployed")

    async def catch_up(self) -> None:
        """Apply every row again: deploys this worker was not told of (its LISTEN connection was
        down). (A removal it missed stays until the agent is deployed or removed again.)"""
        if self._registry is None:
            return
        rows = await self._pool.fetch("SELECT name, files::text AS files FROM dynamic_agents")
        for row in rows:
            await self._apply(str(row["name"]), _files(row["files"]))

    def deliver(self, name: str) -> None:
        """The LISTEN callback: agent `name` changed on some worker; apply its row here."""
        task = asyncio.get_running_loop().create_task(self._refresh(name), name=f"agent {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for changes being applied."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- publishing -----------------------------------------------------------------------------

    def _publish_from_any_thread(self, name: str, action: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop_thread(loop):
            task = loop.create_task(self._publish(name, action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        # A deploy runs in a worker thread: answer the admin API only once every worker can see it.
        asyncio.run_coroutine_threadsafe(self._publish(name, action), loop).result(PUBLISH_TIMEOUT)

    async def _publish(self, name: str, action: str) -> None:
        if action == "removed":
            changed = await self._pool.fetchval(
                "DELETE FROM dynamic_agents WHERE name = $1 RETURNING true", name
            )
        else:
            registry = self._registry
            if registry is None:
                return
            files = await asyncio.to_thread(registry.files, name)
            changed = await self._pool.fetchval(
                "INSERT INTO dynamic_agents (name, files, updated_by) VALUES ($1, $2::json, $3)"
                " ON CONFLICT (name) DO UPDATE SET files = EXCLUDED.files, updated_at = now(),"
                " updated_by = EXCLUDED.updated_by"
                " WHERE dynamic_agents.files::text IS DISTINCT FROM EXCLUDED.files::text"
                " RETURNING true",
                name,
                _encode(files),
                self.worker,
            )
        if changed:
            await self._pool.execute("SELECT pg_notify($1, $2)", self.channel, name)
            log.info("agent '%s' %s for every worker", name, action)

    # --- applying -------------------------------------------------------------------------------

    async def _refresh(self, name: str) -> None:
        raw = await self._pool.fetchval("SELECT files::text FROM dynamic_agents WHERE name = $1", name)
        if raw is None:
            await self._remove_local(name)
        else:
            await self._apply(name, _files(raw))

    async def _apply(self, name: str, files: Mapping[str, str]) -> None:
        registry = self._registry
        if registry is None:
            return
        try:
            if registry.source(name) == "dynamic" and await asyncio.to_thread(registry.files, name) == dict(
                files
            ):
                return
        except AgentNotFound:
            pass  # new here
        try:
            await asyncio.to_thread(registry.deploy, name, files)
        except (ConfigError, UsageError) as error:
            # Valid where it was deployed but not here (a static agent of that name, a missing ${VAR}).
            log.warning("agent '%s' from PostgreSQL not deployed on this worker: %s", name, error)

    async def _remove_local(self, name: str) -> None:
        registry = self._registry
        if registry is None:
            return
        try:
            if registry.source(name) != "dynamic":
                return
            await asyncio.to_thread(registry.remove, name)
        except AgentNotFound:
            return


def _encode(files: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(files.items())), ensure_ascii=False, separators=(",", ":"))


def _files(raw: str) -> dict[str, str]:
    decoded = json.loads(raw)
    return {str(path): str(content) for path, content in decoded.items()}


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return threading.current_thread() is threading.main_thread() and not loop.is_running()
