"""SessionLog writes its periodic state.yaml snapshot in the background: appends never wait for it."""

from __future__ import annotations

import asyncio

from duragent.sessions.log import SessionLog
from duragent.sessions.state import SessionState
from duragent.sessions.stateless import InMemorySessionStore
from duragent.stores.base import SessionSnapshot


class HeldSnapshots(InMemorySessionStore):
    """Keeps every snapshot it is given; each write waits until `gate` is open."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.saved: list[int] = []

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        await self.gate.wait()
        await super().save_snapshot(snapshot)
        self.saved.append(snapshot.last_seq)


async def test_appends_return_while_the_periodic_snapshot_is_still_being_written() -> None:
    store = HeldSnapshots()
    log = SessionLog(store, SessionState(session_id="s_held"), snapshot_every=2)

    for turn in range(1, 4):
        await asyncio.wait_for(log.append("user_message", {"content": "hi", "turn": turn}), 10)
        await asyncio.wait_for(log.append("assistant_message", {"content": "hello"}), 10)

    assert store.saved == []
    store.gate.set()
    await log.settle()
    # The first snapshot (seq 2) was held while seqs 3-6 came: the next one catches up with them.
    assert store.saved == [2, 6]
    assert (await store.load_snapshot("s_held")).last_seq == 6  # type: ignore[union-attr]


async def test_an_explicit_snapshot_waits_for_the_periodic_one_and_lands_after_it() -> None:
    store = HeldSnapshots()
    log = SessionLog(store, SessionState(session_id="s_order"), snapshot_every=2)
    await log.append("user_message", {"content": "hi", "turn": 1})
    await log.append("assistant_message", {"content": "hello"})
    await log.append("user_message", {"content": "again", "turn": 2})

    explicit = asyncio.ensure_future(log.snapshot())
    await asyncio.sleep(0)
    assert not explicit.done()
    store.gate.set()
    await explicit

    assert store.saved == [2, 3]


async def test_a_failed_periodic_snapshot_is_logged_and_the_appends_go_on(caplog) -> None:  # type: ignore[no-untyped-def]
    class Failing(InMemorySessionStore):
        async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
            raise OSError("disk full")

    log = SessionLog(Failing(), SessionState(session_id="s_full"), snapshot_every=1)
    await log.append("user_message", {"content": "hi", "turn": 1})
    await log.settle()
    await log.append("assistant_message", {"content": "hello"})
    await log.settle()

    assert log.state.last_seq == 2
    assert "state.yaml not written (disk full)" in caplog.text
