"""`duragent history --session ID` lists what the agent remembered in that session: the memory
commit a turn's `memory` tool call makes names the session (`Duragent-Session`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.vcs.history import read_history
from tests.e2e.server_harness import ApiFactory
from tests.waiting import until


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(data), *args], capture_output=True, text=True, check=True).stdout


def memory_commits(data: Path) -> list[str]:
    return git(data, "log", "--format=%H", "--", "memory").split()


async def test_a_memory_commit_made_by_a_turn_names_its_session(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    agent_yaml = data / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(
        agent_yaml.read_text()
        .replace("builtin: [bash]", "builtin: [bash, memory]")
        .replace('allow: ["bash:echo *"]', 'allow: ["bash:echo *", "memory:*"]')
    )
    # (the server reads the edited agent once its watcher has seen, and committed, the edit)
    await until(lambda: "agents/helper/agent.yaml" in git(data, "log", "-1", "--format=%s"), within=30)
    remembering = await api.new_session()
    other = await api.new_session()
    fake_llm.enqueue(tool_calls([("memory", {"action": "remember", "content": "likes green tea"})]))
    fake_llm.enqueue(text("noted"))
    status, body = await api.call(
        "POST", f"/api/v1/sessions/{remembering}/messages", {"content": "remember I like green tea"}
    )
    assert status == 200, body
    fake_llm.enqueue(text("hello"))
    status, body = await api.call("POST", f"/api/v1/sessions/{other}/messages", {"content": "hi"})
    assert status == 200, body
    await until(lambda: bool(memory_commits(data)), within=30)

    (sha,) = memory_commits(data)
    trailers = git(data, "log", "-1", "--format=%(trailers)", sha).splitlines()
    assert f"Duragent-Session: {remembering}" in trailers
    assert "Duragent-Kind: memory" in trailers
    in_session = read_history(data, session=remembering, limit=50)
    assert sha in [entry.sha for entry in in_session]
    assert sha not in [entry.sha for entry in read_history(data, session=other, limit=50)]
    remembered = next(entry for entry in in_session if entry.sha == sha)
    assert (remembered.kinds, remembered.author_kind) == (["memory"], "agent")
