"""PostgreSQL session store beyond the contract: two writers, redaction, history, payload fidelity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from duragent.ids import new_id
from duragent.stores.base import Change, SequenceConflict, SessionEvent, SessionSnapshot
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.postgres import temporary_schema

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A URL selecting a fresh schema on the test server (dropped afterwards)."""
    async with temporary_schema() as url:
        yield url


def event(seq: int, type: str = "user_message", **payload: object) -> SessionEvent:
    return SessionEvent(seq, new_id("evt"), START + timedelta(seconds=seq), type, dict(payload))


async def append_until_done(store: PostgresSessionStore, session_id: str, writer: str, count: int) -> int:
    """Append `count` events, each at whatever seq is next, retrying on conflicts; returns conflicts seen."""
    conflicts = 0
    written = 0
    while written < count:
        seq = await store.last_seq(session_id) + 1
        try:
            await store.append(session_id, event(seq, writer=writer, n=written))
        except SequenceConflict:
            conflicts += 1
            continue
        written += 1
    return conflicts


async def test_two_stores_on_separate_pools_appending_to_one_session_never_duplicate_or_skip_a_seq(
    pg_url: str,
) -> None:
    first, second = PostgresSessionStore(pg_url), PostgresSessionStore(pg_url)
    try:
        await first.append("s_shared", event(1, "session_start", agent="helper"))
        await asyncio.gather(
            append_until_done(first, "s_shared", "a", 40), append_until_done(second, "s_shared", "b", 40)
        )
        events = await first.read("s_shared")
    finally:
        await first.close()
        await second.close()

    assert [stored.seq for stored in events] == list(range(1, 82))
    writers = [stored.payload.get("writer") for stored in events[1:]]
    assert writers.count("a") == 40
    assert writers.count("b") == 40


async def test_a_stale_writer_gets_a_sequence_conflict_naming_the_expected_seq(pg_url: str) -> None:
    first, second = PostgresSessionStore(pg_url), PostgresSessionStore(pg_url)
    try:
        await first.append("s_race", [event(1), event(2)])
        await second.append("s_race", event(3, content="second got there first"))
        with pytest.raises(SequenceConflict) as raised:
            await first.append("s_race", event(3, content="too late"))
        assert (raised.value.expected, raised.value.got) == (4, 3)
        assert [stored.payload.get("content") for stored in await first.read("s_race")][-1] == (
            "second got there first"
        )
    finally:
        await first.close()
        await second.close()


async def test_payloads_are_redacted_before_they_reach_the_database(pg_url: str) -> None:
    def redact(payload: dict[str, object]) -> dict[str, object]:
        return {key: ("[REDACTED]" if key == "token" else value) for key, value in payload.items()}

    store = PostgresSessionStore(pg_url, redact=redact)
    try:
        await store.append("s_secret", event(1, token="sk-live-123", content="hi"))
        assert (await store.read("s_secret"))[0].payload == {"token": "[REDACTED]", "content": "hi"}
    finally:
        await store.close()
    target = parse_postgres_url(pg_url)
    connection = await asyncpg.connect(target.dsn)
    try:
        stored = await connection.fetchval(f'SELECT payload::text FROM "{target.schema}".events')
    finally:
        await connection.close()
    assert "sk-live-123" not in stored


async def test_snapshots_are_redacted_before_they_reach_the_database(pg_url: str) -> None:
    def redact(payload: dict[str, object]) -> dict[str, object]:
        return {key: ("[REDACTED]" if key == "token" else value) for key, value in payload.items()}

    snapshot = SessionSnapshot(
        session_id="s_snap_secret",
        agent="helper",
        status="active",
        last_seq=0,
        created_at=START,
        updated_at=START,
        conversation=[{"role": "user", "content": "hi", "token": "sk-live-123"}],
        pending_approvals=[{"call_id": "c1", "token": "sk-live-123"}],
        metadata={"token": "sk-live-123"},
    )
    store = PostgresSessionStore(pg_url, redact=redact)
    try:
        await store.save_snapshot(snapshot)
        loaded = await store.load_snapshot("s_snap_secret")
    finally:
        await store.close()
    assert loaded is not None
    assert loaded.conversation == [{"role": "user", "content": "hi", "token": "[REDACTED]"}]
    assert loaded.pending_approvals == [{"call_id": "c1", "token": "[REDACTED]"}]
    assert loaded.metadata == {"token": "[REDACTED]"}


async def test_payload_text_with_nul_characters_and_any_unicode_round_trips(pg_url: str) -> None:
    store = PostgresSessionStore(pg_url)
    payload = {"output": "bin\x00ary ✓ 🧪", "nested": {"z": 1, "a": [1.5, None, True]}}
    try:
        await store.append("s_bytes", event(1, "tool_result", **payload))
        assert (await store.read("s_bytes"))[0].payload == payload
    finally:
        await store.close()


async def test_replaced_snapshots_are_kept_in_snapshot_history(pg_url: str) -> None:
    store = PostgresSessionStore(pg_url)
    base = SessionSnapshot("s_hist", "helper", "active", 1, START, START)
    try:
        await store.append("s_hist", event(1, "session_start", agent="helper"))
        await store.save_snapshot(base)
        await store.save_snapshot(SessionSnapshot("s_hist", "helper", "paused", 1, START, START))
        await store.save_snapshot(SessionSnapshot("s_hist", "helper", "ended", 1, START, START))
    finally:
        await store.close()
    target = parse_postgres_url(pg_url)
    connection = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
    try:
        history = await connection.fetch(
            "SELECT snapshot->>'status' AS status FROM snapshot_history"
            " WHERE session_id = 's_hist' ORDER BY id"
        )
    finally:
        await connection.close()
    assert [row["status"] for row in history] == ["active", "paused"]


async def test_on_change_is_never_called_because_git_does_not_cover_postgres(pg_url: str) -> None:
    changes: list[Change] = []
    store = PostgresSessionStore(pg_url, on_change=changes.append)
    try:
        await store.append("s_quiet", event(1))
        await store.delete("s_quiet")
    finally:
        await store.close()
    assert changes == []


async def test_a_store_can_share_a_pool_its_owner_keeps_open(pg_url: str) -> None:
    from duragent.stores.postgres.pool import create_pool

    target = parse_postgres_url(pg_url)
    pool = await create_pool(target)
    try:
        store = PostgresSessionStore(pool=pool, schema=target.schema)
        await store.append("s_pool", event(1))
        await store.close()
        assert await pool.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await pool.close()


async def test_a_session_named_with_a_nul_character_lists_like_any_other(pg_url: str) -> None:
    """PostgreSQL cannot make text of U+0000: one such name (from an API client) made every
    listing fail; the file store lists it."""
    store = PostgresSessionStore(pg_url)
    try:
        for session_id, name in (("s_odd", "a\x00b"), ("s_plain", "tea"), ("s_number", 7)):
            await store.append(session_id, event(1, "session_start", agent="helper", metadata={"name": name}))

        listed = {summary.session_id: summary.name for summary in await store.list()}
    finally:
        await store.close()

    assert listed == {"s_odd": "a\x00b", "s_plain": "tea", "s_number": None}
