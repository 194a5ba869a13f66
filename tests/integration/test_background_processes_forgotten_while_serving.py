"""Only the newest `keep_ended` ended processes are kept while the server runs, not only from one
start to the next: a server up for months kept the record and log (up to 2 MiB) of every process
an agent started every few minutes, filling the disk until someone restarted it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from duragent.processes.manager import ProcessManager
from tests.integration.test_background_processes import managers, reports, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures


async def test_the_oldest_ended_processes_are_forgotten_as_newer_ones_end(
    managers: Callable[..., ProcessManager], work: Path, tmp_path: Path
) -> None:
    manager = managers(keep_ended=2)
    await manager.start()
    handles = []
    for n in range(4):
        record = await manager.spawn(request(work, f"echo run {n}"))
        handles.append(record.handle)
        await until(lambda: len(reports(manager)) == len(handles))  # ended and told to its session

    await until(lambda: {r.handle for r in manager.list()} == set(handles[2:]))
    folder = tmp_path / "processes"
    await until(lambda: sorted(p.name for p in folder.glob(f"{handles[1]}*")) == [])
    assert sorted(p.name for p in folder.glob(f"{handles[0]}*")) == []
    assert (folder / f"{handles[3]}.log").read_text() == "run 3\n"
