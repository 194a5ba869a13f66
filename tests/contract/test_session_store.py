"""The SessionStore contract: what every backend (files today, PostgreSQL later) must do.

Only the protocol is tested here; backend specifics (torn lines, fcntl locks, fsync) live in the
backend's own unit tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from duragent.errors import InvalidName
from duragent.ids import new_id
from duragent.stores.base import (
    FIRST_MESSAGE_CHARS,
    FIRST_MESSAGE_WITHIN,
    ListKey,
    SequenceConflict,
    SessionEvent,
    SessionNotFound,
    SessionReadOptions,
    SessionSnapshot,
    SessionStore,
    list_key,
)

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_event(
    seq: int, type: str = "user_message", at: datetime | None = None, **payload: Any
) -> SessionEvent:
    """An event with a unique id; `at` defaults to one second per seq after START."""
    return SessionEvent(seq, new_id("evt"), at or START + timedelta(seconds=seq), type, payload)


async def start_session(store: SessionStore, session_id: str, agent: str, at: datetime = START) -> None:
    """A session whose log begins the way the runtime begins one."""
    await store.append(
        session_id, make_event(1, "session_start", at=at, agent=agent, on_disconnect="pause", metadata={})
    )


def snapshot(session_id: str, **changes: Any) -> SessionSnapshot:
    """A snapshot with every field filled in."""
    fields: dict[str, Any] = {
        "session_id": session_id,
        "agent": "helper",
        "status": "paused",
        "last_seq": 3,
        "created_at": START,
        "updated_at": START + timedelta(minutes=5),
        "on_disconnect": "pause",
        "conversation": [
            {"role": "user", "content": "Wie spät ist es? ⏰"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "clock"}]},
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30},
        "pending_approvals": [{"call_id": "c1", "tool": "bash", "arguments": {"command": "date"}}],
        "metadata": {"gateway": "telegram", "chat_id": "42"},
    }
    fields.update(changes)
    return SessionSnapshot(**fields)


async def test_appended_events_read_back_in_order_with_every_field(session_store: SessionStore) -> None:
    written = [
        make_event(1, "session_start", agent="helper", on_disconnect="continue", metadata={}),
        make_event(2, "user_message", content="héllo 👋", turn=1),
        make_event(3, "assistant_message", content="hi", message_id="msg_1", usage={"total_tokens": 9}),
    ]
    await session_store.append("s_one", written)

    assert await session_store.read("s_one") == written


async def test_an_unsynced_append_is_stored_and_its_future_says_when_it_is_durable(
    session_store: SessionStore,
) -> None:
    await start_session(session_store, "s_one", "helper")
    synced = await session_store.append_unsynced("s_one", [make_event(2), make_event(3)])
    await synced
    await session_store.append("s_one", make_event(4))

    assert [event.seq for event in await session_store.read("s_one")] == [1, 2, 3, 4]
    assert await session_store.last_seq("s_one") == 4


async def test_an_unsynced_append_is_checked_like_any_other(session_store: SessionStore) -> None:
    await start_session(session_store, "s_one", "helper")
    with pytest.raises(SequenceConflict):
        await session_store.append_unsynced("s_one", make_event(3))
    assert await session_store.last_seq("s_one") == 1


async def test_single_events_and_batches_can_be_mixed(session_store: SessionStore) -> None:
    await session_store.append("s_mix", make_event(1))
    await session_store.append("s_mix", [make_event(2), make_event(3)])
    await session_store.append("s_mix", make_event(4))

    assert [event.seq for event in await session_store.read("s_mix")] == [1, 2, 3, 4]


async def test_an_empty_batch_is_a_no_op(session_store: SessionStore) -> None:
    await session_store.append("s_empty", make_event(1))
    await session_store.append("s_empty", [])

    assert await session_store.last_seq("s_empty") == 1


async def test_the_first_event_of_a_session_must_be_seq_one(session_store: SessionStore) -> None:
    with pytest.raises(SequenceConflict) as raised:
        await session_store.append("s_first", make_event(2))

    assert (raised.value.expected, raised.value.got) == (1, 2)
    assert await session_store.last_seq("s_first") == 0


async def test_a_batch_with_a_gap_is_refused_and_nothing_of_it_is_stored(session_store: SessionStore) -> None:
    await session_store.append("s_gap", make_event(1))

    with pytest.raises(SequenceConflict) as raised:
        await session_store.append("s_gap", [make_event(2), make_event(3), make_event(5)])

    assert (raised.value.expected, raised.value.got) == (4, 5)
    assert [event.seq for event in await session_store.read("s_gap")] == [1]


async def test_appending_a_seq_that_is_already_stored_is_a_conflict(session_store: SessionStore) -> None:
    await session_store.append("s_dup", [make_event(1), make_event(2)])

    with pytest.raises(SequenceConflict) as raised:
        await session_store.append("s_dup", make_event(2))

    assert (raised.value.session_id, raised.value.expected, raised.value.got) == ("s_dup", 3, 2)
    assert len(await session_store.read("s_dup")) == 2


async def test_last_seq_is_zero_before_any_event_and_follows_appends(session_store: SessionStore) -> None:
    assert await session_store.last_seq("s_new") == 0

    await session_store.append("s_new", [make_event(1), make_event(2)])
    assert await session_store.last_seq("s_new") == 2

    await session_store.append("s_new", make_event(3))
    assert await session_store.last_seq("s_new") == 3


async def test_read_after_seq_returns_only_later_events(session_store: SessionStore) -> None:
    await session_store.append("s_after", [make_event(seq) for seq in range(1, 11)])

    later = await session_store.read("s_after", SessionReadOptions(after_seq=7))
    beyond = await session_store.read("s_after", SessionReadOptions(after_seq=10))

    assert [event.seq for event in later] == [8, 9, 10]
    assert beyond == []


async def test_read_limit_returns_the_first_events_after_the_cursor(session_store: SessionStore) -> None:
    await session_store.append("s_limit", [make_event(seq) for seq in range(1, 11)])

    first_page = await session_store.read("s_limit", SessionReadOptions(limit=3))
    second_page = await session_store.read("s_limit", SessionReadOptions(after_seq=3, limit=3))
    tail_page = await session_store.read("s_limit", SessionReadOptions(after_seq=8, limit=3))

    assert [event.seq for event in first_page] == [1, 2, 3]
    assert [event.seq for event in second_page] == [4, 5, 6]
    assert [event.seq for event in tail_page] == [9, 10]


async def test_read_types_keeps_only_those_types_and_limit_counts_matches(
    session_store: SessionStore,
) -> None:
    types = ["user_message", "assistant_message", "tool_call", "tool_result"] * 3
    await session_store.append("s_types", [make_event(seq, kind) for seq, kind in enumerate(types, start=1)])

    messages = await session_store.read(
        "s_types", SessionReadOptions(types=frozenset({"user_message", "assistant_message"}))
    )
    two_results = await session_store.read(
        "s_types", SessionReadOptions(types=frozenset({"tool_result"}), limit=2)
    )
    late_results = await session_store.read(
        "s_types", SessionReadOptions(after_seq=9, types=frozenset({"tool_result"}))
    )

    assert [event.seq for event in messages] == [1, 2, 5, 6, 9, 10]
    assert [event.seq for event in two_results] == [4, 8]
    assert [event.seq for event in late_results] == [12]


async def test_reading_an_unknown_session_raises_session_not_found(session_store: SessionStore) -> None:
    with pytest.raises(SessionNotFound) as raised:
        await session_store.read("s_missing")

    assert raised.value.session_id == "s_missing"


async def test_sessions_are_independent(session_store: SessionStore) -> None:
    await session_store.append("s_a", [make_event(1), make_event(2)])
    await session_store.append("s_b", make_event(1, content="only b"))

    assert [event.seq for event in await session_store.read("s_a")] == [1, 2]
    assert [event.payload for event in await session_store.read("s_b")] == [{"content": "only b"}]


async def test_delete_removes_the_log_and_the_snapshot(session_store: SessionStore) -> None:
    await start_session(session_store, "s_gone", "helper")
    await session_store.save_snapshot(snapshot("s_gone", last_seq=1))

    await session_store.delete("s_gone")

    with pytest.raises(SessionNotFound):
        await session_store.read("s_gone")
    assert await session_store.load_snapshot("s_gone") is None
    assert await session_store.last_seq("s_gone") == 0
    assert [summary.session_id for summary in await session_store.list()] == []


async def test_a_deleted_session_id_can_start_again_from_seq_one(session_store: SessionStore) -> None:
    await session_store.append("s_again", [make_event(1), make_event(2)])
    await session_store.delete("s_again")

    await session_store.append("s_again", make_event(1, content="fresh"))

    assert [event.payload["content"] for event in await session_store.read("s_again")] == ["fresh"]


async def test_deleting_an_unknown_session_raises_session_not_found(session_store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        await session_store.delete("s_never")


async def test_snapshot_round_trips_every_field(session_store: SessionStore) -> None:
    await start_session(session_store, "s_snap", "helper")
    saved = snapshot("s_snap")

    await session_store.save_snapshot(saved)

    assert await session_store.load_snapshot("s_snap") == saved


async def test_a_new_snapshot_replaces_the_previous_one(session_store: SessionStore) -> None:
    await start_session(session_store, "s_resnap", "helper")
    await session_store.save_snapshot(snapshot("s_resnap", last_seq=1, status="active"))

    await session_store.save_snapshot(snapshot("s_resnap", last_seq=1, status="ended"))

    loaded = await session_store.load_snapshot("s_resnap")
    assert loaded is not None
    assert loaded.status == "ended"


async def test_a_session_without_snapshot_loads_none(session_store: SessionStore) -> None:
    await start_session(session_store, "s_nosnap", "helper")

    assert await session_store.load_snapshot("s_nosnap") is None
    assert await session_store.load_snapshot("s_nowhere") is None


async def test_list_shows_every_session_newest_activity_first(session_store: SessionStore) -> None:
    await start_session(session_store, "s_old", "helper", at=START)
    await start_session(session_store, "s_new", "coder", at=START + timedelta(hours=2))
    await start_session(session_store, "s_mid", "helper", at=START + timedelta(hours=1))
    await session_store.append("s_old", make_event(2, at=START + timedelta(hours=3), content="later"))

    summaries = await session_store.list()

    assert [summary.session_id for summary in summaries] == ["s_old", "s_new", "s_mid"]
    old = summaries[0]
    assert (old.agent, old.status, old.last_seq) == ("helper", "active", 2)
    assert (old.created_at, old.updated_at) == (START, START + timedelta(hours=3))


async def test_list_filters_by_agent_and_status_and_limits(session_store: SessionStore) -> None:
    await start_session(session_store, "s_h1", "helper", at=START)
    await start_session(session_store, "s_h2", "helper", at=START + timedelta(hours=1))
    await start_session(session_store, "s_c1", "coder", at=START + timedelta(hours=2))
    await session_store.append(
        "s_h1", SessionEvent(2, new_id("evt"), START, "status_change", {"from": "active", "to": "paused"})
    )

    helpers = await session_store.list(agent="helper")
    paused = await session_store.list(status="paused")
    newest = await session_store.list(limit=1)

    assert sorted(summary.session_id for summary in helpers) == ["s_h1", "s_h2"]
    assert [summary.session_id for summary in paused] == ["s_h1"]
    assert [summary.session_id for summary in newest] == ["s_c1"]


async def test_list_reflects_the_status_of_the_latest_snapshot(session_store: SessionStore) -> None:
    await start_session(session_store, "s_snapped", "helper")
    await session_store.save_snapshot(snapshot("s_snapped", last_seq=1, status="ended", agent="helper"))

    ended = await session_store.list(status="ended")

    assert [summary.session_id for summary in ended] == ["s_snapped"]


async def test_session_end_event_marks_the_session_ended_in_list(session_store: SessionStore) -> None:
    await start_session(session_store, "s_end", "helper")
    await session_store.append("s_end", make_event(2, "session_end", reason="completed"))

    (summary,) = await session_store.list()

    assert summary.status == "ended"


@pytest.mark.parametrize("bad_id", ["", "..", "../escape", "a/b", "with space", "dot.ted", "x" * 65])
async def test_unsafe_session_ids_are_refused_before_touching_storage(
    session_store: SessionStore, bad_id: str
) -> None:
    with pytest.raises(InvalidName):
        await session_store.append(bad_id, make_event(1))
    with pytest.raises(InvalidName):
        await session_store.read(bad_id)
    with pytest.raises(InvalidName):
        await session_store.delete(bad_id)
    with pytest.raises(InvalidName):
        await session_store.last_seq(bad_id)
    with pytest.raises(InvalidName):
        await session_store.load_snapshot(bad_id)
    with pytest.raises(InvalidName):
        await session_store.save_snapshot(snapshot(bad_id))
    assert await session_store.list() == []


async def test_a_session_named_at_its_start_is_listed_with_its_name(session_store: SessionStore) -> None:
    await session_store.append(
        "s_named",
        make_event(1, "session_start", agent="helper", on_disconnect="pause", metadata={"name": "try-b"}),
    )
    await start_session(session_store, "s_plain", "helper")

    names = {s.session_id: s.name for s in await session_store.list()}

    assert names == {"s_named": "try-b", "s_plain": None}


async def test_a_listing_shows_the_start_of_the_first_message_a_person_sent(
    session_store: SessionStore,
) -> None:
    await start_session(session_store, "s_trip", "helper")
    await session_store.append(
        "s_trip",
        [
            make_event(2, content="what the group said before", turn=0, silent=True),
            make_event(3, content="  Plan my\n trip to   Lisbon ", turn=1),
            make_event(4, "assistant_message", content="Sure."),
            make_event(5, content="a later message", turn=2),
        ],
    )
    await start_session(session_store, "s_long", "helper")
    await session_store.append("s_long", [make_event(2, content="word " * 60, turn=1)])
    await start_session(session_store, "s_nul", "helper")
    await session_store.append("s_nul", [make_event(2, content="pasted\x00bytes", turn=1)])
    await start_session(session_store, "s_quiet", "helper")

    shown = {s.session_id: s.first_message for s in await session_store.list()}

    assert shown["s_trip"] == "Plan my trip to Lisbon"
    assert shown["s_long"] == " ".join(["word"] * (FIRST_MESSAGE_CHARS // 5)) + "…"  # whole words
    assert shown["s_nul"] == "pasted\x00bytes"
    assert shown["s_quiet"] is None


async def test_a_first_message_past_the_log_start_is_not_looked_for(session_store: SessionStore) -> None:
    await start_session(session_store, "s_busy", "helper")
    await session_store.append(
        "s_busy",
        [
            *(
                make_event(seq, "status_change", status="active")
                for seq in range(2, FIRST_MESSAGE_WITHIN + 1)
            ),
            make_event(FIRST_MESSAGE_WITHIN + 1, content="too far in", turn=1),
        ],
    )

    [summary] = await session_store.list()

    assert summary.first_message is None


async def test_pages_after_a_key_continue_the_listing_with_filters_and_ties(
    session_store: SessionStore,
) -> None:
    # Ten sessions, two agents, some paused, and pairs active at the same moment (ties break by id).
    for n in range(10):
        agent = "helper" if n % 3 else "coder"
        await start_session(session_store, f"s_{n:02d}", agent, at=START + timedelta(minutes=n // 2))
        if n % 4 == 0:
            await session_store.append(
                f"s_{n:02d}",
                make_event(2, "status_change", at=START + timedelta(minutes=n // 2), to="paused"),
            )
    everything = await session_store.list()
    expected_order = sorted(everything, key=list_key, reverse=True)
    assert [s.session_id for s in everything] == [s.session_id for s in expected_order]

    for filters in ({}, {"agent": "helper"}, {"status": "paused"}, {"agent": "coder", "status": "active"}):
        wanted = [s.session_id for s in await session_store.list(**filters)]
        for size in (1, 2, 3, 100):
            paged: list[str] = []
            after: ListKey | None = None
            while True:
                page = await session_store.list(**filters, limit=size, after=after)
                assert len(page) <= size
                paged += [s.session_id for s in page]
                if len(page) < size:
                    break
                after = list_key(page[-1])
            assert paged == wanted, (filters, size)


async def test_a_page_after_the_last_session_is_empty(session_store: SessionStore) -> None:
    await start_session(session_store, "s_only", "helper")
    (only,) = await session_store.list()

    assert await session_store.list(limit=5, after=list_key(only)) == []
    assert await session_store.list(after=(START + timedelta(days=1), "")) == [only]
