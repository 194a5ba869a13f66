"""Durability against real processes: SIGKILL while appending, torn tails, locks held by other processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from duragent.ids import new_id
from duragent.stores.base import SessionEvent, SessionLocked, SessionReadOptions, SessionSnapshot
from duragent.stores.filesystem.locks import DataDirLock
from duragent.stores.filesystem.sessions import FilesystemSessionStore

WRITER = Path(__file__).with_name("session_writer.py")
KILL_ROUNDS = 50


def start_writer(*args: str) -> subprocess.Popen[str]:
    """session_writer.py in a new Python process, stdin/stdout piped."""
    return subprocess.Popen(
        [sys.executable, str(WRITER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def held_session(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another process that has appended to session s_held and keeps its lock."""
    root = tmp_path / "sessions"
    holder = start_writer("hold-session", str(root), "s_held")
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    yield root, holder
    holder.stdin.close()
    holder.wait(timeout=10)


def stored_lines(events_path: Path) -> list[dict[str, object]]:
    """Every complete line of a log, parsed; an unfinished last line (a write cut by the kill) is left out."""
    data = events_path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def acknowledged(acks_path: Path) -> list[int]:
    """The seqs the killed writer printed after append returned."""
    text = acks_path.read_text()
    return [int(line) for line in text[: text.rfind("\n") + 1].split()]


@pytest.mark.slow
def test_every_acknowledged_event_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    events_path = root / "s_crash" / "events.jsonl"
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    server = start_writer("fork-server", str(root), "s_crash", "turn")
    assert server.stdin is not None
    assert server.stdout is not None
    all_acked: list[int] = []
    try:
        for round_number in range(KILL_ROUNDS):
            acks_path = tmp_path / f"acks-{round_number}"
            server.stdin.write(f"spawn {acks_path}\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            deadline = time.monotonic() + 10
            while not (acks_path.exists() and acks_path.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.03))
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline().strip() == "exit"

            acked = acknowledged(acks_path)
            stored = [int(str(line["seq"])) for line in stored_lines(events_path)]
            context = f"seed {seed}, round {round_number}"
            assert acked, context
            assert stored == list(range(1, len(stored) + 1)), f"seqs not contiguous or duplicated ({context})"
            assert set(acked) <= set(stored), f"acknowledged events lost ({context})"
            all_acked.extend(acked)
    finally:
        server.stdin.close()
        server.wait(timeout=10)

    assert len(all_acked) == len(set(all_acked)), f"a seq was acknowledged twice (seed {seed})"
    events = asyncio.run(FilesystemSessionStore(root, fsync="never").read("s_crash"))
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert set(all_acked) <= {event.seq for event in events}


async def test_a_line_torn_by_a_killed_writer_is_cut_and_saved_when_the_session_reopens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "sessions"
    writer = start_writer("hold-session", str(root), "s_torn")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "held"
    writer.kill()
    writer.wait(timeout=10)
    events_path = root / "s_torn" / "events.jsonl"
    with events_path.open("ab") as log_file:  # what a write cut short by the kill leaves behind
        log_file.write(b'{"seq":2,"id":"evt_x","ts":"2026-03-01T09:00:00Z","type":"user_mes')

    store = FilesystemSessionStore(root)
    with caplog.at_level(logging.WARNING):
        await store.append("s_torn", SessionEvent(2, new_id("evt"), datetime.now(UTC), "user_message", {}))
    await store.close()

    assert [line["seq"] for line in stored_lines(events_path)] == [1, 2]
    (recovered,) = store.recovered
    assert recovered.saved_to.read_bytes().endswith(b'"type":"user_mes')
    assert recovered.saved_to.name.startswith("events.jsonl.corrupt-")
    assert "torn or corrupt" in caplog.text


async def test_a_second_process_cannot_write_a_session_another_process_holds(
    held_session: tuple[Path, subprocess.Popen[str]],
) -> None:
    root, holder = held_session
    store = FilesystemSessionStore(root)

    with pytest.raises(SessionLocked) as raised:
        await store.append("s_held", SessionEvent(2, new_id("evt"), datetime.now(UTC), "user_message", {}))
    with pytest.raises(SessionLocked):
        await store.delete("s_held")

    assert str(raised.value) == f"session s_held is in use by pid {holder.pid}"
    assert [event.seq for event in await store.read("s_held")] == [1], "reads never need the lock"
    await store.close()


async def test_a_session_lock_is_released_when_its_holder_is_killed(
    held_session: tuple[Path, subprocess.Popen[str]],
) -> None:
    root, holder = held_session
    holder.kill()
    holder.wait(timeout=10)
    store = FilesystemSessionStore(root)

    await store.append("s_held", SessionEvent(2, new_id("evt"), datetime.now(UTC), "user_message", {}))

    assert await store.last_seq("s_held") == 2
    await store.close()


def test_a_second_server_on_the_same_data_dir_is_refused_naming_the_first(tmp_path: Path) -> None:
    holder = start_writer("hold-datadir", str(tmp_path), "duragent serve on 127.0.0.1:8080")
    assert holder.stdout is not None
    assert holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SessionLocked) as raised:
            DataDirLock(tmp_path, "second serve").acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)

    assert str(raised.value) == (
        f"data directory {tmp_path} is in use by pid {holder.pid} (duragent serve on 127.0.0.1:8080)"
    )
    with DataDirLock(tmp_path, "second serve") as lock:  # free again once the first has exited
        assert lock.held


async def test_a_corrupt_snapshot_is_ignored_and_the_session_rebuilds_from_its_log(
    held_session: tuple[Path, subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    root, holder = held_session
    holder.kill()
    holder.wait(timeout=10)
    store = FilesystemSessionStore(root)
    now = datetime.now(UTC)
    await store.save_snapshot(SessionSnapshot("s_held", "helper", "active", 1, now, now))
    await store.close()
    snapshot_path = root / "s_held" / "state.yaml"
    snapshot_path.write_bytes(snapshot_path.read_bytes()[:40])  # a snapshot cut short

    reopened = FilesystemSessionStore(root)
    with caplog.at_level(logging.WARNING):
        snapshot = await reopened.load_snapshot("s_held")
    replay = await reopened.read("s_held", SessionReadOptions(after_seq=0))
    await reopened.close()

    assert snapshot is None
    assert "rebuilding from the log" in caplog.text
    assert [event.seq for event in replay] == [1]
