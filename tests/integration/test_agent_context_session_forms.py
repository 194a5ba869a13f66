"""`duragent agent context --session` names a session as every other `--session` does: its whole
id, its name, or a unique start of the id (docs/memory.md, docs/cli.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.workspace import Workspace

DURAGENT = Path(sys.executable).parent / "duragent"


async def make_session(workspace: Path, content: str) -> str:
    async with Workspace(load_config(workspace / "duragent.yaml")) as opened:
        log = await SessionLog.create(opened.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": content, "turn": 1})
        return log.session_id


def duragent(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DURAGENT), *args], cwd=workspace, capture_output=True, text=True, timeout=60, check=False
    )


def sent_messages(workspace: Path, session: str) -> list[str]:
    done = duragent(workspace, "agent", "context", "assistant", "--session", session, "--json")
    assert done.returncode == 0, done.stderr
    return [message["content"] for message in json.loads(done.stdout)["messages"]]


def test_agent_context_takes_a_unique_start_of_the_id_and_a_session_name(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    init_workspace(workspace)
    session_id = asyncio.run(make_session(workspace, "what is on my calendar?"))

    assert "what is on my calendar?" in sent_messages(workspace, session_id[:8])

    forked = duragent(workspace, "session", "fork", session_id, "--name", "what-if")
    assert forked.returncode == 0, forked.stderr
    assert "what is on my calendar?" in sent_messages(workspace, "what-if")


def test_agent_context_names_a_session_it_cannot_find(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    init_workspace(workspace)

    done = duragent(workspace, "agent", "context", "assistant", "--session", "s_nothing", "--json")

    assert done.returncode != 0
    assert "session 's_nothing' not found" in done.stderr
