"""Leaving `chat --local` says what became of the session: a paused turn only when one ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.terminal import DURAGENT, Terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_leaving_chat_local_at_the_prompt_mentions_no_paused_turn(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    subprocess.run([*DURAGENT, "init", "--yes", str(workspace)], check=True, capture_output=True)
    chat = Terminal(["chat", "--local"], workspace)
    chat.prompt()
    chat.type("hello there")
    chat.expect('You wrote 2 words: "hello there"')
    chat.prompt()
    chat.child.sendcontrol("d")
    farewell = chat.finish()

    assert "The local server stopped; session s_" in farewell
    assert "is saved." in farewell
    assert "paused" not in farewell
