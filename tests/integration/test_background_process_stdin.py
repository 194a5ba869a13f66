"""`write` to a process that does not read its stdin: the call returns (the agent's turn goes on)
and what the process has not read stays queued for it, delivered whole once it reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from duragent.processes.manager import ProcessManager
from tests.integration.test_background_processes import managers, reports, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

#: Far more than a pipe holds (64 KiB on Linux).
INPUT_BYTES = 300_000


async def test_a_write_the_process_does_not_read_returns_and_stays_queued(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(write_wait=0.2)
    await manager.start()
    # reads nothing until the file `go` appears, then counts what came on its stdin
    record = await manager.spawn(request(work, "until [ -e go ]; do sleep 0.02; done; wc -c"))

    waiting = await asyncio.wait_for(manager.write(record.handle, "helper", "x" * INPUT_BYTES, eof=True), 10)

    assert 0 < waiting < INPUT_BYTES  # the pipe took some, the rest is queued, nothing lost
    (work / "go").touch()
    await until(lambda: reports(manager))
    ended, tail = reports(manager)[0]
    assert (ended.status, ended.exit_code) == ("exited", 0)
    assert tail.strip() == str(INPUT_BYTES)
