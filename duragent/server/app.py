"""The aiohttp application: `create_app(config)` wires the library into HTTP routes.

Everything the server holds open is opened and closed in one lifecycle (`cleanup_ctx`):
the data-dir lock, the workspace (stores, git committer), providers, the runtime, the agent
registry and the session manager. At start, sessions a crash left mid-turn are recovered;
while running, idle sessions are unloaded; at stop, running turns get a grace period to reach
a safe point, every session is snapshotted and git commits everything pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from duragent.config import DuragentConfig
from duragent.server import auth
from duragent.server.problems import PARSER_LINE_LIMIT
from duragent.server.state import STATE, ServerState

if TYPE_CHECKING:
    from pathlib import Path

    from duragent.agents.loader import Agent
    from duragent.cluster.node import ClusterNode
    from duragent.mcp.hub import McpHub
    from duragent.processes.manager import ProcessManager
    from duragent.scheduling.service import Scheduler
    from duragent.server.metrics import Metrics
    from duragent.sessions.live import EventFeed, TurnEndHook, TurnReport
    from duragent.sessions.stream import Position
    from duragent.stores.base import ArtifactStore, MemoryStore, SessionStore

log = logging.getLogger(__name__)

#: Largest request body accepted (413 above it), as in the Rust server.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: How often idle sessions are looked for.
SWEEP_INTERVAL = 30.0


def create_app(
    config: DuragentConfig,
    *,
    env: Mapping[str, str] | None = None,
    insecure: bool = False,
    host: str | None = None,
    keep_alive: float = 15.0,
    shutdown_grace: float = 10.0,
    idle_ttl: timedelta = timedelta(minutes=30),
) -> web.Application:
    """The server for `config` (nothing is opened until the app starts).

    ConfigError when a gateway setting's `${VAR}` is not set (commands other than a server load
    the configuration with its text kept): a plugin must never be started with that text as
    its token.
    """
    config.require_gateway_variables()
    from duragent.access_tokens import server_tokens
    from duragent.server.front_door import front_door
    from duragent.server.lazy_routes import add_lazy_routes
    from duragent.server.openapi import openapi_json
    from duragent.server.request_guard import HostPolicy, add_cors
    from duragent.server.routes import ADMIN_ROUTES, API_ROUTES, health
    from duragent.web.app import add_dashboard

    bind = host or config.server.host
    configured = auth.Tokens(api=config.server.api_token or None, admin=config.admin.token or None)
    auth.check_bind(bind, configured, insecure=insecure)
    # Without tokens in duragent.yaml the workspace's own (run/tokens.json) are required.
    required = server_tokens(config)
    tokens = auth.Tokens(api=required.api, admin=required.admin)
    policy = HostPolicy(bind, config.server.allowed_hosts, config.server.allowed_origins)
    app = web.Application(
        # Every check (request guard, tokens, dashboard login) and every error reply, in one.
        middlewares=[front_door(policy, tokens)],
        client_max_size=MAX_BODY_BYTES,
        # longer lines than aiohttp's 8 KB reach the front door, which answers in JSON
        handler_args={"max_line_size": PARSER_LINE_LIMIT, "max_field_size": PARSER_LINE_LIMIT},
    )
    add_cors(app, policy)
    app[auth.REQUIRED_TOKENS] = tokens
    health.add_routes(app)
    app.router.add_get("/openapi.json", openapi_json)
    # Their modules are imported on first request: /readyz needs none of them.
    add_lazy_routes(app, API_ROUTES)
    add_dashboard(app, api_token=tokens.api, admin_token=tokens.admin)
    if config.admin.enabled:
        add_lazy_routes(app, ADMIN_ROUTES)
    app.cleanup_ctx.append(
        _lifecycle(
            config,
            env=os.environ if env is None else env,
            keep_alive=keep_alive,
            shutdown_grace=shutdown_grace,
            idle_ttl=idle_ttl,
        )
    )
    app.on_shutdown.append(_stop_sessions)
    return app


def _lifecycle(
    config: DuragentConfig,
    *,
    env: Mapping[str, str],
    keep_alive: float,
    shutdown_grace: float,
    idle_ttl: timedelta,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            app[STATE] = await _open(config, env, stack, keep_alive, shutdown_grace, idle_ttl)
            sweeper = asyncio.create_task(_sweep_idle(app[STATE]), name="unload idle sessions")
            stack.push_async_callback(_stop_task, sweeper)
            yield

    return lifecycle


async def _open(
    config: DuragentConfig,
    env: Mapping[str, str],
    stack: contextlib.AsyncExitStack,
    keep_alive: float,
    shutdown_grace: float,
    idle_ttl: timedelta,
) -> ServerState:
    """Open every resource in order; `stack` closes them in reverse (last opened, first closed)."""
    from duragent.agents.registry import AgentRegistry
    from duragent.runtime.approvals import ApprovalBroker
    from duragent.runtime.loop import Runtime
    from duragent.runtime.providers import ProviderPool
    from duragent.secrets import looks_secret
    from duragent.server.metrics import Metrics
    from duragent.sessions.manager import SessionManager
    from duragent.stores.filesystem.locks import DataDirLock
    from duragent.workspace import Workspace

    workspace = Workspace(config, env=env)
    from duragent.secrets import redact_logs

    # Secrets (a Telegram token in a Bot API URL a plugin logged, say) never reach the server's log.
    stack.callback(redact_logs(workspace.guard))
    cluster = await _join_cluster(config, stack)
    if cluster is None:
        # One server per data directory; stateless workers share PostgreSQL instead (duragent.cluster).
        lock = DataDirLock(config.data_path, f"duragent serve for {config.data_path}")
        lock.acquire()
        stack.callback(lock.release)
    # Closed last but one: commits everything the sessions wrote while closing.
    stack.push_async_callback(workspace.close)
    stores = workspace.stores
    await _check_memory_database(config, stores.memory)
    await _check_artifact_bucket(config, stores.artifacts)
    if config.git.enabled:
        from duragent.vcs.watch import HumanEditWatcher

        # A person's edits to memory and agent files are committed as theirs while we run (and
        # first those made while nothing ran: the committer started next need not look again).
        watcher = HumanEditWatcher(workspace)
        await watcher.start()
        stack.push_async_callback(watcher.stop)
        # Started now, not at the first write: it commits what a crashed run left uncommitted.
        await asyncio.to_thread(lambda: workspace.committer)
    providers = ProviderPool(env)
    stack.push_async_callback(providers.close)
    approvals = ApprovalBroker()
    runtime = Runtime(
        provider_for=providers.for_agent,
        approvals=approvals,
        memory=stores.memory,
        artifacts=stores.artifacts,
        scrub_env=frozenset(config.referenced_env | {name for name in env if looks_secret(name)}),
        on_change=workspace.record_change,
        guard=workspace.guard,
        workdir_for=_tool_workdirs(config),
        data_dir=config.data_path,
        web_search=config.web_search,
        tool_activity=workspace.note_tool_activity,
    )
    runtime.mcp = _mcp_hub(config, env)
    # Pushed before the session manager: servers stop after the last turn has ended.
    stack.push_async_callback(runtime.mcp.close)
    agent_changes = (
        workspace.record_change if cluster is None else cluster.agents.listener(workspace.record_change)
    )
    registry = AgentRegistry(config, env=env, on_change=agent_changes, guard=workspace.guard)
    runtime.mcp.newest = registry.cached
    if config.agents.static.watch:
        await registry.start_watching()
    stack.push_async_callback(registry.stop)
    if cluster is not None:
        await cluster.agents.attach(registry)
    metrics = Metrics()
    manager = SessionManager(
        stores.sessions,
        runtime,
        config,
        registry.get,
        idle_ttl=idle_ttl,
        on_turn_end=_turn_metrics(metrics),
        newest_agent=registry.settled,
        **_cluster_hooks(cluster, stores.sessions),
    )
    stack.push_async_callback(manager.close, shutdown_grace)
    state = ServerState(
        config=config,
        workspace=workspace,
        agents=registry,
        sessions=manager,
        approvals=approvals,
        metrics=metrics,
        keep_alive=keep_alive,
        shutdown_grace=shutdown_grace,
    )
    if cluster is not None:
        from duragent.server.routes.sessions import serve_for_another_worker

        # Approvals, cancels and messages for sessions this worker runs, from whichever worker got them.
        state.owner_requests = cluster.requests
        cluster.requests.serve(functools.partial(serve_for_another_worker, state))
    if config.gateways.external:
        from duragent.gateways.service import GatewayService

        state.gateways = GatewayService(state)
        if cluster is None:
            # Chats follow their sessions before recovery, so a resumed turn's reply reaches its chat.
            await state.gateways.restore()
    # Made before recovery, started after it: a turn recovery resumes makes its tool context at
    # once (one waiting for an approval, before it asks again), and `schedule` and
    # `background_process` must find them there, not None, when it runs its calls later. (The
    # process records are read now: that context says which schedule started a process.)
    state.schedules = runtime.schedules = _scheduler(state, cluster)
    state.processes = runtime.processes = _process_manager(state)
    await state.processes.load()
    if cluster is not None:
        # Sessions of workers that died (or of the whole cluster's last stop) are adopted by the scan.
        cluster.start(manager)
    else:
        report = await manager.recover()
        if report.resumed or report.paused:
            log.info("recovered %d session(s), paused %d", len(report.resumed), len(report.paused))
    if state.gateways is not None:
        await state.gateways.start()
        stack.push_async_callback(state.gateways.stop)
    await _start_scheduler(state.schedules, config)
    stack.push_async_callback(state.schedules.stop)
    await state.processes.start()
    stack.push_async_callback(state.processes.close)
    return state


def _process_manager(state: ServerState) -> ProcessManager:
    """Background processes, reported to their sessions; `start` adopts those that survived a
    restart and reports the ends nobody heard of."""
    from duragent.processes.completion import SessionReporter
    from duragent.processes.manager import ProcessManager
    from duragent.processes.tmux import socket_name

    config = state.config
    processes = ProcessManager(
        config.data_path / "processes",
        on_change=state.workspace.record_change,
        tmux_socket=socket_name(config.data_path),
    )
    gateways = state.gateways
    chats = gateways.router.chat_session if gateways is not None and gateways.manager.plugins else None
    processes.reporter = SessionReporter(state.sessions, chats)
    # ending (or deleting) a session stops what it started in the background
    state.sessions.end_listeners.append(processes.stop_session)
    if state.schedules is not None:
        processes.on_end.append(state.schedules.process_ended)
    return processes


def _tool_workdirs(config: DuragentConfig) -> Callable[[Agent], Path]:
    """Each agent's `config.tool_workdir`, worked out once per agent (it resolves the data
    directory, a dozen system calls asked for before every turn)."""
    workdir = functools.cache(config.tool_workdir)
    return lambda agent: workdir(agent.name)


def _mcp_hub(config: DuragentConfig, env: Mapping[str, str]) -> McpHub:
    """The MCP servers of this process (started on the first turn that needs them)."""
    from duragent.mcp.hub import McpHub

    return McpHub(
        config.mcp_servers,
        workspace_dir=config.base_dir,
        workdir_for=_tool_workdirs(config),
        env=env,
    )


def _scheduler(state: ServerState, cluster: ClusterNode | None) -> Scheduler:
    """The scheduler, not started yet (`_start_scheduler`)."""
    from duragent.scheduling.delivery import SessionDelivery
    from duragent.scheduling.service import Scheduler, SchedulerSettings
    from duragent.scheduling.store import FileScheduleStore, open_schedule_store

    config = state.config
    settings = config.scheduling
    store = open_schedule_store(config, on_change=state.workspace.record_change)
    gateways = state.gateways
    chats = gateways.router.chat_session if gateways is not None and gateways.manager.plugins else None
    return Scheduler(
        store,
        SessionDelivery(state.sessions, chats),
        settings=SchedulerSettings(
            misfire_grace=settings.misfire_grace,
            max_concurrent_runs=settings.max_concurrent_runs,
            poll_interval=settings.poll_interval.total_seconds(),
            tasks_may_schedule=settings.tasks_may_schedule,
            agent_min_interval=settings.agent_min_interval,
            agent_max_active=settings.agent_max_active,
        ),
        worker=cluster.worker if cluster is not None else "local",
        watch_folder=store.folder if isinstance(store, FileScheduleStore) else None,
        sessions=state.workspace.stores.sessions,
    )


async def _start_scheduler(scheduler: Scheduler, config: DuragentConfig) -> None:
    """Start the scheduler after recovery (a resumed turn goes first); it fires only when enabled."""
    if config.scheduling.enabled:
        await scheduler.start()
    else:
        await scheduler.reload()


async def _join_cluster(config: DuragentConfig, stack: contextlib.AsyncExitStack) -> ClusterNode | None:
    """With sessions in PostgreSQL this process is one of N stateless workers: join them."""
    if config.services.session.backend != "postgres":
        return None
    from duragent.cluster.node import ClusterNode
    from duragent.stores.factory import postgres_url

    url = postgres_url(config, "session")
    with _database_named_at_its_line(config, "session"):
        cluster = await ClusterNode.open(url)
    stack.push_async_callback(cluster.close)
    log.info("worker %s joined the cluster (schema %s)", cluster.worker, cluster.schema)
    return cluster


@contextlib.contextmanager
def _database_named_at_its_line(config: DuragentConfig, service: str) -> Iterator[None]:
    """Re-raise a database that cannot be reached or used (a wrong host, database or role, a user
    without rights on the schema, a schema from a newer Duragent) prefixed with the file:line of
    `services.<service>.url`: each is the configuration's (or the database's) to put right."""
    from duragent.stores.postgres.migrations import MigrationError
    from duragent.stores.postgres.pool import PostgresUnavailable

    try:
        yield
    except (PostgresUnavailable, MigrationError) as error:
        where = config.locate(("services", service, "url"))
        raise type(error)(f"{where}: services.{service}.url: {error}") from error


async def _check_memory_database(config: DuragentConfig, memory: MemoryStore) -> None:
    """Refuse to start when memory in PostgreSQL cannot be reached or used, naming its line,
    rather than failing every turn (each reads memory) of a server that looked started."""
    if config.services.memory.backend != "postgres":
        return
    with _database_named_at_its_line(config, "memory"):
        await memory.read_world()  # (opens the pool and migrates the schema)


async def _check_artifact_bucket(config: DuragentConfig, artifacts: ArtifactStore) -> None:
    """Refuse to start when the S3 bucket of `services.artifacts` cannot be used, naming its line,
    rather than failing the first turn that writes an artifact."""
    if config.services.artifacts.backend != "s3":
        return
    from duragent.stores.s3 import S3ArtifactStore, S3Error

    assert isinstance(artifacts, S3ArtifactStore)  # what open_artifact_store makes of backend s3
    try:
        await artifacts.check()
    except S3Error as error:
        where = config.locate(("services", "artifacts", "bucket"))
        raise S3Error(f"{where}: services.artifacts.bucket: {error}") from error


def _cluster_hooks(cluster: ClusterNode | None, store: SessionStore) -> dict[str, Any]:
    """SessionManager options that make its sessions owned, published and followed cluster-wide."""
    if cluster is None:
        return {}

    async def follow_remote(session_id: str, after: Position | None) -> EventFeed:
        return await cluster.events.follow(store, session_id, after)

    return {"ownership": cluster.ownership, "publish": cluster.events.publish, "follow_remote": follow_remote}


def _turn_metrics(metrics: Metrics) -> TurnEndHook:
    """The hook that counts each finished turn, its latency and its tokens in `metrics`."""

    def record(report: TurnReport) -> None:
        metrics.turn_finished(report.seconds, report.outcome)
        metrics.tokens(report.input_tokens, report.output_tokens)

    return record


async def _stop_sessions(app: web.Application) -> None:
    """On shutdown, before open connections are waited for: pause running turns at a safe point.

    This ends every SSE stream and waiting request, so the server can stop promptly.
    """
    state = app.get(STATE)
    if state is not None:
        state.shutdown.set()
        await state.sessions.close(state.shutdown_grace)


async def _sweep_idle(state: ServerState) -> None:
    interval = min(SWEEP_INTERVAL, max(state.sessions.idle_ttl.total_seconds() / 2, 0.5))
    while True:
        await asyncio.sleep(interval)
        unloaded = await state.sessions.unload_idle(time.monotonic())
        if unloaded:
            log.info("unloaded %d idle session(s)", len(unloaded))


async def _stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
