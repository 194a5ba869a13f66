"""A model whose output an attacker controls (a web page it read, a file it opened) cannot, without
a person approving, change what it or another agent may do, run code outside its policy, or reach
the server's tokens.

Each test scripts the attack with the fake model against a real server (in-process app) and
checks what a person would see: the files on disk, the approval asked for, the git history.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory
from tests.waiting import until


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws0" / "data"


def workdir(tmp_path: Path) -> Path:
    folder = data_dir(tmp_path) / "work" / "helper"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def allow(tmp_path: Path, *patterns: str) -> Path:
    """Give the agent helper a policy.yaml allowing `patterns` (and asking for everything else)."""
    policy = data_dir(tmp_path) / "agents" / "helper" / "policy.yaml"
    policy.write_text("mode: ask\nallow:\n" + "".join(f"  - {json.dumps(p)}\n" for p in patterns))
    return policy


async def send(api: Api, session_id: str, content: str = "go") -> tuple[int, dict]:
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": content})
    return status, body


def tool_results(fake_llm: FakeLLMServer) -> list[str]:
    return [str(m["content"]) for m in fake_llm.requests[-1].messages if m["role"] == "tool"]


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    "command",
    [
        "cat ../../run/*",  # names no protected file: a glob
        "cat ../../ru?/tok*",
        "grep -r token ../../run",
        "cat /proc/*/environ",  # the server's environment (API keys) through /proc
        "cd ../.. && cat run/tokens.j*",
        # paths computed or expanded when the command runs (a wildcard never covers them)
        "cat $(dirname $(dirname $PWD))/run/tok*",
        "cat $HOME/ws0/data/run/tok*",  # (HOME is the tmp folder here)
        "cat ${HOME}/ws0/data/ru?/tok*",
    ],
)
async def test_a_read_only_bash_pattern_never_reads_the_servers_tokens_unasked(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """`bash:cat *` looks harmless; the admin token it would read deploys agents and approves calls."""
    # (as after `duragent init ~/duragent-home`: the data directory is inside the home folder)
    monkeypatch.setenv("HOME", str(tmp_path))
    api = await start_api(git=False)
    allow(tmp_path, "bash:cat *", "bash:grep *", "bash:cd * && cat *")
    tokens = json.loads((data_dir(tmp_path) / "run" / "tokens.json").read_text())
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 202, reply  # a person is asked first
    assert reply["command"] == command
    assert all(str(value) not in json.dumps(fake_llm.requests[-1].messages) for value in tokens.values())


#: Places an auto-allowed script can reach without naming them, and what they would give it.
GUARDED_TARGETS = [
    "agents/pauser/policy.yaml",  # another agent's policy
    "agents/helper/skills/evil/SKILL.md",  # instructions it would load as a skill
    "agents/helper/tools/evil/run",  # a program that becomes a tool
    "tools/evil/run",  # a tool of every agent
    "skills/evil/SKILL.md",
    "agents/newbie/agent.yaml",  # a new agent with a policy of its choosing
    ".git/hooks/post-index-change",  # run by the server's own git, with the server's environment
    ".git/config",  # core.hooksPath, filters, aliases
    ".gitignore",  # un-ignoring run/ would commit the tokens
    "../duragent.yaml",  # the server's configuration (MCP servers it starts)
]


@pytest.mark.parametrize("target", GUARDED_TARGETS)
async def test_a_script_run_unasked_cannot_change_what_any_agent_may_do(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path, target: str
) -> None:
    """A script reaches any file without naming it: what it changed there is undone after the call."""
    api = await start_api(git=False)
    allow(tmp_path, "bash:sh *")
    data = data_dir(tmp_path)
    path = (data / target).resolve()
    before = path.read_bytes() if path.exists() else None
    script = workdir(tmp_path) / "build.sh"
    relative = f"../../{target}"
    script.write_text(
        f'mkdir -p "$(dirname {relative})"\nprintf "mode: allow\\n" > {relative}\nchmod +x {relative}\n'
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh build.sh"})]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 200, reply  # auto-allowed: nobody was asked
    after = path.read_bytes() if path.exists() else None
    assert after == before
    [result] = tool_results(fake_llm)
    assert "duragent undid this batch's change" in result


async def test_a_person_approving_one_call_keeps_no_other_calls_change_to_the_policy(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The person approves `ls`; the auto-allowed call beside it must not keep its policy change."""
    api = await start_api(git=False)
    policy = allow(tmp_path, "bash:sh *")
    original = policy.read_text()
    (workdir(tmp_path) / "build.sh").write_text(
        'printf "mode: allow\\n" > ../../agents/helper/poli""cy.yaml\n'
    )
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "sh build.sh"}), ("bash", {"command": "ls -la"})]),
        text("done"),
    )
    session_id = await api.new_session()

    status, pending = await send(api, session_id)
    assert status == 202, pending
    assert pending["command"] == "ls -la"
    status, reply = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )

    assert status == 200, reply
    assert policy.read_text() == original


async def test_the_servers_git_never_runs_a_hook_of_the_data_repository(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """However a hook got into `.git/hooks`, the commits the server makes never run it."""
    api = await start_api(git=True)
    data = data_dir(tmp_path)
    marker = tmp_path / "hook-ran"
    for hook in ("post-index-change", "reference-transaction", "pre-commit", "post-commit"):
        path = data / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        path.chmod(0o755)
    commits = len(git(data, "log", "--format=%H").splitlines())
    fake_llm.enqueue(tool_calls([("memory", {"action": "remember", "content": "a fact"})]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 200, reply
    await until(lambda: len(git(data, "log", "--format=%H").splitlines()) > commits, within=20)
    assert not marker.exists(), marker.read_text()


async def test_the_workspaces_own_tokens_are_secrets_the_session_log_and_git_never_keep(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Even a read a person approved must not leave the admin token in the session, nor in git."""
    api = await start_api(git=True)
    data = data_dir(tmp_path)
    tokens = json.loads((data / "run" / "tokens.json").read_text())
    command = "cat ../../run/tokens.json"
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()
    status, pending = await send(api, session_id)
    assert status == 202, pending
    commits = len(git(data, "log", "--format=%H").splitlines())

    status, reply = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )

    assert status == 200, reply
    await until(lambda: len(git(data, "log", "--format=%H").splitlines()) > commits, within=20)
    stored = "".join(p.read_text(errors="replace") for p in (data / "sessions").rglob("*") if p.is_file())
    history = git(data, "log", "-p", "--all")
    assert session_id in stored
    for value in tokens.values():
        assert value not in stored
        assert value not in history


async def test_an_allow_always_given_while_another_sessions_calls_run_is_kept(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Undoing what unasked calls changed must not undo a person's decision made meanwhile."""
    api = await start_api(git=False)
    policy = allow(tmp_path, "bash:sh *")
    work = workdir(tmp_path)
    (work / "wait.sh").write_text("touch started\nwhile [ ! -e go ]; do sleep 0.05; done\n")
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh wait.sh"})]))
    busy = await api.new_session()
    other = await api.new_session()
    running = asyncio.create_task(send(api, busy))
    await until(lambda: (work / "started").exists())

    fake_llm.enqueue(tool_calls([("bash", {"command": "ls -la"})]), text("listed"))
    status, pending = await send(api, other)
    assert status == 202, pending
    status, reply = await api.call(
        "POST",
        f"/api/v1/sessions/{other}/approve",
        {"call_id": pending["call_id"], "decision": "allow_always"},
    )
    assert status == 200, reply
    fake_llm.enqueue(text("waited"))
    (work / "go").touch()
    status, reply = await running

    assert status == 200, reply
    assert '"bash:ls -la"' in policy.read_text()
    assert all("undid" not in result for result in tool_results(fake_llm))
