"""Every MCP server of a running process: one connection per server, shared by the sessions.

Tools are named to the model by `duragent.mcp.naming.tool_names` over all the agent's tools at
once, so two tools whose names would be the same (from one server or two) are both offered.

Workspace servers (`mcp_servers` in duragent.yaml) are offered to every agent and run once for
all of them; an agent's own servers (`spec.mcp_servers`) run once for that agent's sessions,
and one of them with a workspace server's name replaces it for that agent. Servers start on
the first turn that needs their tools; an edited server entry starts afresh; `close()` stops
them all (the server does at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from duragent.agents.loader import Agent
from duragent.mcp.connection import McpConnection, ServerStatus
from duragent.mcp.naming import MAX_SUFFIX, tool_name, tool_names
from duragent.mcp.spec import McpServerSpec
from duragent.mcp.tools import McpTool
from duragent.tools.workdir import prepare_workdir

log = logging.getLogger(__name__)

#: How many agents' tool lists keep their worked-out names (a list per agent and server set).
_NAME_LISTS_KEPT = 64

#: The scope of duragent.yaml's servers; an agent's own are `agent:<name>` (as `skill list` shows).
WORKSPACE = "workspace"


def agent_scope(agent: str) -> str:
    """The scope of agent `agent`'s own servers."""
    return f"agent:{agent}"


class McpHub:
    """The connections to MCP servers, by (scope, name); scope is WORKSPACE or `agent:<name>`."""

    def __init__(
        self,
        servers: Sequence[McpServerSpec] = (),
        *,
        workspace_dir: Path,
        workdir_for: Callable[[Agent], Path],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.servers = tuple(servers)
        self._workspace_dir = workspace_dir
        self._workdir_for = workdir_for
        self._env = os.environ if env is None else env
        self._connections: dict[tuple[str, str], McpConnection] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._renames_told: set[tuple[str, str, str | None]] = set()
        self._names_by_list: dict[tuple[tuple[str, str], ...], list[str | None]] = {}
        #: The newest loaded definition of an agent (the server's registry), if known. A session
        #: keeps the definition it started with, but its MCP servers are the newest ones: two
        #: definitions asking for one server each their own way would stop it for each other.
        self.newest: Callable[[str], Agent | None] = lambda name: None

    def configured(self, agent: Agent) -> list[tuple[str, McpServerSpec]]:
        """The servers `agent` gets, as (scope, spec): its own, then the workspace's it does not shadow."""
        own = list(agent.spec.mcp_servers)
        if not own and not self.servers:
            return []  # (asked every turn: most agents have none)
        names = {spec.name for spec in own}
        shared = [(WORKSPACE, spec) for spec in self.servers if spec.name not in names]
        return [(agent_scope(agent.name), spec) for spec in own] + shared

    def connection(self, agent: Agent, scope: str, spec: McpServerSpec) -> McpConnection:
        """The connection for this server, made (not started) on first use or after its entry changed."""
        key = (scope, spec.name)
        existing = self._connections.get(key)
        if existing is not None and existing.spec == spec:
            return existing
        if existing is not None:
            self._retire(existing)
        cwd = self._workspace_dir if scope == WORKSPACE else self._workdir_for(agent)
        if scope != WORKSPACE:
            # (a folder that cannot be made is the server's failure to start, reported as such)
            with contextlib.suppress(OSError):
                prepare_workdir(cwd)
        made = McpConnection(spec, scope=scope, cwd=cwd, env=self._env)
        self._connections[key] = made
        return made

    async def tools_for(self, agent: Agent) -> list[McpTool]:
        """The tools of the agent's servers, starting those not running yet (in parallel).

        A server that cannot start adds no tools (its error is logged and shown by `mcp list`).
        """
        agent = self.newest(agent.name) or agent
        configured = self.configured(agent)
        own = agent_scope(agent.name)
        self._retire_removed(own, {spec.name for scope, spec in configured if scope == own})
        connections = [self.connection(agent, scope, spec) for scope, spec in configured]
        listed = await asyncio.gather(*(connection.tools() for connection in connections))
        offered = [
            (connection, tool)
            for connection, server_tools in zip(connections, listed, strict=True)
            for tool in server_tools
        ]
        names = self._names_of(tuple((connection.spec.name, tool.name) for connection, tool in offered))
        tools: list[McpTool] = []
        for (connection, tool), name in zip(offered, names, strict=True):
            if name is not None:
                tools.append(McpTool(connection.spec.name, tool, connection.call, name))
        return tools

    def _names_of(self, listed: tuple[tuple[str, str], ...]) -> list[str | None]:
        """`tool_names` of the agent's (server, tool) list, worked out once per list: every turn
        asks again, and the list rarely changes."""
        names = self._names_by_list.get(listed)
        if names is None:
            names = tool_names(listed)
            for (server, tool), name in zip(listed, names, strict=True):
                self._tell_renamed(server, tool, name)
            if len(self._names_by_list) >= _NAME_LISTS_KEPT:
                self._names_by_list.clear()  # (lists of servers long gone or edited)
            self._names_by_list[listed] = names
        return names

    def _tell_renamed(self, server: str, tool: str, name: str | None) -> None:
        """Log (once, not every turn) a tool that shares its name with another and is offered
        under a numbered one, or not at all."""
        if name == tool_name(server, tool) or (server, tool, name) in self._renames_told:
            return
        self._renames_told.add((server, tool, name))
        if name is None:
            log.warning(
                "MCP server %s: tool %r is not offered: %d tools already share its name",
                server,
                tool,
                MAX_SUFFIX,
            )
        else:
            log.info(
                "MCP server %s: tool %r is %s to the model (another tool has its name)", server, tool, name
            )

    async def start_all(self, agents: Sequence[Agent]) -> None:
        """Start every server of these agents (and the workspace's) and wait for their tool lists."""
        await asyncio.gather(*(self.tools_for(agent) for agent in agents))
        workspace_only = [spec for spec in self.servers if (WORKSPACE, spec.name) not in self._connections]
        await asyncio.gather(*(self._workspace_connection(spec).tools() for spec in workspace_only))

    def _workspace_connection(self, spec: McpServerSpec) -> McpConnection:
        made = McpConnection(spec, scope=WORKSPACE, cwd=self._workspace_dir, env=self._env)
        self._connections[(WORKSPACE, spec.name)] = made
        return made

    def overview(self, agents: Sequence[Agent]) -> list[ServerStatus]:
        """Every server configured for these agents and the workspace, started or not, each once."""
        seen: dict[tuple[str, str], ServerStatus] = {}
        for agent in agents:
            configured = self.configured(agent)
            # The tools as that agent's model sees them (a clash between two servers numbers one).
            named = self._names(configured)
            for scope, spec in configured:
                seen.setdefault((scope, spec.name), self._status(scope, spec, named))
        for spec in self.servers:
            seen.setdefault((WORKSPACE, spec.name), self._status(WORKSPACE, spec))
        return [seen[key] for key in sorted(seen)]

    def _started(self, scope: str, spec: McpServerSpec) -> McpConnection | None:
        connection = self._connections.get((scope, spec.name))
        return connection if connection is not None and connection.spec == spec else None

    def _names(self, configured: list[tuple[str, McpServerSpec]]) -> dict[tuple[str, str], tuple[str, ...]]:
        """The names the model sees for the listed tools of these servers, by (scope, server)."""
        listed = [
            ((scope, spec.name), tool.name)
            for scope, spec in configured
            if (connection := self._started(scope, spec)) is not None
            for tool in connection.listed
        ]
        names: dict[tuple[str, str], list[str]] = {}
        for (key, _tool), name in zip(listed, tool_names([(k[1], t) for k, t in listed]), strict=True):
            if name is not None:
                names.setdefault(key, []).append(name)
        return {key: tuple(value) for key, value in names.items()}

    def _status(
        self, scope: str, spec: McpServerSpec, named: dict[tuple[str, str], tuple[str, ...]] | None = None
    ) -> ServerStatus:
        connection = self._started(scope, spec)
        if connection is None:
            return ServerStatus(spec.name, scope, spec.transport, spec.target, "stopped", (), None, 0)
        status = connection.status()
        if named is None:
            return status
        return dataclasses.replace(status, tools=named.get((scope, spec.name), ()))

    def statuses(self, agent: str | None = None) -> list[ServerStatus]:
        """The state of every server started so far (of one agent and the workspace's, if `agent`)."""
        return [
            connection.status()
            for (scope, _name), connection in sorted(self._connections.items())
            if agent is None or scope in (agent_scope(agent), WORKSPACE)
        ]

    async def close(self) -> None:
        """Stop every server."""
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(connection.close() for connection in connections))
        if self._retired:
            await asyncio.gather(*self._retired)

    def _retire_removed(self, scope: str, names: set[str]) -> None:
        """Stop the servers of `scope` (an agent) whose entries are gone from its spec."""
        for key in [key for key in self._connections if key[0] == scope and key[1] not in names]:
            self._retire(self._connections.pop(key))

    def _retire(self, connection: McpConnection) -> None:
        """Stop a server whose entry was edited or removed, in the background (a running call fails)."""
        task = asyncio.create_task(connection.close(), name=f"close mcp server {connection.spec.name}")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
