"""GET /api/admin/v1/mcp: each MCP server's state and tools, as `duragent mcp list` shows them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from duragent.mcp.hub import WORKSPACE, agent_scope
from duragent.server.bodies import AgentName, Body, ProblemOut, Reply, json_reply, read_query
from duragent.server.openapi import documented
from duragent.server.state import STATE


class McpQuery(Body):
    """GET /api/admin/v1/mcp query string."""

    agent: AgentName | None = None


class McpServersOut(Reply):
    """Every MCP server of the workspace's agents (or of one agent and the workspace's)."""

    servers: list[dict[str, Any]]


@documented(
    "MCP servers: state (stopped, starting, running, failed), tools, restarts, last error.",
    query=McpQuery,
    responses={200: McpServersOut, 404: ProblemOut},
)
async def list_mcp_servers(request: web.Request) -> web.Response:
    """GET /api/admin/v1/mcp?agent=: servers not started yet are listed as stopped."""
    query = read_query(request, McpQuery)
    state = request.app[STATE]
    registry = state.agents
    agents = [registry.get(query.agent)] if query.agent else registry.loaded()
    hub = state.sessions.runtime.mcp
    statuses = hub.overview(agents) if hub is not None else []
    if query.agent:
        statuses = [status for status in statuses if status.scope in (agent_scope(query.agent), WORKSPACE)]
    # An error or a URL may carry a token: never shown.
    redact = state.workspace.guard.redact_value
    return json_reply(McpServersOut(servers=[redact(status.to_json()) for status in statuses]))
