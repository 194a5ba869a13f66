"""`duragent mcp list`: each MCP server's state and tools.

With a server running, its admin API says how its servers are doing (servers start on first
use, so some may be `stopped`). Without one, every configured server is started here, asked
for its tools, and stopped again: a way to check a configuration before serving it.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from duragent.cli.context import CliState, print_json


def register(app: typer.Typer) -> None:
    """Add the `mcp` command group."""
    mcp_app = typer.Typer(no_args_is_help=True, help="MCP servers: state and tools.")
    mcp_app.command("list")(list_servers)
    app.add_typer(mcp_app, name="mcp")


def list_servers(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Only this agent's servers (and the workspace's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each MCP server: where it runs, its state, its tools and its last error."""
    from duragent.cli.serve import read_run_file

    state: CliState = ctx.ensure_object(CliState)
    config = state.config()
    record = read_run_file(config)
    servers = _fetch(record["url"], agent, config) if record is not None else _probe(config, agent)
    if as_json:
        print_json(servers)
        return
    if not servers:
        print("no MCP servers configured (mcp_servers in duragent.yaml or an agent's spec)")
        return
    for server in servers:
        _print_server(server)


def _print_server(server: dict[str, Any]) -> None:
    where = f"{server['scope']}, {server['transport']}: {server['target']}"
    state = server["state"]
    if state == "failed" and server.get("error"):
        state = f"failed: {server['error']}"
    elif state == "running":
        count = len(server["tools"])
        state = f"running, {count} tool{'' if count == 1 else 's'}"
    restarts = f" (restarted {server['restarts']}x)" if server.get("restarts") else ""
    print(f"{server['name']} ({where}): {state}{restarts}")
    for tool in server["tools"]:
        print(f"  {tool}")


def _fetch(url: str, agent: str | None, config: Any) -> list[dict[str, Any]]:
    import urllib.parse

    from duragent.cli.serve import request_server
    from duragent.client.http import admin_token
    from duragent.errors import DuragentError

    endpoint = f"{url}/api/admin/v1/mcp"
    if agent:
        endpoint += "?" + urllib.parse.urlencode({"agent": agent})
    try:
        status, text = request_server(endpoint, admin_token(config), timeout=30.0)
        if status != 200:
            raise DuragentError(f"the server answered HTTP {status}: {text.strip()}")
        body: dict[str, Any] = json.loads(text)
    except (OSError, ValueError) as exc:
        raise DuragentError(f"cannot reach the server at {url}: {exc}") from exc
    servers: list[dict[str, Any]] = body.get("servers", [])
    return servers


def _probe(config: Any, agent: str | None) -> list[dict[str, Any]]:
    """Start the servers here, list their tools, stop them."""
    import dataclasses

    from duragent.agents.catalog import AgentCatalog
    from duragent.cli.context import run_async
    from duragent.mcp.hub import WORKSPACE, McpHub, agent_scope
    from duragent.secrets import SecretGuard, redact_logs

    catalog = AgentCatalog(config.agents_path)
    if agent:
        agents = [catalog.get(agent)]
    else:
        agents, errors = catalog.load_all()
        for error in errors:
            print(f"warning: {error}", file=sys.stderr)
    if not config.mcp_servers and not any(loaded.spec.mcp_servers for loaded in agents):
        return []  # nothing to start, so nothing to announce
    print("no server is running: starting each MCP server to list its tools", file=sys.stderr)
    # An argument, a URL or what a server wrote to stderr may carry a token (`${TOKEN}` in
    # `args`): redacted here as the running server's admin API does, in its warnings too.
    guard = SecretGuard.from_config(config)

    async def probe() -> list[dict[str, Any]]:
        hub = McpHub(
            config.mcp_servers,
            workspace_dir=config.base_dir,
            workdir_for=lambda loaded: config.tool_workdir(loaded.name),
        )
        try:
            await hub.start_all(agents)
            # every server had its start_timeout: one still starting did not start in time
            statuses = [
                dataclasses.replace(status, state="failed", error="did not start in time (start_timeout)")
                if status.state == "starting"
                else status
                for status in hub.overview(agents)
            ]
        finally:
            await hub.close()
        if agent:
            statuses = [status for status in statuses if status.scope in (agent_scope(agent), WORKSPACE)]
        return [status.to_json() for status in statuses]

    undo = redact_logs(guard)
    try:
        result: list[dict[str, Any]] = run_async(probe())
    finally:
        undo()
    return [guard.redact_value(status) for status in result]
