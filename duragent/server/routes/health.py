"""Process health and facts: /livez, /readyz, /version, /metrics."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from duragent import __version__
from duragent.server.openapi import documented
from duragent.server.problems import KEEP_BODY
from duragent.server.replies import Health, VersionOut, json_reply
from duragent.server.state import STATE, ServerState
from duragent.vcs.repo import GitRepo, stale_git_lock

#: How long /readyz waits for a store before calling it unreachable.
STORE_CHECK_TIMEOUT = 2.0
#: The store checks still running, by store. A check is left to end on its own (within its store's
#: query timeout) rather than cancelled: cancelling a PostgreSQL query waits for the silent server
#: too. A probe that comes while an earlier probe's check still runs waits for that one instead
#: of starting another, so a partition does not pile up checks, each holding a pool connection.
STORE_CHECKS = web.AppKey("duragent_store_checks", dict[str, asyncio.Task[object]])


async def _unanswered(
    running: dict[str, asyncio.Task[object]], store: str, check: Callable[[], Awaitable[object]]
) -> str | None:
    """Why `store` cannot serve, when its `check` fails or takes longer than STORE_CHECK_TIMEOUT;
    None when it answered."""
    task = running.get(store)
    if task is None:
        task = running[store] = asyncio.ensure_future(check())
        task.add_done_callback(functools.partial(_forget, running, store))
    done, _ = await asyncio.wait({task}, timeout=STORE_CHECK_TIMEOUT)
    if not done:
        return f"{store} store did not answer within {STORE_CHECK_TIMEOUT:g}s"
    error = None if task.cancelled() else task.exception()
    if error is not None:  # whatever a store raises, it cannot serve: that is the answer here
        return f"{store} store unreachable: {error}"
    return None


def _forget(running: dict[str, asyncio.Task[object]], store: str, task: asyncio.Task[object]) -> None:
    """Drop the finished check of `store` (its error is read here, so none goes unretrieved)."""
    if running.get(store) is task:
        del running[store]
    if not task.cancelled():
        task.exception()


def _store_checks(state: ServerState) -> dict[str, Callable[[], Awaitable[object]]]:
    """A call per store a turn needs that fails when the store cannot serve."""
    stores = state.workspace.stores
    checks: dict[str, Callable[[], Awaitable[object]]] = {"session": lambda: stores.sessions.list(limit=1)}
    services = state.config.services
    if services.memory.backend == "postgres":
        # (memory in files answers as long as the disk does; in PostgreSQL it is a server away)
        checks["memory"] = stores.memory.read_world
    if services.artifacts.backend == "s3":
        from duragent.stores.s3 import S3ArtifactStore

        artifacts = stores.artifacts
        assert isinstance(artifacts, S3ArtifactStore)  # what open_artifact_store makes of backend s3
        checks["artifact"] = artifacts.check
    return checks


async def _stop_store_checks(app: web.Application) -> None:
    """On shutdown, before the stores close: cancel the checks still waiting for a store."""
    for task in app[STORE_CHECKS].values():
        task.cancel()


@documented("Liveness: 200 `ok` while the process serves requests.", text=True)
async def livez(request: web.Request) -> web.Response:
    """The process is up."""
    return web.Response(text="ok")


@documented(
    "Readiness: 503 when a store (sessions; memory in PostgreSQL; artifacts in S3) does not answer "
    f"within {STORE_CHECK_TIMEOUT:g}s or a gateway is down; broken agents are listed per "
    "agent (`degraded`) and do not stop the others; a stale `.git/index.lock` that blocks every "
    "commit, or commits failing (a full disk, a detached HEAD), is a warning (`degraded`).",
    responses={200: Health, 503: Health},
)
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: every store a turn needs answering; per-agent problems reported apart."""
    state = request.app[STATE]
    problems: list[str] = []
    warnings = [line for line in state.agents.errors() if ": warning: " in line]
    broken = state.agents.problems_by_agent()
    running = request.app[STORE_CHECKS]
    # All at once: a silent network holds each check for its whole timeout.
    answers = await asyncio.gather(
        *(_unanswered(running, store, check) for store, check in _store_checks(state).items())
    )
    problems += [answer for answer in answers if answer is not None]
    if state.gateways is not None:
        problems += state.gateways.problems()
    ownership = state.sessions.ownership
    if ownership is not None and ownership.lost:
        problems.append(
            "lost the PostgreSQL connection holding this worker's session locks "
            "(other workers take its sessions over): reconnecting"
        )
    # a repository only if the server opened one (reading `repo` would create it)
    repo: GitRepo | None = vars(state.workspace).get("repo")
    stale_lock = stale_git_lock(repo.git_dir) if repo is not None else None
    if stale_lock:
        warnings.append(f"git: {stale_lock}")
    # turns are still served while commits fail: a warning, not a reason to take the server out
    commits_failing = state.workspace.commits_failing()
    if commits_failing:
        warnings.append(f"git: {commits_failing}")
    # (not degraded: every other file is committed; the log alone said so before)
    # (in a thread: git runs when a listed file changed)
    held_back = await asyncio.to_thread(state.workspace.files_held_back)
    warnings += [f"git: {line}" for line in held_back]
    live = list(state.sessions.live.values())
    body = Health(
        status="unavailable" if problems else "degraded" if broken or stale_lock or commits_failing else "ok",
        workspace_hash=state.config.workspace_hash,
        problems=problems,
        warnings=warnings,
        agents=broken,
        agent_warnings=state.agents.warnings_by_agent(),
        config_warnings=[str(warning) for warning in state.config.warnings],
        busy=sum(1 for session in live if session.busy),
        attached=sum(session.clients for session in live),
    )
    response = json_reply(body, 503 if problems else 200)
    # The body is the readiness report itself (clients read workspace_hash from it), not a problem.
    response[KEEP_BODY] = True
    return response


@documented("Version of the running server.", responses={200: VersionOut})
async def version(request: web.Request) -> web.Response:
    """The package version."""
    return json_reply(VersionOut(version=__version__))


@documented("Prometheus metrics (text exposition format).", text=True)
async def metrics(request: web.Request) -> web.Response:
    """Counters and gauges for Prometheus."""
    state = request.app[STATE]
    return web.Response(
        text=state.metrics.render(state),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )


def add_routes(app: web.Application) -> None:
    """Register the health routes."""
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app[STORE_CHECKS] = {}
    app.on_shutdown.append(_stop_store_checks)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
