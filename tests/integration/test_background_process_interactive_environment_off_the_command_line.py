"""An interactive (tmux) process gets its environment without it ever being on a command line:
the values (a token the agent lists in `spec.tools.env`) were arguments of `env -i` under the
pane's shell, which `ps` shows to every user of the machine for as long as the process runs. The
file they are handed over in is gone once the process has read it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from duragent.processes.manager import ProcessManager, SpawnRequest
from duragent.processes.tmux import tmux_available
from tests.integration.test_background_processes import managers, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

TOKEN = "ghp_only-the-process-may-see-this"


def command_lines_holding(text: str) -> list[str]:
    """The command lines of this machine's processes (as `ps` shows them) that hold `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # (ended meanwhile)
        if text in line:
            found.append(line)
    return found


def files_holding(folder: Path, pattern: str, text: str) -> list[Path]:
    """The files of `folder` matching `pattern` that hold `text`."""
    return [f for f in folder.glob(pattern) if text in f.read_text()]


@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
async def test_an_interactive_processs_environment_is_on_no_command_line(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "GITHUB_TOKEN": TOKEN}
    request = SpawnRequest(
        agent="helper",
        session_id="s_OWNER",
        command='echo "token: $GITHUB_TOKEN ${LANG}"; sleep 60',
        work_root=work,
        env=env,
        interactive=True,
    )
    record = await manager.spawn(request)
    log = manager.log_path(record.handle)
    await until(lambda: "token: " in log.read_text())

    assert f"token: {TOKEN} C.UTF-8" in log.read_text()  # it still reaches the process
    assert command_lines_holding(TOKEN) == []
    assert files_holding(Path(tempfile.gettempdir()), "duragent-env-*", TOKEN) == []  # removed once read
    await manager.kill(record.handle, "helper")
