"""SessionLog's append runs the store's write in the caller's task unless the write has to wait."""

from __future__ import annotations

import asyncio

import pytest

from duragent.sessions.log import run_until_it_waits


async def test_a_coroutine_that_never_waits_runs_at_once_without_a_task() -> None:
    ran: list[str] = []

    async def quick() -> None:
        ran.append("done")

    assert run_until_it_waits(quick()) is None
    assert ran == ["done"]


async def test_an_error_of_a_coroutine_that_never_waits_is_raised_at_once() -> None:
    async def broken() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        run_until_it_waits(broken())


async def test_a_coroutine_that_waits_goes_on_in_a_task_that_passes_on_its_cancellation() -> None:
    gate, went_on = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def waits() -> None:
        seen.append("started")
        try:
            await gate.wait()
            seen.append("went on")
            went_on.set()
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            seen.append("cancelled where it waited")
            raise

    task = run_until_it_waits(waits())
    assert task is not None
    assert seen == ["started"]  # the first part ran here, in the caller's task
    gate.set()
    await went_on.wait()
    assert seen == ["started", "went on"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["started", "went on", "cancelled where it waited"]
