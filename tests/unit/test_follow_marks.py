"""The terminal's own marks (its POST answered, Ctrl-C) queued behind a server event do not make
that event look replayed: `pending` counts the server's events only."""

from __future__ import annotations

from typing import Any, cast

from duragent.client.follow import EventFollower
from duragent.client.http import ServerEvent


async def test_marks_behind_an_event_do_not_count_as_events_still_to_come() -> None:
    follower = EventFollower(cast(Any, None), "s_1", after=None)
    follower.queue.put_nowait(ServerEvent("4", "error", {"retryable": True}))
    follower.mark(ServerEvent(None, "_sent", {}))

    assert follower.pending()  # the error itself is still queued
    first = await follower.next()
    assert first is not None
    assert first.event == "error"
    assert not follower.pending()  # only the terminal's own mark is left: the error was the newest
    mark = await follower.next()
    assert mark is not None
    assert mark.event == "_sent"


async def test_an_event_behind_a_mark_is_still_to_come() -> None:
    follower = EventFollower(cast(Any, None), "s_1", after=None)
    follower.mark(ServerEvent(None, "_sent", {}))
    follower.queue.put_nowait(ServerEvent("5", "status", {}))

    await follower.next()

    assert follower.pending()
