"""One MCP server subprocess (`duragent.testing.mcp_server`) answering calls the way the model sees them.

The tests here only read from the server, so they share one process (a server start costs
seconds of CPU): results, errors, slow calls, images, the environment it runs in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from duragent.agents.loader import Agent
from duragent.mcp.hub import McpHub
from duragent.stores.filesystem.artifacts import FilesystemArtifactStore
from duragent.testing.mcp_server import RED_PIXEL_PNG, server_entry
from duragent.tools.base import ToolResult
from tests.integration.mcp_helpers import context, run, tools_by_name, write_agent

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp")


@pytest.fixture(scope="module")
def agent(root: Path) -> Agent:
    return write_agent(root, [server_entry("test", env=["VISIBLE"], call_timeout="1s")])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hub(root: Path, agent: Agent) -> AsyncIterator[McpHub]:
    made = McpHub(
        workspace_dir=root,
        workdir_for=lambda agent: root / "work" / agent.name,
        env={"VISIBLE": "shown", "SECRET_TOKEN": "hidden"},
    )
    await made.tools_for(agent)
    yield made
    await made.close()


async def test_server_tools_are_offered_namespaced_with_their_json_schemas(hub: McpHub, agent: Agent) -> None:
    tools = await tools_by_name(hub, agent)

    assert {"test__echo", "test__add", "test__fail", "test__sleep", "test__image"} <= set(tools)
    echo = tools["test__echo"]
    assert echo.description.startswith("Repeat the text back.")
    assert echo.parameters()["properties"]["text"]["type"] == "string"
    assert echo.parameters()["required"] == ["text"]


async def test_the_work_folder_a_server_runs_in_is_kept_out_of_git(hub: McpHub, root: Path) -> None:
    # The server started before any tool call made the folder: what it leaves there is scratch.
    assert (root / "work" / "helper").is_dir()
    assert (root / "work" / ".gitignore").read_text() == "*\n"


async def test_text_and_structured_results_come_back_as_tool_results(
    hub: McpHub, agent: Agent, tmp_path: Path
) -> None:
    echoed = await run(hub, agent, "test__echo", {"text": "hello"}, context(tmp_path))
    added = await run(hub, agent, "test__add", {"a": 2, "b": 3}, context(tmp_path))

    assert echoed == ToolResult(True, "hello", {"structured": {"result": "hello"}})
    assert added.ok
    assert '"sum": 5' in added.content
    assert added.data == {"structured": {"sum": 5}}


async def test_a_tool_error_and_bad_arguments_are_failed_results_the_model_reads(
    hub: McpHub, agent: Agent, tmp_path: Path
) -> None:
    failed = await run(hub, agent, "test__fail", {"message": "disk on fire"}, context(tmp_path))
    wrong = await run(hub, agent, "test__add", {"a": "two"}, context(tmp_path))

    assert not failed.ok
    assert "disk on fire" in failed.content
    assert not wrong.ok
    assert "b" in wrong.content


async def test_a_slow_call_times_out_while_other_calls_go_on(
    hub: McpHub, agent: Agent, tmp_path: Path
) -> None:
    slow = asyncio.create_task(run(hub, agent, "test__sleep", {"seconds": 30}, context(tmp_path)))
    quick = await run(hub, agent, "test__echo", {"text": "meanwhile"}, context(tmp_path))
    late = await slow

    assert quick.ok
    assert quick.content == "meanwhile"
    assert not late.ok
    assert "no answer within 1s" in late.content


async def test_images_are_stored_as_the_agents_artifacts(hub: McpHub, agent: Agent, tmp_path: Path) -> None:
    artifacts = FilesystemArtifactStore(tmp_path / "artifacts")

    result = await run(hub, agent, "test__image", {}, context(tmp_path, artifacts=artifacts))

    assert result.ok
    assert result.data is not None
    [saved] = result.data["artifacts"]
    assert f"stored as artifact {saved['name']}" in result.content
    assert saved["name"].startswith("mcp/test__image/")
    assert saved["name"].endswith(".png")
    [ref] = await artifacts.list("helper", "mcp/")
    stored = b"".join([chunk async for chunk in artifacts.get(ref)])
    assert stored == RED_PIXEL_PNG
    assert ref.meta.content_type == "image/png"


async def test_only_listed_variables_reach_the_server_which_runs_in_the_agents_work_folder(
    hub: McpHub, agent: Agent, root: Path, tmp_path: Path
) -> None:
    visible = await run(hub, agent, "test__env", {"name": "VISIBLE"}, context(tmp_path))
    secret = await run(hub, agent, "test__env", {"name": "SECRET_TOKEN"}, context(tmp_path))
    cwd = await run(hub, agent, "test__cwd", {}, context(tmp_path))

    assert visible.content == "shown"
    assert secret.content == "<unset>"
    assert Path(cwd.content) == (root / "work" / "helper").resolve()


async def test_a_module_the_agent_wrote_in_its_work_folder_never_stands_in_for_the_server(
    tmp_path: Path,
) -> None:
    # The agent writes its work folder, where its servers run: `python -m duragent.testing.
    # mcp_server` must start the installed server, not a `duragent/testing/mcp_server.py` there.
    ran = tmp_path / "impostor-ran"
    impostor = tmp_path / "work" / "helper" / "duragent" / "testing"
    impostor.mkdir(parents=True)
    for package in (impostor.parent, impostor):
        (package / "__init__.py").write_text("")
    (impostor / "mcp_server.py").write_text(f"open({str(ran)!r}, 'w').write('ran')\n")
    agent = write_agent(tmp_path, [server_entry("test")])
    hub = McpHub(workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path / "work" / agent.name, env={})
    try:
        offered = await tools_by_name(hub, agent)
    finally:
        await hub.close()

    assert not ran.exists()
    assert "test__env" in offered
