"""`duragent send -` on a terminal says it waits for the message instead of waiting in silence."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.terminal import DURAGENT, Terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "ws"
    subprocess.run([*DURAGENT, "init", "--yes", str(root)], check=True, capture_output=True)
    yield root
    subprocess.run([*DURAGENT, "serve", "stop"], cwd=root, capture_output=True, timeout=60)


def test_send_dash_on_a_terminal_says_how_to_end_the_message(workspace: Path) -> None:
    send = Terminal(["send", "-"], workspace)
    send.expect("Type the message, then Ctrl-D on a line of its own to send it.")
    send.type("hello from a terminal")
    send.child.sendeof()
    send.expect('You wrote 4 words: "hello from a terminal"')
    send.finish()
