"""Deployed agents shared by workers through the `dynamic_agents` table, on the real PostgreSQL:
each worker is a ClusterNode with a real AgentRegistry over its own data directory (or a shared
one), as `duragent serve` wires them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from duragent.agents.registry import AgentRegistry
from duragent.cluster.node import ClusterNode
from duragent.config import DuragentConfig, load_config
from duragent.stores.base import Change
from duragent.testing.postgres import temporary_schema
from tests.waiting import until

AGENT_YAML = """\
name: {name}
description: {description}
model:
  provider: openai
  name: gpt-4o-mini
system_prompt: SYSTEM_PROMPT.md
tools:
  builtin: [bash]
  policy:
    mode: ask
"""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


def agent_files(name: str, description: str = "shared agent", **more: str) -> dict[str, str]:
    return {
        "agent.yaml": AGENT_YAML.format(name=name, description=description),
        "SYSTEM_PROMPT.md": f"You are {name}.\n",
        **more,
    }


@dataclass
class Worker:
    """One worker: its cluster node, its registry, and the changes the registry and the runtime reported."""

    node: ClusterNode
    registry: AgentRegistry
    data: Path
    changes: list[Change] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        return self.registry.dynamic_path / name

    async def deploy(self, name: str, files: Mapping[str, str]) -> None:
        """As the admin API does: in a worker thread, answered once the row is written."""
        await asyncio.to_thread(self.registry.deploy, name, files)

    async def remove(self, name: str) -> None:
        await asyncio.to_thread(self.registry.remove, name)


def worker_config(root: Path) -> DuragentConfig:
    """`root/duragent.yaml`, whose data directory is `root/data`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "duragent.yaml").write_text(f"data_dir: {root / 'data'}\n")
    return load_config(root / "duragent.yaml")


async def attached_registry(node: ClusterNode, root: Path, changes: list[Change]) -> AgentRegistry:
    """The agent registry of a worker over the data directory `root/data`, attached to `node`."""
    config = worker_config(root)
    registry = AgentRegistry(config, env={}, on_change=node.agents.listener(changes.append))
    await node.agents.attach(registry)
    return registry


@contextlib.asynccontextmanager
async def worker(pg_url: str, root: Path) -> AsyncIterator[Worker]:
    """A worker over the data directory `root/data`, stopped afterwards."""
    node = await ClusterNode.open(pg_url, scan_interval=60)
    try:
        changes: list[Change] = []
        registry = await attached_registry(node, root, changes)
        yield Worker(node, registry, root / "data", changes)
    finally:
        await node.close()


async def row(node: ClusterNode, name: str) -> dict[str, str] | None:
    raw = await node.pool.fetchval("SELECT files::text FROM dynamic_agents WHERE name = $1", name)
    return None if raw is None else dict(json.loads(raw))


async def test_workers_sharing_a_data_directory_serve_what_any_of_them_deploys(
    pg_url: str, tmp_path: Path
) -> None:
    """The second worker found the folder the first had written identical to the row, and so
    never read the agent: not listed, and a new version not served."""
    async with worker(pg_url, tmp_path / "shared") as a, worker(pg_url, tmp_path / "shared") as b:
        await a.deploy("bot", agent_files("bot", "first"))
        await until(lambda: "bot" in b.registry.names())
        assert b.registry.get("bot").description == "first"

        await a.deploy("bot", agent_files("bot", "second"))
        await until(lambda: b.registry.summary("bot").description == "second")
        assert b.registry.get("bot").description == "second"

        await a.remove("bot")
        await until(lambda: "bot" not in b.registry.names())
        assert await row(a.node, "bot") is None
