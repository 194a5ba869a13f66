"""What a background process an agent started changes in the data repository is committed as
the agent's, not as a person's edit, though it changes it after the agent's batch of tool calls
has ended; a person's edit outside that process's reach or time stays theirs.

The server is the real app (committer, human-edit watcher, process manager) on a free port, the
model the fake LLM server, the process a real `bash`, the history real git.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.stores.base import utcnow
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import (
    Api,
    serving_background_processes,
)
from tests.waiting import eventually, until

PERSON = "Test Person"
AGENT = "Duragent"


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=True).stdout


def commits_of(data: Path, relative: str) -> list[tuple[str, str]]:
    """(author name, subject) of the commits of `relative`, oldest first."""
    lines = git(data, "log", "--reverse", "--format=%an\x1f%s", "--", relative).splitlines()
    return [(author, subject) for author, subject in (line.split("\x1f", 1) for line in lines)]


@pytest.fixture
async def served(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[tuple[Api, Path]]:
    """The app serving a workspace whose agent `helper` may start background processes."""
    async with serving_background_processes(tmp_path / "ws", fake_llm.url) as served:
        yield served


async def test_a_background_processs_later_change_is_the_agents_and_a_persons_edits_stay_theirs(
    served: tuple[Api, Path], fake_llm: FakeLLMServer
) -> None:
    api, data = served
    day = utcnow().date().isoformat()
    theirs, others = f"memory/helper/{day}.md", f"memory/pauser/{day}.md"
    workdir = data / "work" / "helper"
    # the process waits for the test's `go`, long after the batch that started it has ended
    job = (
        "while [ ! -e go ]; do sleep 0.02; done; "
        f"mkdir -p ../../memory/helper && echo '- written by the job' >> ../../{theirs}"
    )
    spawn = {"action": "spawn", "command": job, "label": "job"}
    fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("Started the job."))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})
    assert status == 202, pending  # it names memory outside the work folder: a person approves
    status, _ = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200

    async def turn_ended() -> bool | None:
        _, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
        return any(m.get("content") == "Started the job." for m in history["messages"]) or None

    await eventually(turn_ended, within=20)

    # while the job runs, a person edits another agent's memory: that edit is theirs
    (data / "memory" / "pauser").mkdir(parents=True)
    (data / others).write_text(f"# {day}\n\n## Facts Stored\n- the person wrote this\n")
    await until(lambda: commits_of(data, others), within=20)
    assert [author for author, _ in commits_of(data, others)] == [PERSON]

    (workdir / "go").touch()
    await until(lambda: commits_of(data, theirs), within=20)
    [(author, subject)] = commits_of(data, theirs)
    assert author == AGENT
    assert subject.startswith("memory helper: changed by background process proc_")
    assert "Duragent-Agent: helper" in git(data, "log", "-1", "--format=%B", "--", theirs)

    # once the job has ended, the person's edit of the same file is theirs again
    await until(
        lambda: "status: exited" in "".join(p.read_text() for p in (data / "processes").glob("*.yaml"))
    )
    with (data / theirs).open("a") as memory:
        memory.write("- the person added this after the job\n")
    await until(lambda: len(commits_of(data, theirs)) == 2, within=20)
    assert [author for author, _ in commits_of(data, theirs)] == [AGENT, PERSON]
    # (the person's index follows HEAD a moment after the commit moved it)
    await until(lambda: git(data, "status", "--porcelain", "--", "memory") == "", within=20)


async def test_a_background_processs_change_to_world_memory_is_the_agents(
    served: tuple[Api, Path], fake_llm: FakeLLMServer
) -> None:
    """World memory belongs to no one agent: a change while any agent's process runs is that agent's."""
    api, data = served
    world = "memory/world/team.md"
    job = f"mkdir -p ../../memory/world && echo '- the team ships on Fridays' >> ../../{world}"
    fake_llm.enqueue(tool_calls([("background_process", {"action": "spawn", "command": job})]), text("ok"))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})
    assert status == 202, pending
    status, _ = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200

    await until(lambda: commits_of(data, world), within=20)
    [(author, subject)] = commits_of(data, world)
    assert author == AGENT
    assert subject.startswith("memory helper: changed by background process proc_")
    assert "Duragent-Agent: helper" in git(data, "log", "-1", "--format=%B", "--", world)
