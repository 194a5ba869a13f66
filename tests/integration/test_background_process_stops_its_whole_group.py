"""Stopping a process (kill, timeout, server stop) stops everything it started: a child that ignores
SIGTERM and writes elsewhere than the log got no SIGKILL once the shell itself had died of the
SIGTERM (or, in a terminal, once tmux had closed it), and ran on with nothing left to follow or
stop it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from duragent.processes.manager import ProcessManager
from duragent.processes.tmux import tmux_available
from tests.integration.test_background_processes import alive, managers, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

#: The shell dies of SIGTERM; its child ignores it (and the SIGHUP of a closing terminal), and its
#: output goes nowhere the server reads.
STUBBORN_CHILD = "(trap '' TERM HUP; exec sleep 300) > /dev/null 2>&1 & echo child $!; wait"


def running(pid: int) -> bool:
    """True while `pid` runs (a killed child waits as a zombie until init reaps it: not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Pids the test saw started: whatever is left of them is killed afterwards."""
    started: list[int] = []
    yield started
    for pid in started:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def start_stubborn(
    manager: ProcessManager, work: Path, children: list[int], *, interactive: bool = False
) -> str:
    record = await manager.spawn(request(work, STUBBORN_CHILD, interactive=interactive))
    log = manager.log_path(record.handle)
    await until(lambda: "child" in log.read_text())
    children.append(int(log.read_text().split()[1]))
    return record.handle


async def test_kill_stops_a_child_that_ignores_sigterm_after_the_grace(
    managers: Callable[..., ProcessManager], work: Path, children: list[int]
) -> None:
    manager = managers(kill_grace=0.3)
    await manager.start()
    handle = await start_stubborn(manager, work, children)

    killed = await manager.kill(handle, "helper", "killed by the agent")

    assert killed.status == "killed"
    assert not running(children[0])  # gone by the time the kill is answered


async def test_a_server_stop_leaves_no_child_of_a_process_running(
    managers: Callable[..., ProcessManager], work: Path, children: list[int]
) -> None:
    manager = managers(kill_grace=0.3)
    await manager.start()
    await start_stubborn(manager, work, children)

    await manager.close()

    assert not running(children[0])


@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
async def test_kill_stops_a_child_of_an_interactive_process_that_ignores_sigterm_and_sighup(
    managers: Callable[..., ProcessManager], work: Path, children: list[int]
) -> None:
    manager = managers(kill_grace=0.3, poll_interval=0.05)
    await manager.start()
    handle = await start_stubborn(manager, work, children, interactive=True)

    killed = await manager.kill(handle, "helper")

    assert killed.status == "killed"
    assert not running(children[0])
