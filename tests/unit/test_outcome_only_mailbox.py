"""A mailbox of a client that waits only for a turn's outcome: no text, woken only when it may end."""

from __future__ import annotations

import asyncio

from duragent.sessions.live import OUTCOME_BACKLOG, Mailbox
from duragent.sessions.stream import Position, StreamEvent


def event(seq: int, name: str, delta: int = 0) -> StreamEvent:
    return StreamEvent(Position(seq, delta), name, {})


def waiting(mailbox: Mailbox) -> asyncio.Future[None]:
    mailbox.waiter = asyncio.get_running_loop().create_future()
    return mailbox.waiter


async def test_an_outcome_only_reader_is_woken_by_the_outcome_and_reads_the_events_before_it() -> None:
    mailbox = Mailbox(outcome_only=True)
    waiter = waiting(mailbox)
    mailbox.put(event(5, "start"))
    mailbox.put(event(5, "token", 1))
    mailbox.put(event(5, "retrying", 2))
    mailbox.put(event(6, "tool_call"))
    assert not waiter.done()

    mailbox.put(event(7, "done"))

    assert waiter.done()
    assert [e.event for e in mailbox.events if e is not None] == ["start", "tool_call", "done"]


async def test_an_outcome_only_reader_is_woken_by_a_pause_and_by_the_close() -> None:
    mailbox = Mailbox(outcome_only=True)
    waiter = waiting(mailbox)
    mailbox.put(event(3, "approval_required"))
    assert waiter.done()

    waiter = waiting(mailbox)
    mailbox.put(None)
    assert waiter.done()


async def test_an_outcome_only_reader_is_woken_to_read_a_long_backlog() -> None:
    mailbox = Mailbox(outcome_only=True)
    waiter = waiting(mailbox)
    for seq in range(OUTCOME_BACKLOG - 1):
        mailbox.put(event(seq, "tool_result"))
    assert not waiter.done()

    mailbox.put(event(OUTCOME_BACKLOG, "tool_result"))

    assert waiter.done()


async def test_any_other_reader_is_woken_by_every_event() -> None:
    mailbox = Mailbox()
    waiter = waiting(mailbox)
    mailbox.put(event(5, "token", 1))
    assert waiter.done()
    assert len(mailbox) == 1
