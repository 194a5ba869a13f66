"""A server stop ends its plain processes all at once: each that ignores SIGTERM gets its grace
at the same time as the others, not one after another (six such processes held a stop 12 s).
Their output is read until they end: a process that wrote as it handled SIGTERM (bash itself
reports its killed `sleep`) died of SIGPIPE before its handler ran."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from duragent.processes.manager import ProcessManager
from tests.integration.test_background_processes import alive, managers, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

GRACE = 2.0
#: Notes its pid in `terms` when SIGTERM comes (bash runs the trap once the running `sleep`
#: ends; the server no longer reads its output by then), then goes on.
STUBBORN = "trap 'echo $$ >> terms' TERM; echo up; while true; do sleep 0.05; done"


async def test_processes_ignoring_sigterm_are_all_told_to_stop_before_any_is_killed(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(kill_grace=GRACE)
    await manager.start()
    records = [await manager.spawn(request(work, STUBBORN)) for _ in range(6)]
    await until(lambda: all("up" in manager.log_path(r.handle).read_text() for r in records))

    closing = asyncio.create_task(manager.close())
    # the first SIGKILL comes after one grace; one by one, only the first had been told by then
    await until(lambda: any(not alive(r.pid) for r in records if r.pid is not None), within=30)
    told = (work / "terms").read_text().split() if (work / "terms").exists() else []
    await closing

    assert len(told) == len(records)
    assert not any(alive(r.pid) for r in records if r.pid is not None)
    second = managers()
    await second.start()
    assert {second.get(r.handle).status for r in records} == {"lost"}


async def test_a_turn_waiting_on_a_process_is_answered_when_the_server_stops(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    """A `wait` (or the agent's `kill`) under way at a stop returned only when its own time ran
    out: the stop's grace for the turn went by with the process long gone."""
    manager = managers(kill_grace=GRACE)
    await manager.start()
    record = await manager.spawn(request(work, "sleep 300"))
    waiting = asyncio.create_task(manager.wait(record.handle, 600))
    await until(lambda: manager._running[record.handle].waiting == 1)

    await manager.close()

    ended = await asyncio.wait_for(waiting, 5)
    assert (ended.status, ended.reason) == ("lost", "the server stopped while it ran")
    assert manager.get(record.handle).status == "lost"
