"""`duragent session log --follow` of a session deleted meanwhile says it was deleted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.workspace import Workspace

DURAGENT = Path(sys.executable).parent / "duragent"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


async def make_session() -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": "hello there", "turn": 1})
        return log.session_id


def test_following_a_session_that_is_deleted_says_it_was_deleted(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    follower = subprocess.Popen(
        [str(DURAGENT), "session", "log", session_id, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert (
            follower.stdout.readline()
            .rstrip()
            .endswith("session started with agent assistant (on_disconnect: continue)")
        )
        assert follower.stdout.readline().rstrip().endswith("user: hello there")
        deleted = subprocess.run(
            [str(DURAGENT), "session", "delete", session_id, "--yes"], capture_output=True, text=True
        )
        assert deleted.returncode == 0, deleted.stderr
        _, stderr = follower.communicate(timeout=10)
    finally:
        follower.kill()
        follower.wait(5)
    assert f"session {session_id} was deleted while it was followed" in stderr
