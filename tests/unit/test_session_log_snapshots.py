"""SessionLog writes its periodic state.yaml snapshot in the background, once the session is quiet:
appends never wait for it."""

from __future__ import annotations

import asyncio
from typing import Any

from duragent.sessions.log import MAX_SNAPSHOT_INTERVAL, SNAPSHOT_SPACING, SessionLog, snapshot_interval
from duragent.sessions.state import SessionState
from duragent.sessions.stateless import InMemorySessionStore
from duragent.stores.base import SessionSnapshot, changes_by_person, person_acting
from tests.waiting import until


class HeldSnapshots(InMemorySessionStore):
    """Keeps every snapshot it is given; each write waits until `gate` is open."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.saved: list[int] = []

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().save_snapshot(snapshot)
        self.saved.append(snapshot.last_seq)


async def test_appends_return_while_the_periodic_snapshot_is_still_being_written() -> None:
    store = HeldSnapshots()
    log = SessionLog(store, SessionState(session_id="s_held"), snapshot_every=2)

    for turn in range(1, 4):
        await asyncio.wait_for(log.append("user_message", {"content": "hi", "turn": turn}), 10)
        await asyncio.wait_for(log.append("assistant_message", {"content": "hello"}), 10)
        if turn == 1:
            await asyncio.wait_for(store.entered.wait(), 10)  # due, and the session went quiet

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
    await asyncio.wait_for(store.entered.wait(), 10)
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


class CountedSnapshots(InMemorySessionStore):
    def __init__(self) -> None:
        super().__init__()
        self.saved: list[int] = []

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        await super().save_snapshot(snapshot)
        self.saved.append(snapshot.last_seq)


async def test_a_long_session_is_snapshotted_less_often_so_each_event_costs_the_same() -> None:
    """A snapshot rewrites the whole conversation: every 20 events, a session of thousands of
    messages would rewrite it hundreds of times (the bytes written growing with its square)."""
    store = CountedSnapshots()
    log = SessionLog(store, SessionState(session_id="s_long"), snapshot_every=20)
    for turn in range(1, 2001):
        await log.append("user_message", {"content": f"question {turn}", "turn": turn})
        await log.append("assistant_message", {"content": "an answer"})
        await log.settle()
    gaps = [later - earlier for earlier, later in zip([0, *store.saved], store.saved, strict=False)]
    assert gaps[:3] == [20, 20, 20]  # a short session: every `snapshot_every` events, as configured
    assert len(store.saved) < 40  # 4,000 events: 200 snapshots at a fixed 20
    assert max(gaps) <= MAX_SNAPSHOT_INTERVAL
    for gap, seq in zip(gaps, store.saved, strict=True):
        assert gap <= max(20, seq // SNAPSHOT_SPACING + 2), f"snapshot at seq {seq} after {gap} events"


def test_the_interval_is_the_configured_one_until_a_quarter_of_the_conversation_is_more() -> None:
    assert [snapshot_interval(20, length) for length in (0, 80, 84, 400, 10_000)] == [20, 20, 21, 100, 1000]
    assert snapshot_interval(5000, 10_000) == 5000  # a larger configured interval is kept


async def test_a_due_snapshot_waits_for_a_quiet_moment_unless_events_keep_coming(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Written between turns, not during the next one; but never put off past a few intervals."""
    # Quiet means a second here, not 50 ms: a busy test machine may stall that long between two
    # appends the test means to come back to back.
    monkeypatch.setattr("duragent.sessions.log.SNAPSHOT_QUIET", 1.0)
    store = CountedSnapshots()
    written = asyncio.Event()
    store.save_snapshot = _noting(store.save_snapshot, written)  # type: ignore[method-assign]
    log = SessionLog(store, SessionState(session_id="s_quiet"), snapshot_every=4)
    # (status changes: events that leave the conversation, and so the interval, as it is)
    for number in range(6):  # back to back: due at 4, overdue at 8
        await log.append("status_change", {"status": "active", "reason": f"change {number}"})
    assert store.saved == []
    await asyncio.wait_for(written.wait(), 10)  # quiet now: written without being asked
    assert store.saved == [6]

    for number in range(20):  # back to back: overdue every 8
        await log.append("status_change", {"status": "active", "reason": f"change {number}"})
        await asyncio.sleep(0)
    await log.settle()
    assert store.saved == [6, 14, 22, 26]


def _noting(save: Any, written: asyncio.Event) -> Any:
    async def noted(snapshot: SessionSnapshot) -> None:
        await save(snapshot)
        written.set()

    return noted


async def test_a_session_whose_events_never_pause_is_still_snapshotted(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Never quiet (a scripted client, a busy chat): snapshots come each time the conversation
    has doubled, so what a crash leaves to replay stays bounded."""
    monkeypatch.setattr("duragent.sessions.log.SNAPSHOT_QUIET", 3600.0)  # never quiet, however slow
    store = CountedSnapshots()
    log = SessionLog(store, SessionState(session_id="s_busy"), snapshot_every=20)
    for turn in range(1, 1001):  # back to back
        await log.append("user_message", {"content": f"question {turn}", "turn": turn})
        await log.append("assistant_message", {"content": "an answer"})
        await asyncio.sleep(0)  # (the loop runs between turns, as a server's does)
    await log.settle()
    assert 4 <= len(store.saved) <= 8  # 40, 80, 160 ... events: the new half rendered each time
    gaps = [later - earlier for earlier, later in zip([0, *store.saved], store.saved, strict=False)]
    assert max(gaps[:-1]) <= 2 * MAX_SNAPSHOT_INTERVAL


async def test_an_explicit_snapshot_replaces_a_due_one_rather_than_following_it() -> None:
    """Pausing or closing a session writes one snapshot, not the periodic one and then its own."""
    store = CountedSnapshots()
    log = SessionLog(store, SessionState(session_id="s_pause"), snapshot_every=2)
    await log.append("user_message", {"content": "hi", "turn": 1})
    await log.append("assistant_message", {"content": "hello"})  # due; waits for a quiet moment
    await log.snapshot()
    assert store.saved == [2]
    assert log._quiet_timer is None  # and none comes later


class SnapshotsWithTheirAuthor(InMemorySessionStore):
    """Notes, for each snapshot, whether it is being written as a person's change."""

    def __init__(self) -> None:
        super().__init__()
        self.by_person: list[bool] = []

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        await super().save_snapshot(snapshot)
        self.by_person.append(person_acting.get())


async def test_a_snapshot_a_persons_append_makes_due_is_still_the_agents() -> None:
    # An approval answer (a person's) can be the append that makes the snapshot due: state.yaml
    # holds the agent's conversation and is committed as the agent's all the same.
    store = SnapshotsWithTheirAuthor()
    log = SessionLog(store, SessionState(session_id="s_answer"), snapshot_every=2)
    await log.append("user_message", {"content": "hi", "turn": 1})
    with changes_by_person():
        await log.append("approval_decision", {"call_id": "c1", "decision": "allow_once"})
    await until(lambda: store.by_person)  # written once the session went quiet

    assert store.by_person == [False]
