"""`write` with `eof: true` ends the input of an interactive (tmux) process as it closes a plain
one's stdin: it was ignored, and a program reading to the end of its input waited on forever."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from duragent.processes.manager import ProcessManager
from duragent.processes.tmux import tmux_available
from tests.integration.test_background_processes import managers, reports, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures


@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
async def test_eof_ends_the_input_of_an_interactive_process(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(poll_interval=0.05)
    await manager.start()
    record = await manager.spawn(request(work, "echo ready; wc -l; echo counted", interactive=True))
    await until(lambda: "ready" in manager.log_path(record.handle).read_text())

    await manager.write(record.handle, "helper", "one\ntwo\n", eof=True)

    await until(lambda: reports(manager))
    ended, tail = reports(manager)[0]
    assert (ended.status, ended.exit_code) == ("exited", 0)
    assert "2" in tail.split()
    assert "counted" in tail
