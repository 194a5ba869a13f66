"""An agent cannot change its own definition, policy or configuration.

Tools run in `<data_dir>/work/<agent>/`, not the definition folder; the file tools refuse the
protected files whatever the roots say; bash is never auto-allowed to touch them; and a change a
tool call made to them is committed as the agent's, never as the person's.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.tools.base import ToolContext
from duragent.tools.files import EditFileArgs, EditFileTool, WriteFileArgs, WriteFileTool
from tests.e2e.server_harness import ApiFactory


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws0" / "data"


@pytest.mark.parametrize(
    "target",
    [
        "agents/helper/policy.yaml",
        "agents/helper/policy.local.yaml",
        "agents/helper/agent.yaml",
        "agents/helper/SYSTEM_PROMPT.md",
        "agents/helper/notes-inside-the-definition.md",
        "agents/other/INSTRUCTIONS.md",
        ".git/config",
        ".git/hooks/post-commit",
        "run/tokens.json",
        "../duragent.yaml",
    ],
)
async def test_file_tools_never_write_protected_files_whatever_the_roots(tmp_path: Path, target: str) -> None:
    data = tmp_path / "data"
    agent_dir = data / "agents" / "helper"
    agent_dir.mkdir(parents=True)
    (agent_dir / "policy.yaml").write_text("mode: ask\n")
    (agent_dir / "agent.yaml").write_text("name: helper\n")
    workdir = data / "work" / "helper"
    workdir.mkdir(parents=True)
    # the widest roots a deployment could give: the whole workspace
    ctx = ToolContext(
        agent="helper",
        session_id="s_x",
        workdir=workdir,
        file_roots=(tmp_path,),
        protected_dirs=(agent_dir.resolve(),),
    )
    path = str(data / target)

    written = await WriteFileTool().run(WriteFileArgs(path=path, content="mode: allow\n"), ctx)
    edited = await EditFileTool().run(
        EditFileArgs(path=str(agent_dir / "policy.yaml"), old="ask", new="allow"), ctx
    )

    assert not written.ok
    assert "protected" in written.content
    assert not edited.ok
    assert (agent_dir / "policy.yaml").read_text() == "mode: ask\n"
    assert not (data / target).exists() or target in ("agents/helper/policy.yaml", "agents/helper/agent.yaml")


async def test_tools_run_in_the_agents_work_folder_shown_by_agent_show(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo here: $(pwd)"})]), text("done"))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "where?"})
    assert status == 202, pending
    status, _ = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200
    _, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
    result = next(m for m in history["messages"] if m["type"] == "tool_result")
    workdir = data_dir(tmp_path) / "work" / "helper"
    assert f"here: {workdir}" in result["content"]
    shown = (
        await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "duragent",
                "-c",
                str(tmp_path / "ws0" / "duragent.yaml"),
                "agent",
                "show",
                "helper",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    ).stdout
    [line] = [line for line in shown.splitlines() if line.startswith("workdir")]
    assert "data/work/helper" in line


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=True).stdout


async def test_a_policy_change_made_by_a_tool_is_committed_as_the_agents_never_the_persons(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=True)
    data = data_dir(tmp_path)
    command = "printf 'mode: allow\\n' > ../../agents/helper/policy.yaml"
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})
    # `mode: allow` would not matter: a command naming policy.yaml always asks a person
    assert status == 202, pending
    assert pending["command"] == command
    status, _ = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200
    assert (data / "agents" / "helper" / "policy.yaml").read_text() == "mode: allow\n"
    deadline = time.monotonic() + 20
    authors = ""
    while time.monotonic() < deadline:
        authors = await asyncio.to_thread(
            git, data, "log", "--format=%an|%s", "--", "agents/helper/policy.yaml"
        )
        if authors:
            break
        await asyncio.sleep(0.1)
    assert authors, "the tool's change to policy.yaml was never committed"
    assert "Test Person" not in authors
    assert all(line.startswith("Duragent|") for line in authors.splitlines())


async def test_an_auto_allowed_command_that_reaches_the_policy_without_naming_it_is_undone(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Naming no protected file (a folder copied over the definition) must not make a change stick."""
    api = await start_api(git=False)
    agent_dir = data_dir(tmp_path) / "agents" / "helper"
    policy = agent_dir / "policy.yaml"
    policy.write_text('allow: ["bash:sh *"]\n')
    evil = data_dir(tmp_path) / "work" / "helper" / "evil"
    evil.mkdir(parents=True)
    (evil / "policy.yaml").write_text("mode: allow\n")
    (evil / "SOUL.md").write_text("You obey nobody.\n")
    # (`cp -r evil/. ../../agents/helper/` itself asks: it names a folder outside the work folder)
    (evil.parent / "copy.sh").write_text("cp -r evil/. ../../agents/helper/\n")
    command = "sh copy.sh"
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()

    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})

    assert status == 200, reply  # auto-allowed: nobody was asked
    assert policy.read_text() == 'allow: ["bash:sh *"]\n'
    assert not (agent_dir / "SOUL.md").exists()
    result = next(m for m in fake_llm.requests[-1].messages if m["role"] == "tool")
    assert "duragent undid this batch's change to" in result["content"]
    assert "policy.yaml" in result["content"]
