"""Agents deployed through the admin API, on real `duragent serve` workers sharing PostgreSQL:
what a person decides for one ("allow always") outlives a worker's restart and reaches every
worker, and workers sharing one data directory all serve an agent the moment any deploys it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
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
@pytest.mark.parametrize("data_dirs", ["one per worker", "shared"])
async def test_an_allow_always_on_a_deployed_agent_outlives_a_restart_and_reaches_every_worker(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str, data_dirs: str
) -> None:
    """The `dynamic_agents` row held agent.yaml only: a worker's restart deployed it again over
    the folder, deleting the policy.yaml that held the person's decision, for every worker."""
    config_a = worker_config(tmp_path / "a", fake_llm.url, pg_url)
    config_b = config_a if data_dirs == "shared" else worker_config(tmp_path / "b", fake_llm.url, pg_url)
    a = await start(config_a, tmp_path / "a.log")
    b = await start(config_b, tmp_path / "b.log")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            body = {"name": "slowbot", "files": slowbot_files(fake_llm.url)}
            status, deployed = await call(http, "POST", f"{a.url}/api/admin/v1/agents", body)
            assert status == 201, deployed

            fake_llm.enqueue(tool_calls([("bash", {"command": "uname"})]), text("ran uname"))
            status, created = await call(http, "POST", f"{a.url}/api/v1/sessions", {"agent": "slowbot"})
            assert status == 201, created
            session = f"/api/v1/sessions/{created['session_id']}"
            status, asked = await call(http, "POST", f"{a.url}{session}/messages", {"content": "uname"})
            assert (status, asked["status"]) == (202, "pending_approval"), asked
            decision = {"call_id": asked["call_id"], "decision": "allow_always"}
            status, done = await call(http, "POST", f"{a.url}{session}/approve", decision)
            assert (status, done["content"]) == (200, "ran uname"), done
            policy_on_a = dynamic_folder(config_a) / "slowbot" / "policy.yaml"
            assert "bash:uname" in policy_on_a.read_text()

            async def b_has_the_decision() -> bool | None:
                files = await deployed_files(http, b, "slowbot")
                return True if "bash:uname" in files.get("policy.yaml", "") else None

            await eventually(b_has_the_decision)

            a.terminate()
            a = await start(config_a, tmp_path / "a-again.log")
            assert "bash:uname" in policy_on_a.read_text()
            for worker in (a, b):
                assert "bash:uname" in (await deployed_files(http, worker, "slowbot"))["policy.yaml"]

            # On either worker, the same call now runs without asking anyone.
            for worker in (b, a):
                fake_llm.enqueue(tool_calls([("bash", {"command": "uname"})]), text("ran it again"))
                status, created = await call(
                    http, "POST", f"{worker.url}/api/v1/sessions", {"agent": "slowbot"}
                )
                assert status == 201, created
                status, reply = await call(
                    http,
                    "POST",
                    f"{worker.url}/api/v1/sessions/{created['session_id']}/messages",
                    {"content": "uname again"},
                )
                assert (status, reply.get("content")) == (200, "ran it again"), reply
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()


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
