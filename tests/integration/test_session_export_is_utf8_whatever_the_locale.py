"""`duragent session export` writes UTF-8, whatever encoding the terminal's locale names."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.workspace import Workspace

DURAGENT = Path(sys.executable).parent / "duragent"
SAID = "café → ☕ 日本"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


async def make_session() -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": SAID, "turn": 1})
        await log.append("assistant_message", {"content": f"you said {SAID}", "message_id": "m1"})
        return log.session_id


def export(session_id: str, fmt: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    return subprocess.run(
        [str(DURAGENT), "session", "export", session_id, "--format", fmt], capture_output=True, env=env
    )


@pytest.mark.parametrize("fmt", ["jsonl", "md"])
def test_an_export_to_an_ascii_terminal_is_whole_utf8(workspace: Path, fmt: str) -> None:
    session_id = asyncio.run(make_session())
    result = export(session_id, fmt)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    text = result.stdout.decode("utf-8")
    if fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["payload"].get("content") for r in records[1:]] == [SAID, f"you said {SAID}"]
    else:
        assert f"you said {SAID}" in text
        assert "## Assistant — " in text
