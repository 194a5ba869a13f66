"""The admin API through the real server (`create_app` on 127.0.0.1): deploy, replace, remove, reload."""

from __future__ import annotations

import asyncio
import subprocess
import time
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

BASE_CONFIG = """\
data_dir: .duragent
git:
  commit_debounce: 0.05
  max_commit_delay: 0.2
"""


def agent_yaml(name: str, description: str = "deployed agent") -> str:
    return (
        f"name: {name}\n"
        f"description: {description}\n"
        "model:\n"
        "  provider: demo\n"
        "  name: demo\n"
        "system_prompt: SYSTEM_PROMPT.md\n"
    )


def make_app(root: Path, extra_config: str = "") -> web.Application:
    """A workspace made by `duragent init` (agent "assistant") and the server for it."""
    init_workspace(root, provider=ProviderChoice("demo", "demo", "tests"))
    (root / "duragent.yaml").write_text(BASE_CONFIG + extra_config)
    return create_app(load_config(root / "duragent.yaml"), env={})


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory) -> Client:
    monkeypatch.chdir(tmp_path)
    return await duragent_client(make_app(tmp_path))


def git_log(root: Path, path: str) -> list[str]:
    """Subjects of the data repo's commits touching `path`, newest first."""
    out = subprocess.run(
        ["git", "log", "--format=%s", "--", path],
        cwd=root / ".duragent",
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


async def flush_git(client: Client) -> None:
    committer = client.server.app[STATE].workspace.committer
    assert committer is not None
    await asyncio.to_thread(committer.flush, 10.0)


async def deploy(client: Client, name: str, files: dict[str, str] | None = None) -> None:
    files = files or {"agent.yaml": agent_yaml(name), "SYSTEM_PROMPT.md": f"I am {name}."}
    response = await client.post(f"{ADMIN}/agents", json={"name": name, "files": files})
    assert response.status == 201, await response.text()


async def test_deployed_agent_is_usable_at_once_and_committed(client: Client, tmp_path: Path) -> None:
    files = {"agent.yaml": agent_yaml("helper"), "SYSTEM_PROMPT.md": "I help."}

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})

    assert response.status == 201
    body = await response.json()
    assert body["name"] == "helper"
    assert body["source"] == "dynamic"
    assert body["valid"] is True
    agent = await client.get("/api/v1/agents/helper")
    assert agent.status == 200
    assert (await agent.json())["spec"]["system_prompt"] == "I help."
    session = await client.post("/api/v1/sessions", json={"agent": "helper"})
    assert session.status == 201
    await flush_git(client)
    assert git_log(tmp_path, "sys/dyn_agents/helper/agent.yaml") != []
    assert (
        tmp_path / ".duragent" / "sys" / "dyn_agents" / "helper" / "SYSTEM_PROMPT.md"
    ).read_text() == "I help."


async def test_invalid_deployment_is_422_with_every_problem_located_and_nothing_written(
    client: Client, tmp_path: Path
) -> None:
    bad = "name: helper\nmodel:\n  provider: nobody\n  name: x\nsystem_prompt: MISSING.md\n"

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": {"agent.yaml": bad}})

    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    fields = [error["field"] for error in problem["errors"]]
    assert fields == ["files.agent.yaml:3:13", "files.agent.yaml:5:16"]
    assert "MISSING.md" in problem["errors"][1]["message"]
    assert not (tmp_path / ".duragent" / "sys" / "dyn_agents" / "helper").exists()
    assert (await client.get(f"{ADMIN}/agents/helper")).status == 404


async def test_a_deployment_is_checked_as_agent_validate_checks_a_folder(
    client: Client, tmp_path: Path
) -> None:
    """A broken policy.yaml or SKILL.md was deployed (201, valid) and every session then failed."""
    files = {
        "agent.yaml": agent_yaml("helper"),
        "policy.yaml": "mode: sometimes\n",
        "skills/notes/SKILL.md": "---\nname: notes\n",
    }

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})

    assert response.status == 422
    fields = [error["field"] for error in (await response.json())["errors"]]
    assert any(field.startswith("files.policy.yaml:1:") for field in fields), fields
    assert any(field.startswith("files.skills/notes/SKILL.md:1:1") for field in fields), fields
    assert (await client.get(f"{ADMIN}/agents/helper")).status == 404


async def test_file_names_leaving_the_agent_folder_are_refused(client: Client, tmp_path: Path) -> None:
    files = {"agent.yaml": agent_yaml("helper"), "../../escape.md": "x"}

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})

    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "files.../../escape.md"
    assert not (tmp_path / ".duragent" / "escape.md").exists()


async def test_an_agent_cannot_be_named_world_the_shared_memory_folder(
    client: Client, tmp_path: Path
) -> None:
    files = {"agent.yaml": agent_yaml("world")}

    posted = await client.post(f"{ADMIN}/agents", json={"name": "world", "files": files})
    put = await client.put(f"{ADMIN}/agents/world", json={"files": files})

    assert posted.status == put.status == 400
    assert "shared memory folder" in (await posted.json())["detail"]
    assert list((tmp_path / ".duragent").rglob("world/agent.yaml")) == []


async def test_a_file_that_is_also_a_folder_or_a_name_too_long_is_422_naming_it(client: Client) -> None:
    long_name = "n" * 300 + ".md"
    files = {"agent.yaml": agent_yaml("helper"), "notes": "x", "notes/today.md": "y", long_name: "z"}

    response = await client.post(f"{ADMIN}/agents", json={"name": "helper", "files": files})

    assert response.status == 422
    fields = {error["field"]: error["message"] for error in (await response.json())["errors"]}
    assert "is also a folder of other files" in fields["files.notes"]
    assert "longer than 255 bytes" in fields[f"files.{long_name}"]


async def test_get_shows_the_files_and_put_replaces_the_whole_folder(client: Client) -> None:
    await deploy(
        client, "helper", {"agent.yaml": agent_yaml("helper"), "SYSTEM_PROMPT.md": "v1", "NOTES.md": "n"}
    )

    replaced = await client.put(
        f"{ADMIN}/agents/helper",
        json={"files": {"agent.yaml": agent_yaml("helper", "second"), "SYSTEM_PROMPT.md": "v2"}},
    )

    assert replaced.status == 200
    shown = await (await client.get(f"{ADMIN}/agents/helper")).json()
    assert shown["source"] == "dynamic"
    assert sorted(shown["files"]) == ["SYSTEM_PROMPT.md", "agent.yaml"]
    assert shown["files"]["SYSTEM_PROMPT.md"] == "v2"
    assert (await (await client.get("/api/v1/agents/helper")).json())["metadata"]["description"] == "second"


async def test_post_of_an_existing_agent_is_409_and_put_of_a_new_one_is_201(client: Client) -> None:
    await deploy(client, "helper")

    again = await client.post(
        f"{ADMIN}/agents", json={"name": "helper", "files": {"agent.yaml": agent_yaml("helper")}}
    )
    created = await client.put(
        f"{ADMIN}/agents/other",
        json={"files": {"agent.yaml": agent_yaml("other").replace("system_prompt", "#")}},
    )

    assert again.status == 409
    assert "PUT" in (await again.json())["detail"]
    assert created.status == 201


async def test_delete_removes_a_deployed_agent_and_commits_the_removal(
    client: Client, tmp_path: Path
) -> None:
    await deploy(client, "helper")
    await flush_git(client)

    response = await client.delete(f"{ADMIN}/agents/helper")

    assert response.status == 204
    assert (await client.get("/api/v1/agents/helper")).status == 404
    await flush_git(client)
    assert len(git_log(tmp_path, "sys/dyn_agents/helper/agent.yaml")) == 2
    assert not (tmp_path / ".duragent" / "sys" / "dyn_agents" / "helper").exists()


async def test_static_agents_cannot_be_deleted_or_replaced_through_the_api(
    client: Client, tmp_path: Path
) -> None:
    deleted = await client.delete(f"{ADMIN}/agents/assistant")
    replaced = await client.put(
        f"{ADMIN}/agents/assistant", json={"files": {"agent.yaml": agent_yaml("assistant")}}
    )

    assert deleted.status == 409
    assert replaced.status == 409
    assert "static agent" in (await deleted.json())["detail"]
    assert (tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml").is_file()


async def test_agent_list_shows_static_and_deployed_agents_and_invalid_ones(
    client: Client, tmp_path: Path
) -> None:
    await deploy(client, "helper")
    broken = tmp_path / ".duragent" / "agents" / "broken"
    broken.mkdir()
    (broken / "agent.yaml").write_text("name: broken\nmodel: {provider: nobody, name: x}\n")
    reloaded = await client.post(f"{ADMIN}/reload-agents")

    listing = await (await client.get(f"{ADMIN}/agents")).json()

    assert await reloaded.text() == "Reloaded 2 agents"
    rows = {row["name"]: row for row in listing["agents"]}
    assert rows["assistant"]["source"] == "static"
    assert rows["assistant"]["valid"] is True
    assert rows["helper"]["source"] == "dynamic"
    assert rows["helper"]["provider"] == "demo"
    assert rows["broken"]["valid"] is False
    assert "agent.yaml:2:" in rows["broken"]["error"]


async def test_shutdown_is_accepted_once_then_409(client: Client) -> None:
    first = await client.post(f"{ADMIN}/shutdown")
    second = await client.post(f"{ADMIN}/shutdown")

    assert (first.status, await first.text()) == (200, "Shutdown initiated")
    assert second.status == 409
    assert client.server.app[STATE].shutdown.is_set()


async def test_admin_routes_are_absent_when_the_admin_api_is_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory
) -> None:
    monkeypatch.chdir(tmp_path)
    client = await duragent_client(make_app(tmp_path, "admin:\n  enabled: false\n"))

    assert (await client.get(f"{ADMIN}/agents")).status == 404
    assert (await client.post(f"{ADMIN}/shutdown")).status == 404


async def test_admin_token_guards_the_admin_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory
) -> None:
    monkeypatch.chdir(tmp_path)
    client = await duragent_client(make_app(tmp_path, "admin:\n  token: admin-secret-token\n"))

    refused = await client.get(f"{ADMIN}/agents", headers={"X-Duragent-Admin-Token": "", "Authorization": ""})
    allowed = await client.get(f"{ADMIN}/agents", headers={"Authorization": "Bearer admin-secret-token"})

    assert refused.status in (401, 403)
    assert allowed.status == 200


async def test_the_api_token_on_an_admin_route_is_refused_saying_which_token_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory
) -> None:
    monkeypatch.chdir(tmp_path)
    config = "admin:\n  token: admin-secret-token\nserver:\n  api_token: api-secret-token\n"
    client = await duragent_client(make_app(tmp_path, config))

    headers = {"Authorization": "Bearer api-secret-token", "X-Duragent-Admin-Token": ""}
    refused = await client.get(f"{ADMIN}/agents", headers=headers)

    assert refused.status == 403
    detail = (await refused.json())["detail"]
    assert "this is the API token" in detail
    assert "admin_token" in detail


# --- hot reload -------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def test_edited_agent_is_reloaded_and_a_broken_edit_shows_in_readyz_until_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory
) -> None:
    monkeypatch.chdir(tmp_path)
    client = await duragent_client(make_app(tmp_path, "agents:\n  static:\n    watch: true\n"))
    prompt = tmp_path / ".duragent" / "agents" / "assistant" / "SYSTEM_PROMPT.md"
    source = tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml"
    original = source.read_text()

    async def prompt_is(text: str) -> bool:
        body = await (await client.get("/api/v1/agents/assistant")).json()
        return bool(body["spec"].get("system_prompt") == text)

    async def ready_status() -> str:
        return str((await (await client.get("/readyz")).json())["status"])

    prompt.write_text("Edited while running.")
    assert await eventually(lambda: prompt_is("Edited while running."))

    source.write_text(original.replace("provider: demo", "provider: nobody"))
    assert await eventually(lambda: _is(ready_status, "degraded"))
    readiness = await client.get("/readyz")
    assert readiness.status == 200  # one broken agent does not take the server out of service
    [problem] = (await readiness.json())["agents"]["assistant"]
    assert problem.startswith(".duragent/agents/assistant/agent.yaml:14:15: spec.model.provider")
    assert await prompt_is("Edited while running.")  # the previous version keeps running

    source.write_text(original)
    assert await eventually(lambda: _is(ready_status, "ok"))


async def _is(status: Callable[[], Awaitable[str]], expected: str) -> bool:
    return await status() == expected
