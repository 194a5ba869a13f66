"""Locks by key: exclusive per key, and gone once nobody holds or awaits them (a long-running
server meets sessions and files without end)."""

from __future__ import annotations

import asyncio

from duragent.keyed_locks import KeyedLocks


async def test_one_key_is_held_by_one_task_at_a_time_and_others_go_on() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []
    first_holds = asyncio.Event()
    let_go = asyncio.Event()

    async def first() -> None:
        async with locks("a"):
            order.append("first in")
            first_holds.set()
            await let_go.wait()
            order.append("first out")

    async def second() -> None:
        await first_holds.wait()
        async with locks("a"):
            order.append("second in")

    async def other_key() -> None:
        await first_holds.wait()
        async with locks("b"):
            order.append("b in")
        let_go.set()

    await asyncio.gather(first(), second(), other_key())
    assert order == ["first in", "b in", "first out", "second in"]


async def test_a_key_s_lock_is_dropped_once_its_last_holder_or_waiter_leaves() -> None:
    locks: KeyedLocks[int] = KeyedLocks()
    for key in range(100):
        async with locks(key):
            assert len(locks) == 1
    assert len(locks) == 0

    holder_in = asyncio.Event()
    let_go = asyncio.Event()

    async def holder() -> None:
        async with locks(7):
            holder_in.set()
            await let_go.wait()

    async def waiter() -> None:
        async with locks(7):
            pass

    held = asyncio.ensure_future(holder())
    await holder_in.wait()
    waiting = asyncio.ensure_future(waiter())
    cancelled = asyncio.ensure_future(waiter())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert len(locks) == 1  # still held, still awaited: the same lock for both
    let_go.set()
    await asyncio.gather(held, waiting)
    assert len(locks) == 0


async def test_a_waiter_cancelled_alone_leaves_nothing_behind() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    outer = locks("k")
    await outer.__aenter__()
    waiter = asyncio.ensure_future(locks("k").__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await outer.__aexit__(None, None, None)
    assert len(locks) == 0
    async with locks("k"):  # a fresh lock, free
        assert locks("k").locked()


async def test_a_key_taken_alone_still_keeps_out_a_task_that_comes_after_a_waiter_gave_up() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    holder = locks("k")
    await holder.__aenter__()  # nobody else about: taken without waiting
    given_up = asyncio.ensure_future(locks("k").__aenter__())
    await asyncio.sleep(0)
    given_up.cancel()
    await asyncio.gather(given_up, return_exceptions=True)
    assert holder.locked()

    later = asyncio.ensure_future(locks("k").__aenter__())
    for _ in range(3):  # (later's turns on the loop: it would have taken the key by now)
        await asyncio.sleep(0)
    assert not later.done()  # the holder has not left
    await holder.__aexit__(None, None, None)
    await asyncio.wait_for(later, 1)
    await locks("k").__aexit__(None, None, None)
    assert len(locks) == 0
