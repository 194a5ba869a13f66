"""A message streamed from another worker says so when a turn ahead of it asks a person, as on
the worker running the session: it waited, silent, until the approval timed out."""

from __future__ import annotations

from typing import Any, cast

from duragent.client.sse import BEHIND_APPROVAL_EVENT, SseParser, comment_event
from duragent.cluster.turns import RemoteTurn
from duragent.sessions.live import EventFeed
from duragent.sessions.stream import Position, StreamEvent


async def test_an_approval_asked_ahead_of_the_turn_is_said_and_its_own_turn_s_events_follow() -> None:
    turn = RemoteTurn(cast(EventFeed, object()), Position(4))
    asked = StreamEvent(Position(5), "approval_required", {"call_id": "call_9", "tool": "bash"})
    said, ends = turn.accept(asked)
    assert not ends
    assert isinstance(said, bytes)
    [message] = SseParser().feed(said)
    assert comment_event(message) == (BEHIND_APPROVAL_EVENT, {"call_id": "call_9"})

    turn.told({"start": "8"})
    own: dict[str, Any] = {"content": "done"}
    assert turn.accept(StreamEvent(Position(6), "token", own)) == (False, False)  # still the turn ahead
    assert turn.accept(StreamEvent(Position(9), "done", own)) == (True, True)
