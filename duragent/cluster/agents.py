"""Agents deployed through the admin API, shared by every worker through PostgreSQL.

The `dynamic_agents` table is the source of truth when sessions live in PostgreSQL: one row per
deployed agent with every text file of its folder: agent.yaml and whatever the deploy brought,
and what the worker wrote since (`policy.yaml` edited by "allow always", a file written by a
tool call a person approved). Each worker mirrors the rows into its own `agents.dynamic.path`,
where the AgentRegistry reads them (with its LRU cache) as on one machine.

A deploy or removal on any worker reaches the table before the admin API answers (the registry's
change listener blocks its worker thread until the row is written); a change the worker makes to
a deployed agent's folder (an "allow always") is published right after it. Then a NOTIFY tells
every worker, which brings its folder and its registry in step with the row.

Bringing a folder in step merges it with the row rather than replacing it (`agent_merge`): what
the folder holds that never reached the row (a publish that failed, a worker from before policy
edits were shared) is kept and published, not deleted. The merge needs what the folder and the
row last agreed on; each data directory keeps that in `run/shared-agents/<name>.json`
(`AgreedFolders`), outside git and out of tool calls' reach.

Workers sharing one data directory share the folder too: the one that deploys writes it, and the
others only read it again (the registry of each must serve it, not just find it on disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duragent.agents.catalog import AgentNotFound
from duragent.cluster.agent_merge import merge_folders
from duragent.errors import ConfigError, UsageError
from duragent.ids import check_name, ulid
from duragent.keyed_locks import KeyedLocks
from duragent.stores.base import Change, ChangeListener

if TYPE_CHECKING:
    import asyncpg

    from duragent.agents.registry import AgentRegistry

log = logging.getLogger(__name__)

#: How long a deploy waits for PostgreSQL before it reports the failure.
PUBLISH_TIMEOUT = 15.0
#: First key of the transaction lock that orders the writes of one agent's row (ASCII "DRGA").
_LOCK_CLASS = 0x44524741
#: The folder of `AgreedFolders` in the data directory.
AGREED_FOLDER = Path("run") / "shared-agents"

Files = dict[str, str]


class AgreedFolders:
    """What each deployed agent's row held when this data directory's folder last matched it.

    One JSON file per agent, naming the table it agreed with (`table`: its schema and when it was
    made), so a worker pointed at another database does not take the agents missing there for
    agents removed. Lost, a record costs nothing but precision: the next merge keeps whatever the
    folder holds that the row lacks."""

    def __init__(self, folder: Path, table: str):
        self.folder = folder
        self.table = table

    def get(self, name: str) -> Files | None:
        """The files agreed on for agent `name` in this table, or None when nothing is recorded."""
        try:
            record = json.loads(self._path(name).read_text(encoding="utf-8"))
            if record["table"] != self.table:
                return None
            return {str(path): str(content) for path, content in record["files"].items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("ignoring %s: %s", self._path(name), error)
            return None

    def put(self, name: str, files: Mapping[str, str]) -> None:
        """Record that the folder and the row of agent `name` both hold `files`."""
        if self.get(name) == dict(files):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")  # (whatever the data repository ignores)
        path = self._path(name)
        temporary = path.with_name(f".{path.name}.{ulid()}.tmp")
        record = {"table": self.table, "files": dict(sorted(files.items()))}
        try:
            temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def drop(self, name: str) -> None:
        """Forget agent `name` (it is deployed nowhere)."""
        self._path(name).unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        check_name(name, "agent name")
        return self.folder / f"{name}.json"


class SharedAgents:
    """Keeps one worker's deployed agents and the `dynamic_agents` table in step."""

    def __init__(self, pool: asyncpg.Pool, channel: str, *, worker: str):
        self._pool = pool
        self.channel = channel
        self.worker = worker
        self._registry: AgentRegistry | None = None
        self._agreed: AgreedFolders | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: One bringing-in-step of an agent at a time on this worker.
        self._syncing: KeyedLocks[str] = KeyedLocks()
        #: A digest of the files this worker's registry was last made to read, by agent.
        self._served: dict[str, str] = {}
        #: Set in the thread deploying or removing a row's agent here: not this worker's change.
        self._applying = threading.local()

    def listener(self, forward: ChangeListener) -> ChangeListener:
        """A change listener for the registry and the runtime: publishes changes to deployed
        agents (deploys, removals, "allow always", files written by tool calls), then calls `forward`."""

        def on_change(change: Change) -> None:
            if change.kind == "agent" and not getattr(self._applying, "active", False):
                if change.summary in ("deployed", "removed"):
                    self._publish_from_any_thread(change.subject, change.summary)
                else:
                    for name in self._deployed_agents_of(change.paths):
                        self._spawn(self._sync_logged(name))
            forward(change)

        return on_change

    async def attach(self, registry: AgentRegistry, data_path: Path) -> None:
        """Start mirroring into `registry` (its data directory: `data_path`): bring every deployed
        agent in step with its row, and share agents only this worker has."""
        table = await self._pool.fetchval(
            "SELECT current_schema() || ' made ' || applied_at::text FROM schema_migrations WHERE version = 2"
        )
        self._agreed = AgreedFolders(data_path / AGREED_FOLDER, str(table))
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        # (Each agent is read again once: a worker sharing the data directory may have changed
        # its folder since this registry read it, and a notification of it sent before now is lost.)
        await self.catch_up()

    async def catch_up(self) -> None:
        """Bring every deployed agent in step with the table: also those changed or removed while
        this worker was not told (stopped, or its LISTEN connection down)."""
        registry = self._registry
        if registry is None:
            return
        rows = await self._pool.fetch("SELECT name, files::text AS files FROM dynamic_agents")
        shared = {str(row["name"]): _files(row["files"]) for row in rows}
        for name, files in shared.items():
            await self._sync(name, files)
        for name in registry.deployed_names():
            if name not in shared:
                # Deployed here before this worker joined a cluster (kept, and shared), or
                # removed elsewhere since this folder last matched its row (removed here too).
                await self._sync(name, None)

    def deliver(self, name: str) -> None:
        """The LISTEN callback: agent `name` changed on some worker; bring it in step here."""
        if self._registry is None:
            return  # (`attach` reads every row)
        self._spawn(self._refresh(name))

    async def close(self) -> None:
        """Wait for changes being applied."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- publishing a deploy or a removal -------------------------------------------------------

    def _publish_from_any_thread(self, name: str, action: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop_thread(loop):
            self._spawn(self._publish(name, action))
            return
        # A deploy runs in a worker thread: answer the admin API only once every worker can see it.
        asyncio.run_coroutine_threadsafe(self._publish(name, action), loop).result(PUBLISH_TIMEOUT)

    async def _publish(self, name: str, action: str) -> None:
        """Make the row what this worker's deploy or removal made the folder (it replaces the row
        whole, as it replaced the folder). Not under `_syncing`: the deploy waiting for this holds
        the registry's deploy lock, which a bringing-in-step may be waiting for."""
        registry, agreed = self._registry, self._agreed
        if registry is None or agreed is None:
            return
        files = None if action == "removed" else await asyncio.to_thread(registry.deployed_files, name)
        async with self._pool.acquire() as connection, connection.transaction():
            await _lock_row(connection, name)
            await _write_row(connection, self.channel, name, files, self.worker)
        if files is None:
            await asyncio.to_thread(agreed.drop, name)
            self._served.pop(name, None)
        else:
            await asyncio.to_thread(agreed.put, name, files)
            self._served[name] = _digest(files)
        log.info("agent '%s' %s for every worker", name, action)

    # --- bringing a folder in step with its row --------------------------------------------------

    async def _refresh(self, name: str) -> None:
        try:
            raw = await self._pool.fetchval("SELECT files::text FROM dynamic_agents WHERE name = $1", name)
            await self._sync(name, None if raw is None else _files(raw))
        except _database_errors() as error:
            log.warning("agent '%s' changed on another worker and could not be read: %s", name, error)

    async def _sync_logged(self, name: str) -> None:
        try:
            await self._sync(name, None, seen=False)
        except _database_errors() as error:
            # (shared by the next change of the agent on this worker, or this worker's next start)
            log.warning("agent '%s' changed on this worker and could not be shared yet: %s", name, error)

    async def _sync(self, name: str, row: Files | None, *, seen: bool = True) -> None:
        """Bring agent `name`'s folder, its row and this worker's registry in step. `row` is the
        row as read a moment ago (`seen`): when the folder holds it already, no lock is needed."""
        registry, agreed = self._registry, self._agreed
        if registry is None or agreed is None:
            return
        async with self._syncing(name):
            local = await asyncio.to_thread(registry.deployed_files, name)
            if seen and local == row:
                await self._mirror(name, local, row)
                return
            async with self._pool.acquire() as connection, connection.transaction():
                await _lock_row(connection, name)
                raw = await connection.fetchval(
                    "SELECT files::text FROM dynamic_agents WHERE name = $1", name
                )
                row = None if raw is None else _files(raw)
                local = await asyncio.to_thread(registry.deployed_files, name)
                base = await asyncio.to_thread(agreed.get, name)
                merged = merge_folders(base, local, row, agent=name)
                if merged != row:
                    await _write_row(connection, self.channel, name, merged, self.worker)
                    if local is not None and row is not None:
                        log.info("agent '%s': this worker's changes shared with every worker", name)
            await self._mirror(name, local, merged)

    async def _mirror(self, name: str, local: Files | None, merged: Files | None) -> None:
        """Make this worker's folder and registry hold `merged` (None: no such deployed agent)."""
        registry, agreed = self._registry, self._agreed
        assert registry is not None
        assert agreed is not None
        if merged is None:
            if local is not None:
                with contextlib.suppress(AgentNotFound):  # (removed meanwhile by a worker sharing the folder)
                    await asyncio.to_thread(self._applied, registry.remove, name)
            if name in registry.names():
                # Removed by a worker sharing the folder: forgotten here too (or the static
                # agent it hid answers again).
                await asyncio.to_thread(registry.reload_agent, name)
            await asyncio.to_thread(agreed.drop, name)
            self._served.pop(name, None)
            return
        if merged != local:
            try:
                await asyncio.to_thread(self._applied, registry.deploy, name, merged)
            except (ConfigError, UsageError) as error:
                # Valid where it was deployed but not here (a static agent of that name, a missing ${VAR}).
                log.warning("agent '%s' from PostgreSQL not deployed on this worker: %s", name, error)
                return
            except OSError as error:
                # (a worker sharing the folder deploying it at the same moment)
                if await asyncio.to_thread(registry.deployed_files, name) != merged:
                    raise
                log.debug("agent '%s' was deployed by another worker meanwhile: %s", name, error)
            else:
                self._served[name] = _digest(merged)
        await asyncio.to_thread(agreed.put, name, merged)
        await self._serve(name, merged)

    async def _serve(self, name: str, files: Files) -> None:
        """Have the registry read agent `name` again unless it was last made to read `files`: a
        worker sharing the data directory wrote them, and this registry has an older version,
        or none."""
        registry = self._registry
        assert registry is not None
        digest = _digest(files)
        if self._served.get(name) == digest:
            return
        await asyncio.to_thread(registry.reload_agent, name)
        self._served[name] = digest

    def _applied(self, change: Callable[..., object], *args: object) -> None:
        """Call the registry's `change` (deploy, remove) for a row: its Change is no change of this
        worker's to publish."""
        self._applying.active = True
        try:
            change(*args)
        finally:
            self._applying.active = False

    def _deployed_agents_of(self, paths: tuple[Path, ...]) -> set[str]:
        """The deployed agents whose folders hold any of `paths`."""
        registry = self._registry
        if registry is None:
            return set()
        folder = Path(os.path.abspath(registry.dynamic_path))
        names = set()
        for path in paths:
            absolute = Path(os.path.abspath(path))
            if absolute.is_relative_to(folder) and absolute != folder:
                name = absolute.relative_to(folder).parts[0]
                if not name.startswith("."):
                    names.add(name)
        return names

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _lock_row(connection: asyncpg.Connection, name: str) -> None:
    """Order the writes of agent `name`'s row by every worker until the transaction ends (a
    transaction lock, not FOR UPDATE: the row may not exist yet)."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || '/' || $2))", _LOCK_CLASS, name
    )


async def _write_row(
    connection: asyncpg.Connection, channel: str, name: str, files: Mapping[str, str] | None, worker: str
) -> None:
    """Make agent `name`'s row hold `files` (None: delete it); every worker is told when it changed."""
    if files is None:
        changed = await connection.fetchval("DELETE FROM dynamic_agents WHERE name = $1 RETURNING true", name)
    else:
        changed = await connection.fetchval(
            "INSERT INTO dynamic_agents (name, files, updated_by) VALUES ($1, $2::json, $3)"
            " ON CONFLICT (name) DO UPDATE SET files = EXCLUDED.files, updated_at = now(),"
            " updated_by = EXCLUDED.updated_by"
            " WHERE dynamic_agents.files::text IS DISTINCT FROM EXCLUDED.files::text"
            " RETURNING true",
            name,
            _encode(files),
            worker,
        )
    if changed:
        # (sent when the transaction commits)
        await connection.execute("SELECT pg_notify($1, $2)", channel, name)


def _encode(files: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(files.items())), ensure_ascii=False, separators=(",", ":"))


def _files(raw: str) -> Files:
    decoded = json.loads(raw)
    return {str(path): str(content) for path, content in decoded.items()}


def _digest(files: Mapping[str, str]) -> str:
    return hashlib.sha256(_encode(files).encode()).hexdigest()


def _database_errors() -> tuple[type[BaseException], ...]:
    """What reading or writing the table raises when PostgreSQL is away or refuses."""
    import asyncpg

    return (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return threading.current_thread() is threading.main_thread() and not loop.is_running()
