"""What the MCP client tests share: an agent with MCP servers, calling its tools, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from duragent.agents.loader import Agent, load_agent
from duragent.mcp.hub import McpHub
from duragent.mcp.tools import McpTool
from duragent.tools.base import ToolContext, ToolResult
from duragent.tools.registry import call_tool

T = TypeVar("T")


def write_agent(
    root: Path, servers: list[dict[str, Any]], llm_url: str = "http://127.0.0.1:9/v1", **spec: Any
) -> Agent:
    folder = root / "agents" / "helper"
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "duragent/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "helper"},
        "spec": {
            "model": {"provider": "openai", "name": "gpt-test", "base_url": llm_url},
            "mcp_servers": servers,
            **spec,
        },
    }
    (folder / "agent.yaml").write_text(yaml.safe_dump(document))
    return load_agent(folder, env={"OPENAI_API_KEY": "sk-test"})[0]


def context(tmp_path: Path, **extra: Any) -> ToolContext:
    return ToolContext(agent="helper", session_id="s1", workdir=tmp_path, **extra)


async def tools_by_name(hub: McpHub, agent: Agent) -> dict[str, McpTool]:
    return {tool.name: tool for tool in await hub.tools_for(agent)}


async def run(
    hub: McpHub, agent: Agent, name: str, arguments: dict[str, Any], ctx: ToolContext
) -> ToolResult:
    tool = (await tools_by_name(hub, agent))[name]
    return await call_tool(tool, arguments, ctx)


async def wait_until(probe: Callable[[], Awaitable[T | None]], within: float = 30.0) -> T:
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def ended(pid: int) -> bool:
    """Whether process `pid` is gone (or a zombie its parent has not reaped yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def process_ended(pid: int, within: float = 30.0) -> None:
    """Wait until process `pid` is gone (or a zombie its parent has not reaped yet)."""

    async def gone() -> bool:
        return ended(pid)

    await wait_until(gone, within)
