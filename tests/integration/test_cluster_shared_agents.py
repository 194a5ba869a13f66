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
from duragent.runtime.policy import allow_always
from duragent.stores.base import Change
from duragent.testing.postgres import temporary_schema
from tests.waiting import eventually, until

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
POLICY_YAML = "# decided by people\nallow:\n  - bash:echo hi\n"


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

    def allow_always(self, name: str, command: str) -> None:
        """As the runtime does on a person's "allow always": edit policy.yaml, report the change."""
        path = allow_always("bash", command, self.folder(name) / "policy.yaml")
        self.node.agents.listener(self.changes.append)(
            Change((path,), "agent", name, f"policy allows bash {command}")
        )


def worker_config(root: Path) -> DuragentConfig:
    """`root/duragent.yaml`, whose data directory is `root/data`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "duragent.yaml").write_text(f"data_dir: {root / 'data'}\n")
    return load_config(root / "duragent.yaml")


async def attached_registry(node: ClusterNode, root: Path, changes: list[Change]) -> AgentRegistry:
    """The agent registry of a worker over the data directory `root/data`, attached to `node`."""
    config = worker_config(root)
    registry = AgentRegistry(config, env={}, on_change=node.agents.listener(changes.append))
    await node.agents.attach(registry, config.data_path)
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


def policy(worker: Worker, name: str) -> str:
    path = worker.folder(name) / "policy.yaml"
    return path.read_text() if path.exists() else ""


async def test_allow_always_on_two_workers_at_once_both_stand_everywhere(pg_url: str, tmp_path: Path) -> None:
    """Each worker published its own policy.yaml: the last one written replaced the other's
    decision in the row, and then in every folder."""
    async with worker(pg_url, tmp_path / "a") as a, worker(pg_url, tmp_path / "b") as b:
        await a.deploy("bot", agent_files("bot", **{"policy.yaml": POLICY_YAML}))
        await until(lambda: b.folder("bot").joinpath("policy.yaml").exists())

        a.allow_always("bot", "uname")
        b.allow_always("bot", "ls /tmp")

        def decided_everywhere() -> bool:
            return all(
                "bash:uname" in policy(w, "bot") and "bash:ls /tmp" in policy(w, "bot") for w in (a, b)
            )

        await until(decided_everywhere)
        shared = await row(a.node, "bot")
        assert shared is not None
        assert shared["policy.yaml"] == policy(a, "bot") == policy(b, "bot")
        assert shared["policy.yaml"].startswith(POLICY_YAML)  # the person's comment and list kept
        assert "bash:echo hi" in shared["policy.yaml"]


async def test_a_worker_that_kept_allow_always_to_itself_keeps_and_shares_it_when_it_starts(
    pg_url: str, tmp_path: Path
) -> None:
    """What a Duragent before policy edits were shared left: the row holds the deploy's files,
    the folder a policy.yaml besides, and no record of what the two agreed on. Starting deployed
    the row over the folder and deleted the decisions."""
    async with worker(pg_url, tmp_path / "a") as a:
        await a.deploy("bot", agent_files("bot"))
    deployed = agent_files("bot")
    folder = tmp_path / "a" / "data" / "sys" / "dyn_agents" / "bot"
    (folder / "policy.yaml").write_text("allow:\n  - bash:uname\n")
    for record in (tmp_path / "a" / "data" / "run" / "shared-agents").glob("*.json"):
        record.unlink()

    async with worker(pg_url, tmp_path / "a") as a, worker(pg_url, tmp_path / "b") as b:
        assert policy(a, "bot") == "allow:\n  - bash:uname\n"
        assert await row(a.node, "bot") == {**deployed, "policy.yaml": "allow:\n  - bash:uname\n"}
        await until(lambda: policy(b, "bot") == "allow:\n  - bash:uname\n")


async def test_a_restart_takes_what_changed_in_the_row_meanwhile_and_shares_what_changed_here(
    pg_url: str, tmp_path: Path
) -> None:
    async with worker(pg_url, tmp_path / "a") as a:
        await a.deploy("bot", agent_files("bot", **{"NOTES.md": "old notes\n"}))
        await a.deploy("gone", agent_files("gone"))
        async with worker(pg_url, tmp_path / "b") as b:
            assert (b.folder("bot") / "NOTES.md").exists()
        # While B is stopped: a new version drops NOTES.md, "gone" is removed, and B's folder gets
        # a decision that never reached the row (its database was away, say).
        await a.deploy("bot", agent_files("bot", "second version"))
        await a.remove("gone")
        b_folder = tmp_path / "b" / "data" / "sys" / "dyn_agents"
        allow_always("bash", "uname", b_folder / "bot" / "policy.yaml")

        async with worker(pg_url, tmp_path / "b") as b:
            assert sorted(p.name for p in b.folder("bot").iterdir()) == [
                "SYSTEM_PROMPT.md",
                "agent.yaml",
                "policy.yaml",
            ]
            assert b.registry.get("bot").description == "second version"
            assert "bash:uname" in policy(b, "bot")
            assert not b.folder("gone").exists()
            assert "gone" not in b.registry.names()
            await until(lambda: "bash:uname" in policy(a, "bot"))
            shared = await row(a.node, "bot")
            assert shared is not None
            assert "NOTES.md" not in shared
            assert "bash:uname" in shared["policy.yaml"]


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

        a.allow_always("bot", "uname")

        async def shared_decision() -> bool | None:
            shared = await row(a.node, "bot")
            return True if shared and "bash:uname" in shared.get("policy.yaml", "") else None

        await eventually(shared_decision)

        await a.remove("bot")
        await until(lambda: "bot" not in b.registry.names())
        assert await row(a.node, "bot") is None
        assert not (a.data / "run" / "shared-agents" / "bot.json").exists()


async def test_a_worker_pointed_at_another_database_shares_its_agents_there_rather_than_removing_them(
    pg_url: str, tmp_path: Path
) -> None:
    """What its folder last agreed on was another table's: the agents missing from this one
    were never removed from it."""
    async with worker(pg_url, tmp_path / "a") as a:
        await a.deploy("bot", agent_files("bot"))
    async with temporary_schema() as other_url, worker(other_url, tmp_path / "a") as a:
        assert "bot" in a.registry.names()
        assert await row(a.node, "bot") == agent_files("bot")
