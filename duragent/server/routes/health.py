"""Process health and facts: /livez, /readyz, /version, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web

from duragent import __version__
from duragent.server.bodies import Health, VersionOut, json_reply
from duragent.server.openapi import documented
from duragent.server.problems import KEEP_BODY
from duragent.server.state import STATE
from duragent.vcs.repo import GitRepo, stale_git_lock

#: How long /readyz waits for a store before calling it unreachable.
STORE_CHECK_TIMEOUT = 2.0


async def _unanswered(store: str, check: Awaitable[object]) -> str | None:
    """Why `store` cannot serve, when its `check` fails; None when it answered."""
    try:
        await asyncio.wait_for(check, STORE_CHECK_TIMEOUT)
    except TimeoutError:
        return f"{store} store did not answer within {STORE_CHECK_TIMEOUT:g}s"
    except Exception as exc:  # whatever a store raises, it cannot serve: that is the answer here
        return f"{store} store unreachable: {exc}"
    return None


@documented("Liveness: 200 `ok` while the process serves requests.", text=True)
async def livez(request: web.Request) -> web.Response:
    """The process is up."""
    return web.Response(text="ok")


@documented(
    "Readiness: 503 when a store is unreachable or a gateway down; broken agents are listed per "
    "agent (`degraded`) and do not stop the others; a stale `.git/index.lock` that blocks every "
    "commit, or commits failing (a full disk, a detached HEAD), is a warning (`degraded`).",
    responses={200: Health, 503: Health},
)
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the session store answering; per-agent problems reported apart."""
    state = request.app[STATE]
    problems: list[str] = []
    warnings = [line for line in state.agents.errors() if ": warning: " in line]
    broken = state.agents.problems_by_agent()
    stores = state.workspace.stores
    checks: list[tuple[str, Awaitable[object]]] = [("session", stores.sessions.list(limit=1))]
    if state.config.services.memory.backend == "postgres":
        # (memory in files answers as long as the disk does; in PostgreSQL it is a server away)
        checks.append(("memory", stores.memory.read_world()))
    for name, check in checks:
        problem = await _unanswered(name, check)
        if problem is not None:
            problems.append(problem)
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
    live = list(state.sessions.live.values())
    body = Health(
        status="unavailable" if problems else "degraded" if broken or stale_lock or commits_failing else "ok",
        workspace_hash=state.config.workspace_hash,
        problems=problems,
        warnings=warnings,
        agents=broken,
        agent_warnings=state.agents.warnings_by_agent(),
        busy=sum(1 for session in live if session.busy),
        attached=sum(session.attached for session in live),
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
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
