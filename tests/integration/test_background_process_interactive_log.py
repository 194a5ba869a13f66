"""An interactive (tmux) process's log is bounded like a plain one's: the rotated part keeps only
the last `log_cap_bytes`, however much the process wrote between two looks, and what is left at
its end is rotated too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from duragent.processes.manager import ProcessManager
from duragent.processes.output import kept_bytes, rotated_path
from duragent.processes.tmux import tmux_available
from tests.integration.test_background_processes import managers, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

CAP = 4096
PIPE_BYTES = 64 * 1024


@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
async def test_a_fast_interactive_writer_leaves_at_most_twice_the_cap_on_disk(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(log_cap_bytes=CAP, poll_interval=0.05)
    await manager.start()
    record = await manager.spawn(request(work, "yes 'a line of output'", interactive=True))
    await until(lambda: manager.get(record.handle).output_bytes > 50 * CAP)

    ended = await manager.kill(record.handle, "helper")

    log = manager.log_path(record.handle)
    assert rotated_path(log).stat().st_size <= CAP
    # (tmux's copier may still write what its pipe held, at most a pipe's worth, after the end)
    assert kept_bytes(log) <= 2 * CAP + PIPE_BYTES
    part = await manager.read_log(record.handle, "helper", None, 1000)
    assert part.total == ended.output_bytes
    assert part.dropped >= ended.output_bytes - 2 * CAP - PIPE_BYTES
    assert "a line of output" in part.text
