"""Ending or deleting a session stops the background processes it started, with their end recorded:
they no longer run to their timeout, holding places of the agent's limit for a session that is gone.

The server is the real app on a free port, the model the fake LLM server, the processes real `bash`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import (
    Api,
    serving_background_processes,
)
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


@pytest.fixture
async def served(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[tuple[Api, Path]]:
    """The app serving a workspace whose agent `helper` may start background processes."""
    async with serving_background_processes(tmp_path / "ws", fake_llm.url, git=False) as served:
        yield served


async def spawn_sleeper(api: Api, fake_llm: FakeLLMServer, session_id: str) -> dict[str, object]:
    """Have the session's agent start a process that runs for an hour; its record."""
    spawn = {"action": "spawn", "command": "sleep 3600", "label": "sleeper"}
    fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("It runs."))
    path = f"/api/v1/sessions/{session_id}"
    status, pending = await api.call("POST", f"{path}/messages", {"content": "start it"})
    assert status == 202, pending
    decision = {"call_id": pending["call_id"], "decision": "allow_once"}
    status, done = await api.call("POST", f"{path}/approve", decision)
    assert (status, done["content"]) == (200, "It runs."), done
    [record] = [r for r in api.server.app[STATE].processes.list("helper") if r.session_id == session_id]
    return record.to_document()


def stored(data: Path, handle: object) -> dict[str, object]:
    record: dict[str, object] = yaml.safe_load((data / "processes" / f"{handle}.yaml").read_text())
    return record


def runs(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except ProcessLookupError:
        return False
    # (a zombie is over: its parent reaps it a moment later)
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


async def test_ending_a_session_stops_the_processes_it_started(
    served: tuple[Api, Path], fake_llm: FakeLLMServer
) -> None:
    api, data = served
    session_id = await api.new_session()
    other = await api.new_session()
    process = await spawn_sleeper(api, fake_llm, session_id)
    kept = await spawn_sleeper(api, fake_llm, other)
    assert runs(process["pid"])

    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/end")
    assert (status, body["status"]) == (200, "ended")
    record = stored(data, process["handle"])
    assert (record["status"], record["reason"]) == ("killed", "its session ended (ended by client)")
    assert not runs(process["pid"])
    await until(lambda: stored(data, process["handle"])["reported"] is True)
    # another session's process goes on
    assert stored(data, kept["handle"])["status"] == "running"
    assert runs(kept["pid"])


async def test_deleting_a_session_no_longer_loaded_stops_its_processes(
    served: tuple[Api, Path], fake_llm: FakeLLMServer
) -> None:
    api, data = served
    session_id = await api.new_session()
    process = await spawn_sleeper(api, fake_llm, session_id)
    # unloaded while its process runs on (as the idle timeout does)
    assert await api.server.app[STATE].sessions.release_if_idle(session_id)
    assert session_id not in api.server.app[STATE].sessions.live

    status, _ = await api.call("DELETE", f"/api/v1/sessions/{session_id}")
    assert status == 204
    record = stored(data, process["handle"])
    assert (record["status"], record["reason"]) == ("killed", "its session ended (deleted)")
    assert not runs(process["pid"])
    await until(lambda: stored(data, process["handle"])["reported"] is True)
