"""Agents deployed through the admin API, on real `duragent serve` workers sharing PostgreSQL:
workers sharing one data directory all serve an agent the moment any deploys it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import AGENT_YAML, ServeProcess, start_serve
from tests.e2e.test_workers_failover import API_HEADERS, call, worker_config
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin"]

SLOWBOT = AGENT_YAML.replace("name: {name}", "name: slowbot").replace(
    "description: A test agent", "description: {description}"
)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


def slowbot_files(llm_url: str, description: str = "A test agent") -> dict[str, str]:
    return {
        "agent.yaml": SLOWBOT.format(
            url=llm_url, description=description, on_disconnect="continue", max_background="30m"
        )
    }


async def start(config: Path, log: Path) -> ServeProcess:
    # Started in a thread: the fake model in this process must keep answering meanwhile.
    return await asyncio.to_thread(start_serve, config, log)


def dynamic_folder(config: Path) -> Path:
    return config.parent / "data" / "sys" / "dyn_agents"


async def deployed_files(http: aiohttp.ClientSession, worker: ServeProcess, name: str) -> dict[str, str]:
    status, body = await call(http, "GET", f"{worker.url}/api/admin/v1/agents/{name}")
    assert status == 200, body
    return dict(body["files"])


async def listed(http: aiohttp.ClientSession, worker: ServeProcess) -> dict[str, dict[str, Any]]:
    """The agents `GET /api/v1/agents` lists on `worker`, by name."""
    async with http.get(f"{worker.url}/api/v1/agents") as response:
        assert response.status == 200, await response.text()
        return {agent["name"]: agent for agent in (await response.json())["agents"]}


async def admin_listed(http: aiohttp.ClientSession, worker: ServeProcess) -> dict[str, dict[str, Any]]:
    """The agents `GET /api/admin/v1/agents` lists on `worker`, by name."""
    status, body = await call(http, "GET", f"{worker.url}/api/admin/v1/agents")
    assert status == 200, body
    return {agent["name"]: agent for agent in body["agents"]}


@pytest.mark.slow
async def test_workers_sharing_a_data_directory_serve_a_deployed_agent_at_once_and_its_new_versions(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """B found the folder A had written identical to the row, and so never read the agent: it
    listed it only after `reload-agents`."""
    config = worker_config(tmp_path / "shared", fake_llm.url, pg_url)
    a = await start(config, tmp_path / "a.log")
    b = await start(config, tmp_path / "b.log")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            body = {"name": "slowbot", "files": slowbot_files(fake_llm.url, "First version")}
            status, deployed = await call(http, "POST", f"{a.url}/api/admin/v1/agents", body)
            assert status == 201, deployed

            async def b_lists(description: str) -> bool | None:
                public = (await listed(http, b)).get("slowbot", {})
                admin = (await admin_listed(http, b)).get("slowbot", {})
                shown = (public.get("description"), admin.get("description"))
                return True if shown == (description, description) else None

            await eventually(lambda: b_lists("First version"))

            body = {"files": slowbot_files(fake_llm.url, "Second version")}
            status, replaced = await call(http, "PUT", f"{a.url}/api/admin/v1/agents/slowbot", body)
            assert status == 200, replaced
            await eventually(lambda: b_lists("Second version"))

            status, _ = await call(http, "DELETE", f"{a.url}/api/admin/v1/agents/slowbot")
            assert status == 204

            async def b_forgot_it() -> bool | None:
                return None if "slowbot" in await admin_listed(http, b) else True

            await eventually(b_forgot_it)
            assert "slowbot" not in await listed(http, b)
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()
