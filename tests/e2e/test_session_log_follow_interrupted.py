"""Ctrl-C ends `duragent session log --follow` on a line of its own, so the shell's prompt is not
glued to the `^C`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.workspace import Workspace
from tests.e2e.terminal import Terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def make_session(config_path: Path) -> str:
    async with Workspace(load_config(config_path)) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": "are you there?", "turn": 1})
        return log.session_id


def test_ctrl_c_ends_following_with_a_new_line(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws")
    session_id = asyncio.run(make_session(tmp_path / "ws" / "duragent.yaml"))
    follow = Terminal(["session", "log", "--follow", session_id], tmp_path / "ws")
    follow.expect("user: are you there\\?\n")
    follow.child.sendintr()
    shown = follow.finish()
    assert shown.endswith("^C\n"), repr(shown)
