"""A spawn whose turn is cancelled (the user stops it) just as the process started still follows
the process: cancelled while its record was written, the process ran on with nobody reading its
output, timing it or reporting its end, and a later `kill` waited forever for an end nobody saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from duragent.processes import manager as manager_module
from duragent.processes.manager import ProcessManager
from duragent.processes.tmux import tmux_available
from tests.integration.test_background_processes import managers, reports, request, work
from tests.waiting import Held, until

__all__ = ["managers", "work"]  # the fixtures


async def test_a_process_whose_spawn_was_cancelled_as_it_started_is_followed_to_its_end(
    managers: Callable[..., ProcessManager], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = managers()
    await manager.start()
    saving = Held(manager_module.write_atomic)  # the first save: the record of the start
    monkeypatch.setattr(manager_module, "write_atomic", saving)
    spawning = asyncio.create_task(manager.spawn(request(work, "read line; echo got $line")))
    await until(saving.entered.is_set)

    spawning.cancel()
    saving.release.set()

    with pytest.raises(asyncio.CancelledError):
        await spawning
    [record] = manager.list("helper")
    await manager.write(record.handle, "helper", "hello\n")  # its stdin is still the server's
    await until(lambda: reports(manager))
    ended, tail = reports(manager)[0]
    assert (ended.handle, ended.status, ended.exit_code) == (record.handle, "exited", 0)
    assert tail == "got hello\n"


@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
async def test_an_interactive_process_whose_spawn_was_cancelled_as_it_started_is_followed_to_its_end(
    managers: Callable[..., ProcessManager], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = managers(poll_interval=0.05)
    await manager.start()
    saving = Held(manager_module.write_atomic)
    monkeypatch.setattr(manager_module, "write_atomic", saving)
    spawning = asyncio.create_task(manager.spawn(request(work, "read line; exit 4", interactive=True)))
    await until(saving.entered.is_set)

    spawning.cancel()
    saving.release.set()

    with pytest.raises(asyncio.CancelledError):
        await spawning
    [record] = manager.list("helper")
    await manager.send_keys(record.handle, "helper", "go", enter=True)
    await until(lambda: reports(manager))
    ended, _ = reports(manager)[0]
    assert (ended.handle, ended.status, ended.exit_code) == (record.handle, "exited", 4)
