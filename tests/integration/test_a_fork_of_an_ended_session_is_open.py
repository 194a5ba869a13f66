"""`duragent session fork` of a session that has ended: the fork is a session to talk to."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.sessions.state import resume
from duragent.workspace import Workspace


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


async def ended_conversation() -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": "question", "turn": 1})
        await log.append("assistant_message", {"content": "answer", "message_id": "m1"})
        await log.append("session_end", {"reason": "ended by client"})
        await log.snapshot()
        return log.session_id


async def status_rebuilt_from_the_log(session_id: str) -> str:
    async with Workspace(load_config()) as workspace:
        return (await resume(workspace.stores.sessions, session_id)).status


def test_a_whole_fork_of_an_ended_session_is_open_and_keeps_the_conversation(root: Path) -> None:
    original = asyncio.run(ended_conversation())
    result = run("session", "fork", original, "--json")
    assert result.exit_code == 0, result.output
    forked = json.loads(result.output)
    assert forked["forked_from"] == {"session": original, "seq": 4}
    shown = json.loads(run("session", "show", forked["session_id"], "--json").output)
    assert shown["status"] == "active"
    assert shown["event_counts"].get("session_end") is None
    assert shown["turns"] == 1
    (root / ".duragent" / "sessions" / forked["session_id"] / "state.yaml").unlink()
    assert asyncio.run(status_rebuilt_from_the_log(forked["session_id"])) == "active"
    assert json.loads(run("session", "show", original, "--json").output)["status"] == "ended"
