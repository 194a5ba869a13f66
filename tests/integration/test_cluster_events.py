"""A session's stream on another worker: NOTIFY from the publishing worker, events from the table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from duragent.cluster.events import MAX_NOTIFY_BYTES, RelaySubscription, decode_notice, encode_notice
from duragent.cluster.node import ClusterNode
from duragent.sessions.stream import Position, StreamEvent, from_stored, token
from duragent.stores.base import SessionEvent, SessionNotFound
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.postgres import temporary_schema


@pytest.fixture
async def setup() -> AsyncIterator[tuple[ClusterNode, ClusterNode, PostgresSessionStore]]:
    async with temporary_schema() as url:
        publisher = await ClusterNode.open(url, scan_interval=60)
        follower = await ClusterNode.open(url, scan_interval=60)
        store = PostgresSessionStore(url)
        yield publisher, follower, store
        await store.close()
        await publisher.close()
        await follower.close()


def event(seq: int, type: str = "notification", **payload: object) -> SessionEvent:
    return SessionEvent(seq, f"e_{seq}", datetime.now(UTC), type, dict(payload))


async def stored_and_published(node: ClusterNode, store: PostgresSessionStore, item: SessionEvent) -> None:
    """What the owning worker does: append, then publish what clients see."""
    await store.append("s_relay", item)
    node.events.publish("s_relay", from_stored(item))


async def drain(relay: RelaySubscription, count: int) -> list[StreamEvent]:
    seen: list[StreamEvent] = []
    for _ in range(200):
        if len(seen) >= count:
            break
        next_event = await relay.next_within(0.05)
        if next_event is not None:
            seen += [next_event, *relay.ready()]
    return seen


async def test_a_follower_on_another_worker_sees_stored_events_and_tokens_in_order(
    setup: tuple[ClusterNode, ClusterNode, PostgresSessionStore],
) -> None:
    publisher, follower, store = setup
    await store.append("s_relay", event(1, "session_start", agent="helper"))
    relay = await follower.events.follow(store, "s_relay", None)

    await stored_and_published(publisher, store, event(2, "user_message", content="hi", turn=1))
    publisher.events.publish("s_relay", token(2, 1, "Hel"))
    publisher.events.publish("s_relay", token(2, 2, "lo"))
    await stored_and_published(publisher, store, event(3, "assistant_message", content="Hello"))

    seen = await drain(relay, 4)
    assert [str(e.position) for e in seen] == ["2", "2.1", "2.2", "3"]
    assert [e.event for e in seen] == ["start", "token", "token", "done"]
    assert "".join(e.data["content"] for e in seen if e.event == "token") == "Hello"
    relay.close()


async def test_last_event_id_replays_the_stored_events_after_it_then_goes_live(
    setup: tuple[ClusterNode, ClusterNode, PostgresSessionStore],
) -> None:
    publisher, follower, store = setup
    for seq in (1, 2, 3):
        await store.append("s_relay", event(seq))
    relay = await follower.events.follow(store, "s_relay", Position.parse("1"))
    await stored_and_published(publisher, store, event(4))

    seen = await drain(relay, 3)
    assert [str(e.position) for e in seen] == ["2", "3", "4"]


async def test_an_event_whose_notification_was_missed_arrives_before_the_next_token(
    setup: tuple[ClusterNode, ClusterNode, PostgresSessionStore],
) -> None:
    publisher, follower, store = setup
    await store.append("s_relay", event(1))
    relay = await follower.events.follow(store, "s_relay", None)
    await store.append("s_relay", event(2))  # stored, never announced
    publisher.events.publish("s_relay", token(2, 1, "x"))

    seen = await drain(relay, 2)
    assert [str(e.position) for e in seen] == ["2", "2.1"]


async def test_following_a_session_that_does_not_exist_is_not_found(
    setup: tuple[ClusterNode, ClusterNode, PostgresSessionStore],
) -> None:
    _, follower, store = setup
    with pytest.raises(SessionNotFound):
        await follower.events.follow(store, "s_missing", None)
    assert follower.events.followers == 0


def test_a_token_too_large_for_notify_is_sent_without_its_text() -> None:
    payload = encode_notice("s_big", token(7, 1, "x" * (MAX_NOTIFY_BYTES + 10)))
    notice = decode_notice(payload)
    assert len(payload.encode()) < 8000
    assert notice is not None
    assert notice.position == Position(7, 1)
    assert notice.text is None
