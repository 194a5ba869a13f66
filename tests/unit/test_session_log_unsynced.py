"""SessionLog.append_unsynced: the state has the event at once, everyone else only once it is durable."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence

import pytest

from duragent.sessions.log import SessionLog
from duragent.sessions.stateless import InMemorySessionStore
from duragent.stores.base import SessionEvent


class HeldSyncs(InMemorySessionStore):
    """Stores batches at once; each unsynced one is durable when the test resolves its future.

    Failing one cuts it off the log, as the filesystem store does when its fsync fails.
    """

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[asyncio.Future[None]] = []

    async def append_unsynced(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent]
    ) -> asyncio.Future[None]:
        await self.append(session_id, events)
        synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.syncs.append(synced)
        return synced

    def fail(self, session_id: str, synced: asyncio.Future[None]) -> None:
        self._events[session_id].pop()
        synced.set_exception(OSError(errno.EIO, "Input/output error"))


async def new_log(store: HeldSyncs) -> tuple[SessionLog, list[list[str]]]:
    log = await SessionLog.create(store, agent="helper", session_id="s_held")
    heard: list[list[str]] = []
    log.listeners.append(lambda events: heard.append([event.type for event in events]))
    return log, heard


async def turns_of_the_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_listeners_hear_of_an_unsynced_event_once_it_is_durable_and_the_state_has_it_at_once() -> None:
    store = HeldSyncs()
    log, heard = await new_log(store)

    event = await log.append_unsynced("user_message", {"content": "hi", "turn": 1})

    assert log.state.last_seq == event.seq == 2
    assert log.state.conversation[-1] == {"role": "user", "content": "hi"}
    assert heard == []
    store.syncs[0].set_result(None)
    await turns_of_the_loop()
    assert heard == [["user_message"]]  # told as soon as it was durable, nobody waiting for it


async def test_the_next_append_waits_for_the_unsynced_event_and_lands_after_it() -> None:
    store = HeldSyncs()
    log, heard = await new_log(store)
    await log.append_unsynced("user_message", {"content": "hi", "turn": 1})

    reply = asyncio.ensure_future(log.append("assistant_message", {"content": "hello"}))
    synced = asyncio.ensure_future(log.synced())
    await turns_of_the_loop()
    assert not reply.done()
    assert not synced.done()
    assert heard == []

    store.syncs[0].set_result(None)
    await reply
    await synced
    assert heard == [["user_message"], ["assistant_message"]]


async def test_an_unsynced_event_that_fails_is_undone_and_the_next_append_raises_its_error() -> None:
    store = HeldSyncs()
    log, heard = await new_log(store)
    await log.append_unsynced("user_message", {"content": "lost", "turn": 1})
    store.fail("s_held", store.syncs[0])

    with pytest.raises(OSError, match="Input/output error"):
        await log.append("assistant_message", {"content": "hello"})

    # the state is what the log holds again: no user message, its seq free for the next event
    assert log.state.last_seq == 1
    assert log.state.conversation == []
    assert log.state.turns == 0
    error = await log.append("error", {"code": "internal", "message": "disk failed"})
    assert error.seq == 2
    assert [event.type for event in await store.read("s_held")] == ["session_start", "error"]
    assert heard == [["error"]]  # nobody ever heard of the message that was not stored


async def test_synced_raises_the_error_of_an_unsynced_event_once() -> None:
    store = HeldSyncs()
    log, _ = await new_log(store)
    await log.append_unsynced("user_message", {"content": "lost", "turn": 1})
    store.fail("s_held", store.syncs[0])

    with pytest.raises(OSError, match="Input/output error"):
        await log.synced()
    await log.synced()  # reported once: the log is consistent again


async def test_a_snapshot_waits_for_the_unsynced_event_and_holds_it() -> None:
    store = HeldSyncs()
    log, _ = await new_log(store)
    await log.append_unsynced("user_message", {"content": "hi", "turn": 1})

    snapshot = asyncio.ensure_future(log.snapshot())
    await turns_of_the_loop()
    assert not snapshot.done()
    store.syncs[0].set_result(None)
    await snapshot
    saved = await store.load_snapshot("s_held")
    assert saved is not None
    assert saved.last_seq == 2


async def test_everyone_waiting_for_an_unsynced_event_that_fails_hears_of_it() -> None:
    # the turn (waiting to stream its reply) and a message queued meanwhile (waiting to be recorded)
    store = HeldSyncs()
    log, heard = await new_log(store)
    await log.append_unsynced("user_message", {"content": "lost", "turn": 1})
    turn = asyncio.ensure_future(log.synced())
    queued = asyncio.ensure_future(log.append("message_queued", {"queue_id": "q_1", "content": "next"}))
    await turns_of_the_loop()

    store.fail("s_held", store.syncs[0])
    for waiter in (turn, queued):
        with pytest.raises(OSError, match="Input/output error"):
            await waiter
    assert log.state.last_seq == 1
    assert heard == []
