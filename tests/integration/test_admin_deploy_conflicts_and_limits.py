"""The admin API under load and at its edges: deploys racing for one name, names a static agent
holds, file names too deep to write (through the real server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from duragent.config import load_config
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.server.app import create_app
from duragent.server.state import STATE

ADMIN = "/api/admin/v1"
ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


def agent_yaml(name: str, description: str) -> str:
    return f"name: {name}\ndescription: {description}\nmodel:\n  provider: demo\n  name: demo\n"


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory) -> Client:
    monkeypatch.chdir(tmp_path)
    init_workspace(tmp_path, provider=ProviderChoice("demo", "demo", "tests"))
    (tmp_path / "duragent.yaml").write_text("data_dir: .duragent\n")
    return await duragent_client(create_app(load_config(tmp_path / "duragent.yaml"), env={}))


def git(root: Path, *args: str) -> str:
    """What git prints in the data repository."""
    return subprocess.run(
        ["git", *args], cwd=root / ".duragent", capture_output=True, text=True, check=True
    ).stdout


def commits_of(root: Path, path: str) -> list[str]:
    return git(root, "log", "--format=%s", "--", path).splitlines()


async def test_posts_racing_for_one_name_deploy_it_once_and_the_others_are_409(
    client: Client, tmp_path: Path
) -> None:
    """Each POST checked "does it exist" and then deployed: several answered 201 and overwrote
    each other, though POST never replaces an agent."""
    bodies = [
        {"name": "helper", "files": {"agent.yaml": agent_yaml("helper", f"version {n}")}} for n in range(8)
    ]

    responses = await asyncio.gather(*(client.post(f"{ADMIN}/agents", json=body) for body in bodies))

    statuses = sorted(response.status for response in responses)
    assert statuses == [201] + [409] * 7
    winner = next(response for response in responses if response.status == 201)
    description = (await winner.json())["description"]
    on_disk = (tmp_path / ".duragent" / "sys" / "dyn_agents" / "helper" / "agent.yaml").read_text()
    assert f"description: {description}\n" in on_disk
    for response in responses:
        if response.status == 409:
            assert "already exists; replace it with PUT" in (await response.json())["detail"]
    committer = client.server.app[STATE].workspace.committer
    assert committer is not None
    await asyncio.to_thread(committer.flush, 10.0)
    assert commits_of(tmp_path, "sys/dyn_agents/helper") == ["agent helper: deployed"]


async def test_deletes_racing_for_one_agent_remove_it_once(client: Client) -> None:
    files = {"agent.yaml": agent_yaml("helper", "x")}
    assert (await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})).status == 201

    responses = await asyncio.gather(*(client.delete(f"{ADMIN}/agents/helper") for _ in range(8)))

    assert sorted(response.status for response in responses) == [204] + [404] * 7


async def test_post_of_a_static_agents_name_says_to_edit_its_folder_not_to_use_put(client: Client) -> None:
    """POST answered "already exists; replace it with PUT", and the PUT was 409 too."""
    files = {"agent.yaml": agent_yaml("assistant", "mine")}

    response = await client.post(f"{ADMIN}/agents", json={"name": "assistant", "files": files})

    assert response.status == 409
    detail = (await response.json())["detail"]
    assert "is a static agent defined in .duragent/agents/assistant" in detail
    assert "PUT" not in detail


async def test_a_file_name_nested_too_deep_to_write_is_422_naming_it_and_nothing_is_written(
    client: Client, tmp_path: Path
) -> None:
    """Each part was short enough, so the 2000-folder path reached the disk: a 500."""
    deep = "/".join(["d"] * 2000) + "/x.md"
    files = {"agent.yaml": agent_yaml("helper", "x"), deep: "text"}

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})

    assert response.status == 422
    errors = (await response.json())["errors"]
    assert [error["field"] for error in errors] == [f"files.{deep}"]
    assert "nested deeper than 16 folders" in errors[0]["message"]
    assert list((tmp_path / ".duragent").rglob("x.md")) == []


async def test_a_deployment_hidden_by_a_static_agent_can_be_removed_and_the_static_one_stays(
    client: Client, tmp_path: Path
) -> None:
    """/readyz warned of the hidden deployment, but DELETE was 409 "a static agent": the API that
    made it could not remove it."""
    files = {"agent.yaml": agent_yaml("helper", "deployed")}
    assert (await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})).status == 201
    static = tmp_path / ".duragent" / "agents" / "helper"
    static.mkdir()
    (static / "agent.yaml").write_text(agent_yaml("helper", "static"))
    assert (await client.post(f"{ADMIN}/reload-agents")).status == 200
    assert (await (await client.get("/readyz")).json())["warnings"] != []

    removed = await client.delete(f"{ADMIN}/agents/helper")

    assert removed.status == 204
    assert not (tmp_path / ".duragent" / "sys" / "dyn_agents" / "helper").exists()
    assert (await (await client.get("/readyz")).json())["warnings"] == []
    agent = await client.get("/api/v1/agents/helper")
    assert (await agent.json())["metadata"]["description"] == "static"
    again = await client.delete(f"{ADMIN}/agents/helper")
    assert again.status == 409
    assert "static agent" in (await again.json())["detail"]


async def test_a_deployed_tool_folder_is_a_tool_its_program_executable_in_git_too(
    client: Client, tmp_path: Path
) -> None:
    """JSON carries no file modes: every deployed `tools/<name>/run` was refused with "run is not
    executable (chmod +x ...)", naming a file that was never written."""
    files = {
        "agent.yaml": agent_yaml("helper", "x"),
        "tools/hello/run": "#!/bin/sh\necho hi\n",
        "tools/hello/README.md": "Says hi.",
    }

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})

    assert response.status == 201, await response.text()
    program = tmp_path / ".duragent" / "sys" / "dyn_agents" / "helper" / "tools" / "hello" / "run"
    assert os.access(program, os.X_OK)
    assert not os.access(program.with_name("README.md"), os.X_OK)
    committer = client.server.app[STATE].workspace.committer
    assert committer is not None
    await asyncio.to_thread(committer.flush, 10.0)
    assert git(tmp_path, "ls-files", "-s", "sys/dyn_agents/helper/tools/hello/run").startswith("100755 ")


async def test_readyz_shows_a_deployed_agents_unknown_keys_at_once_and_drops_them_when_fixed(
    client: Client,
) -> None:
    """The warning appeared only after a reload-agents, and stayed after a PUT had fixed the typo."""
    typo = agent_yaml("helper", "x") + "  temprature: 0.2\n"
    fixed = agent_yaml("helper", "x")

    await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": {"agent.yaml": typo}})
    warned = (await (await client.get("/readyz")).json())["agent_warnings"]
    await client.post(f"{ADMIN}/reload-agents")
    await client.put(f"{ADMIN}/agents/helper", json={"files": {"agent.yaml": fixed}})
    after_fix = (await (await client.get("/readyz")).json())["agent_warnings"]

    assert warned == {
        "helper": [
            ".duragent/sys/dyn_agents/helper/agent.yaml:6:3: unknown key 'model.temprature' is ignored "
            "(did you mean 'temperature'?)"
        ]
    }
    assert after_fix == {}
