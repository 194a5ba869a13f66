"""The admin API under /api/admin/v1: shutdown, reload-agents (as in Rust) and deploying agents.

Auth (`admin.token`) is the auth middleware's job; `create_app` leaves these routes out when
`admin.enabled` is false. Agent files travel as JSON strings (`{"files": {"agent.yaml": "..."}}`)
and are validated like `duragent agent validate` before anything is written; a deployment that
does not validate is a 422 whose `errors` locate each problem as `files.<file>:<line>:<column>`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from aiohttp import web
from pydantic import Field

from duragent.agents.catalog import AgentNotFound
from duragent.agents.registry import (
    AgentExists,
    AgentRegistry,
    AgentSource,
    AgentSummary,
    StaticAgentConflict,
)
from duragent.errors import ConfigError, Problem
from duragent.server.bodies import Body, NewAgentName, ProblemOut, Reply, json_reply, read_body
from duragent.server.openapi import documented
from duragent.server.problems import FieldError, HttpProblem
from duragent.server.state import STATE

#: Files of one agent: relative path inside the agent folder -> text content.
AgentFilesField = Field(
    min_length=1,
    max_length=200,
    description="Relative file name inside the agent folder (agent.yaml, SYSTEM_PROMPT.md, skills/x.md) "
    "-> its text.",
)


class DeployAgent(Body):
    """POST /api/admin/v1/agents."""

    name: NewAgentName = Field(
        min_length=1, max_length=200, description="The agent's name (its folder name)."
    )
    files: dict[str, str] = AgentFilesField


class ReplaceAgent(Body):
    """PUT /api/admin/v1/agents/{name}."""

    files: dict[str, str] = AgentFilesField


class AdminAgentOut(Reply):
    """An agent as the admin API shows it: where it comes from and whether it loads."""

    name: str
    description: str
    version: str | None = None
    provider: str | None = None
    model: str | None = None
    source: Literal["static", "dynamic"]
    valid: bool
    error: str | None = None


class AdminAgentList(Reply):
    """GET /api/admin/v1/agents: every agent, valid or not, static and deployed."""

    agents: list[AdminAgentOut]


class AgentFilesOut(Reply):
    """GET /api/admin/v1/agents/{name}: the agent's text files."""

    name: str
    source: Literal["static", "dynamic"]
    files: dict[str, str]


@documented('Stop the server gracefully: 200 "Shutdown initiated", 409 when already stopping.', text=True)
async def shutdown(request: web.Request) -> web.Response:
    """Ask the running server to stop (running turns reach a safe point, git is flushed)."""
    state = request.app[STATE]
    if state.shutdown.is_set():
        return web.Response(status=409, text="Shutdown already in progress")
    state.shutdown.set()
    return web.Response(text="Shutdown initiated")


@documented('Re-read every agent folder: 200 "Reloaded N agents" (N = agents that load).', text=True)
async def reload_agents(request: web.Request) -> web.Response:
    """Rescan the static and deployed agent folders."""
    count = await asyncio.to_thread(request.app[STATE].agents.reload)
    return web.Response(text=f"Reloaded {count} agents")


@documented("Every agent, static and deployed, with its problems.", responses={200: AdminAgentList})
async def list_agents(request: web.Request) -> web.Response:
    """All agents, including invalid ones (`valid: false` and the error)."""
    summaries = await asyncio.to_thread(request.app[STATE].agents.summaries)
    return json_reply(AdminAgentList(agents=[_agent_out(summary) for summary in summaries]))


@documented(
    "Deploy a new agent from its files (201); 409 when it exists, 422 with every problem when invalid.",
    body=DeployAgent,
    responses={201: AdminAgentOut, 409: ProblemOut, 422: ProblemOut},
)
async def deploy_agent(request: web.Request) -> web.Response:
    """Validate the files, write them under `agents.dynamic.path`, commit them, serve the agent at once."""
    body = await read_body(request, DeployAgent)
    registry = request.app[STATE].agents
    # (deploy refuses it too, once the files are checked; a clash is told before any problem in them)
    if _source(registry, body.name) == "dynamic":
        raise HttpProblem(409, str(AgentExists(body.name)), type_name="conflict")
    await deploy_files(registry, body.name, body.files, replace=False)
    return json_reply(_agent_out(registry.summary(body.name)), 201)


@documented("One agent's files and where it comes from.", responses={200: AgentFilesOut, 404: ProblemOut})
async def get_agent(request: web.Request) -> web.Response:
    """The text files of the agent's folder."""
    name = request.match_info["name"]
    registry = request.app[STATE].agents
    files = await asyncio.to_thread(registry.files, name)
    return json_reply(AgentFilesOut(name=name, source=registry.source(name), files=files))


@documented(
    "Replace a deployed agent's files (200), or deploy it when new (201); 422 when invalid.",
    body=ReplaceAgent,
    responses={200: AdminAgentOut, 201: AdminAgentOut, 409: ProblemOut, 422: ProblemOut},
)
async def replace_agent(request: web.Request) -> web.Response:
    """The whole folder is replaced: files left out of the body are deleted."""
    name = request.match_info["name"]
    body = await read_body(request, ReplaceAgent)
    registry = request.app[STATE].agents
    existed = _source(registry, name) is not None
    await deploy_files(registry, name, body.files)
    return json_reply(_agent_out(registry.summary(name)), 200 if existed else 201)


@documented(
    "Remove a deployed agent (204); static agents are 409.",
    responses={204: None, 404: ProblemOut, 409: ProblemOut},
)
async def remove_agent(request: web.Request) -> web.Response:
    """Delete the agent's folder under `agents.dynamic.path` and commit the removal."""
    registry = request.app[STATE].agents
    try:
        await asyncio.to_thread(registry.remove, request.match_info["name"])
    except StaticAgentConflict as exc:
        raise HttpProblem(409, str(exc), type_name="conflict") from None
    return web.Response(status=204)


async def deploy_files(
    registry: AgentRegistry,
    name: str,
    files: dict[str, str],
    field_of: Callable[[Problem], FieldError] | None = None,
    *,
    replace: bool = True,
) -> None:
    """Deploy, turning the library's refusals into 409 / 422 problems; `field_of` says where in the
    request each problem is (default: `files.<file>:<line>:<column>`). `replace=False`: create only."""
    located = field_of or _field_error
    try:
        await asyncio.to_thread(registry.deploy, name, files, replace=replace)
    except (StaticAgentConflict, AgentExists) as exc:
        raise HttpProblem(409, str(exc), type_name="conflict") from None
    except ConfigError as exc:
        count = len(exc.problems)
        raise HttpProblem(
            422,
            f"agent '{name}' is invalid: {count} problem{'s' if count != 1 else ''}; nothing was written",
            [located(problem) for problem in exc.problems],
            "invalid-agent",
        ) from None


def _field_error(problem: Problem) -> FieldError:
    """`files.agent.yaml:3:5` for a located problem, `files` for one about the set of files."""
    where = f"files.{problem.location}" if problem.location and problem.location.file else "files"
    return FieldError(where, problem.message)


def _source(registry: AgentRegistry, name: str) -> AgentSource | None:
    """Where agent `name` comes from; None when there is no such agent."""
    try:
        return registry.source(name)
    except AgentNotFound:
        return None


def _agent_out(summary: AgentSummary) -> AdminAgentOut:
    return AdminAgentOut(
        name=summary.name,
        description=summary.description,
        version=summary.version,
        provider=summary.provider,
        model=summary.model,
        source=summary.source,
        valid=summary.valid,
        error=summary.error,
    )
