"""Filesystem specifics of the SessionStore: the files a person reads, tail repair, locks, fsync modes."""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from duragent.errors import InvalidName
from duragent.ids import new_id
from duragent.stores.base import (
    Change,
    SequenceConflict,
    SessionEvent,
    SessionLocked,
    SessionReadOptions,
    SessionSnapshot,
    StorageUnavailable,
)
from duragent.stores.filesystem.atomic import write_atomic
from duragent.stores.filesystem.sessions import (
    ConversationYaml,
    FilesystemSessionStore,
    FsyncMode,
    snapshot_to_yaml,
)
from tests.waiting import until

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_event(seq: int, type: str = "user_message", **payload: Any) -> SessionEvent:
    return SessionEvent(seq, new_id("evt"), START + timedelta(seconds=seq), type, payload)


def events(first: int, last: int, **payload: Any) -> list[SessionEvent]:
    return [make_event(seq, **payload) for seq in range(first, last + 1)]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = FilesystemSessionStore(tmp_path / "sessions")
    yield opened
    await opened.close()


def log_path(tmp_path: Path, session_id: str) -> Path:
    return tmp_path / "sessions" / session_id / "events.jsonl"


def insert_after_first_line(path: Path, garbage: bytes) -> None:
    """Damage a log the way a bad hand edit does: a broken line between two good ones."""
    first, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(first + b"\n" + garbage + rest)


# --- the files on disk ---------------------------------------------------------------------------


async def test_events_jsonl_is_one_compact_json_object_per_line(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    await store.append(
        "s_cat", [make_event(1, "session_start", agent="helper"), make_event(2, content="ünï")]
    )

    lines = log_path(tmp_path, "s_cat").read_text(encoding="utf-8").splitlines()

    assert len(lines) == 2
    record = json.loads(lines[1])
    assert list(record) == ["seq", "id", "ts", "type", "payload"]
    assert record["ts"] == "2026-03-01T09:00:02Z"
    assert record["payload"] == {"content": "ünï"}
    assert ", " not in lines[1], "compact"
    assert "ünï" in lines[1], "UTF-8 as is, so grep finds it"


async def test_state_yaml_is_plain_readable_yaml_next_to_the_log(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    await store.append("s_yaml", make_event(1))
    await store.save_snapshot(
        SessionSnapshot("s_yaml", "helper", "paused", 1, START, START, conversation=[{"role": "user"}])
    )

    text = (tmp_path / "sessions" / "s_yaml" / "state.yaml").read_text()

    assert "status: paused\n" in text
    assert "created_at: '2026-03-01T09:00:00Z'\n" in text
    assert "- role: user\n" in text
    assert yaml.safe_load(text)["last_seq"] == 1


async def test_saving_a_snapshot_leaves_no_temp_files(store: FilesystemSessionStore, tmp_path: Path) -> None:
    await store.append("s_tmp", make_event(1))
    for status in ("active", "paused", "ended"):
        await store.save_snapshot(SessionSnapshot("s_tmp", "helper", status, 1, START, START))

    names = sorted(path.name for path in (tmp_path / "sessions" / "s_tmp").iterdir())

    assert names == [".lock", "events.jsonl", "state.yaml"]


async def test_a_snapshot_the_full_disk_refuses_keeps_the_last_whole_one_and_names_the_file(
    store: FilesystemSessionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.append("s_full", make_event(1))
    await store.save_snapshot(SessionSnapshot("s_full", "helper", "active", 1, START, START))
    state = tmp_path / "sessions" / "s_full" / "state.yaml"
    whole = state.read_bytes()
    real_write = os.write

    def write_until_full(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            real_write(fd, bytes(data)[:10])  # some bytes fit, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_until_full)
    with pytest.raises(StorageUnavailable, match=f"cannot write {state}: No space left on device") as raised:
        await store.save_snapshot(SessionSnapshot("s_full", "helper", "paused", 1, START, START))

    assert raised.value.errno == errno.ENOSPC  # (still an OSError to code that handles one)
    assert state.read_bytes() == whole
    assert sorted(path.name for path in state.parent.iterdir()) == [".lock", "events.jsonl", "state.yaml"]


def test_atomic_write_replaces_the_whole_file_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    target = folder / "note.md"
    target.write_text("old")

    write_atomic(target, b"new contents")

    assert target.read_text() == "new contents"
    assert [path.name for path in folder.iterdir()] == ["note.md"]


async def test_a_snapshot_of_another_session_copied_in_is_ignored(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    await store.append("s_src", make_event(1))
    await store.append("s_dst", make_event(1))
    await store.save_snapshot(SessionSnapshot("s_src", "helper", "active", 1, START, START))
    source = tmp_path / "sessions" / "s_src" / "state.yaml"
    (tmp_path / "sessions" / "s_dst" / "state.yaml").write_bytes(source.read_bytes())

    assert await store.load_snapshot("s_dst") is None


async def test_redaction_happens_before_the_event_reaches_disk(tmp_path: Path) -> None:
    def hide_keys(payload: dict[str, Any]) -> dict[str, Any]:
        return {
            key: str(value).replace("sk-secret123", "[REDACTED:OPENAI_API_KEY]")
            for key, value in payload.items()
        }

    store = FilesystemSessionStore(tmp_path / "sessions", redact=hide_keys)
    await store.append("s_secret", make_event(1, content="my key is sk-secret123"))
    await store.close()

    text = log_path(tmp_path, "s_secret").read_text()
    assert "sk-secret123" not in text
    assert "my key is [REDACTED:OPENAI_API_KEY]" in text


async def test_appends_go_on_while_a_snapshot_is_being_written(tmp_path: Path) -> None:
    # The snapshot's thread is held while it renders the conversation (its redaction runs there),
    # so the append below can only complete if it does not wait for that write.
    rendering, release = threading.Event(), threading.Event()

    def held_while_rendering(payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("content") == "held":
            rendering.set()
            release.wait(30)
        return payload

    store = FilesystemSessionStore(tmp_path / "sessions", redact=held_while_rendering)
    try:
        await store.append("s_busy", make_event(1))
        snapshot = SessionSnapshot(
            "s_busy", "helper", "active", 1, START, START, conversation=[{"role": "user", "content": "held"}]
        )
        writing = asyncio.ensure_future(store.save_snapshot(snapshot))
        assert await asyncio.to_thread(rendering.wait, 30)

        await asyncio.wait_for(store.append("s_busy", make_event(2)), 10)

        assert not writing.done()
        assert [event.seq for event in await store.read("s_busy")] == [1, 2]
        release.set()
        await writing
        assert yaml.safe_load((tmp_path / "sessions" / "s_busy" / "state.yaml").read_text())["last_seq"] == 1
    finally:
        release.set()
        await store.close()


# --- change notifications ------------------------------------------------------------------------


async def test_every_write_tells_the_committer_what_changed(tmp_path: Path) -> None:
    changes: list[Change] = []
    store = FilesystemSessionStore(tmp_path / "sessions", on_change=changes.append)
    events_file = log_path(tmp_path, "s_git")

    await store.append("s_git", make_event(1, "session_start", agent="helper"))
    await store.append(
        "s_git", [make_event(2, "user_message", turn=12), make_event(3, "assistant_message", turn=12)]
    )
    await store.save_snapshot(SessionSnapshot("s_git", "helper", "active", 3, START, START))
    await store.delete("s_git")

    assert [(change.paths, change.subject, change.summary) for change in changes] == [
        ((events_file,), "s_git", "+1 event"),
        ((events_file,), "s_git", "turn 12 (+2 events)"),
        ((events_file.with_name("state.yaml"),), "s_git", "snapshot at seq 3"),
        ((events_file.parent,), "s_git", "deleted"),
    ]
    assert changes[1].details == ("user_message", "assistant_message")
    assert {change.kind for change in changes} == {"session"}


# --- tail repair and corrupt lines ---------------------------------------------------------------


async def test_a_torn_last_line_is_cut_off_and_kept_in_a_corrupt_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = FilesystemSessionStore(tmp_path / "sessions")
    await first.append("s_torn", events(1, 3))
    await first.close()
    path = log_path(tmp_path, "s_torn")
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"seq":4,"id":"evt_')

    store = FilesystemSessionStore(tmp_path / "sessions")
    with caplog.at_level(logging.WARNING):
        assert [event.seq for event in await store.read("s_torn")] == [1, 2, 3]  # reading repairs nothing
        await store.append("s_torn", make_event(4))
    await store.close()

    (recovered,) = store.recovered
    assert recovered.session_id == "s_torn"
    assert recovered.saved_to.read_bytes() == b'{"seq":4,"id":"evt_'
    assert recovered.size == len(b'{"seq":4,"id":"evt_')
    assert path.read_bytes().startswith(intact)
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert "cut 19 bytes" in caplog.text


async def test_several_garbage_lines_at_the_end_are_all_cut(tmp_path: Path) -> None:
    first = FilesystemSessionStore(tmp_path / "sessions")
    await first.append("s_junk", events(1, 2))
    await first.close()
    path = log_path(tmp_path, "s_junk")
    path.write_bytes(path.read_bytes() + b"not json\n\x00\x00\x00\n{broken\n")

    store = FilesystemSessionStore(tmp_path / "sessions")
    assert await store.last_seq("s_junk") == 2
    await store.append("s_junk", make_event(3))
    await store.close()

    assert store.recovered[0].saved_to.read_bytes() == b"not json\n\x00\x00\x00\n{broken\n"
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3]


async def test_a_complete_last_line_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    first = FilesystemSessionStore(tmp_path / "sessions")
    await first.append("s_nonl", events(1, 2))
    await first.close()
    path = log_path(tmp_path, "s_nonl")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # as an editor might save it

    store = FilesystemSessionStore(tmp_path / "sessions")
    await store.append("s_nonl", make_event(3))
    await store.close()

    assert store.recovered == []
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3]


async def test_a_corrupt_line_in_the_middle_is_skipped_with_a_warning(
    store: FilesystemSessionStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.append("s_mid", events(1, 2))
    await store.close()
    insert_after_first_line(log_path(tmp_path, "s_mid"), b"{this line was mangled by hand}\n")
    reopened = FilesystemSessionStore(tmp_path / "sessions")
    await reopened.append("s_mid", make_event(3))

    with caplog.at_level(logging.WARNING):
        read_back = await reopened.read("s_mid")
    await reopened.close()

    assert [event.seq for event in read_back] == [1, 2, 3]
    assert "skipped 1 corrupt line" in caplog.text
    assert reopened.recovered == [], "only the tail is repaired; the middle line stays for a person to see"


async def test_resuming_from_the_end_reads_only_the_tail_of_the_log(
    store: FilesystemSessionStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.append("s_long", events(1, 3000, content="x" * 100))
    await store.close()
    # Damage near the start: a read of the whole log would warn about it.
    insert_after_first_line(log_path(tmp_path, "s_long"), b"garbage near the start\n")
    store = FilesystemSessionStore(tmp_path / "sessions")

    with caplog.at_level(logging.WARNING):
        tail = await store.read("s_long", SessionReadOptions(after_seq=2950))
        summaries = await store.list()
    assert "corrupt" not in caplog.text
    with caplog.at_level(logging.WARNING):
        await store.read("s_long")
    await store.close()

    assert [event.seq for event in tail] == list(range(2951, 3001))
    assert summaries[0].last_seq == 3000
    assert "skipped 1 corrupt line" in caplog.text


async def test_a_line_still_being_written_is_invisible_to_readers(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    await store.append("s_partial", events(1, 2))
    with log_path(tmp_path, "s_partial").open("ab") as log_file:
        log_file.write(b'{"seq":3,"id":"e')

    reader = FilesystemSessionStore(tmp_path / "sessions")
    assert [event.seq for event in await reader.read("s_partial")] == [1, 2]
    assert await reader.last_seq("s_partial") == 2


# --- fsync modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["turn", "always", "never"])
@pytest.mark.parametrize("inline_fsync_max_seconds", [0.0, 1.0])
async def test_every_fsync_mode_stores_the_same_log(
    tmp_path: Path, mode: FsyncMode, inline_fsync_max_seconds: float
) -> None:
    store = FilesystemSessionStore(
        tmp_path / "sessions", fsync=mode, inline_fsync_max_seconds=inline_fsync_max_seconds
    )
    for batch_start in range(1, 13, 3):
        await store.append("s_sync", events(batch_start, batch_start + 2))
    await store.append("s_sync", make_event(13, content="y" * 100_000))  # a large write, off the loop
    await store.close()

    lines = log_path(tmp_path, "s_sync").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 14))


async def test_fsync_leaves_the_event_loop_once_another_session_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an fsync on the loop stalls every other session's stream: inline only while one session writes
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="turn", inline_fsync_max_seconds=1.0)
    fsynced_in: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        fsynced_in.append(threading.get_ident())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    loop_thread = threading.get_ident()

    async def fsynced_on_the_loop(session_id: str, seq: int) -> bool:
        fsynced_in.clear()
        await store.append(session_id, make_event(seq))
        return fsynced_in[-1] == loop_thread

    assert not await fsynced_on_the_loop("s_one", 1)  # the first fsync is timed in a thread
    assert await fsynced_on_the_loop("s_one", 2)  # fast, and the only session writing
    assert not await fsynced_on_the_loop("s_two", 1)
    assert not await fsynced_on_the_loop("s_one", 3)
    await store.close()


async def test_closing_the_store_waits_for_an_append_still_fsyncing_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a server shutting down while a turn's fsync runs in a thread: the log's descriptor stays
    # open until that fsync ends, and the event it made durable stays in the log
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="turn", inline_fsync_max_seconds=0.0)
    await store.append("s_one", make_event(1))  # the log is open; every fsync now runs in a thread
    fsyncing, finish = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        fsyncing.set()
        finish.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    append = asyncio.ensure_future(store.append("s_one", make_event(2)))
    assert await asyncio.to_thread(fsyncing.wait, 10)
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # one turn of the loop: close has started and must be waiting
    assert not closing.done()
    finish.set()
    await append
    await closing
    reopened = FilesystemSessionStore(tmp_path / "sessions", fsync="turn")
    assert [event.seq for event in await reopened.read("s_one")] == [1, 2]
    await reopened.close()


class HeldFsync:
    """Stands in for `os.fsync`: each call waits until `release` is set, then fails if `fail` is."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.fail = False
        real_fsync = os.fsync

        def held_fsync(fd: int) -> None:
            self.started.set()
            self.release.wait(10)
            if self.fail:
                raise OSError(errno.EIO, "Input/output error")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", held_fsync)


async def held_unsynced_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[FilesystemSessionStore, HeldFsync, asyncio.Future[None]]:
    """A store whose session `s_one` holds event 1, durable, and event 2, written with its fsync
    held in the fsync thread (until `release`): the store, the fsync and event 2's future."""
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="turn", inline_fsync_max_seconds=1.0)
    await store.append("s_one", make_event(1))
    held = HeldFsync(monkeypatch)
    synced = await store.append_unsynced("s_one", make_event(2))
    assert await asyncio.to_thread(held.started.wait, 10)
    return store, held, synced


async def test_an_unsynced_append_is_written_at_once_and_read_once_its_fsync_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, held, synced = await held_unsynced_batch(tmp_path, monkeypatch)

    # written, its fsync still running in a thread: readers see the log's durable end only
    assert log_path(tmp_path, "s_one").read_bytes().count(b"\n") == 2
    assert not synced.done()
    assert [event.seq for event in await store.read("s_one")] == [1]
    assert [summary.last_seq for summary in await store.list()] == [1]
    assert await store.last_seq("s_one") == 1
    held.release.set()
    await synced
    assert [event.seq for event in await store.read("s_one")] == [1, 2]
    assert [summary.last_seq for summary in await store.list()] == [2]
    assert await store.last_seq("s_one") == 2
    await store.close()


async def test_the_next_append_waits_for_the_fsync_of_an_unsynced_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, held, synced = await held_unsynced_batch(tmp_path, monkeypatch)

    later = asyncio.ensure_future(store.append("s_one", make_event(3)))
    for _ in range(5):
        await asyncio.sleep(0)  # turns of the loop: it would have written by now without waiting
    assert not later.done()
    assert log_path(tmp_path, "s_one").read_bytes().count(b"\n") == 2
    held.release.set()
    await synced
    await later
    assert [event.seq for event in await store.read("s_one")] == [1, 2, 3]
    await store.close()


async def test_a_failed_fsync_of_an_unsynced_batch_cuts_it_off_and_the_log_goes_on_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes: list[Change] = []
    store = FilesystemSessionStore(
        tmp_path / "sessions", fsync="turn", inline_fsync_max_seconds=1.0, on_change=changes.append
    )
    await store.append("s_one", make_event(1))
    before = log_path(tmp_path, "s_one").read_bytes()
    held = HeldFsync(monkeypatch)
    held.fail = True
    held.release.set()

    synced = await store.append_unsynced("s_one", make_event(2))
    with pytest.raises(OSError, match="Input/output error"):
        await synced

    assert log_path(tmp_path, "s_one").read_bytes() == before  # ends on the last durable event
    assert len(changes) == 1  # the committer never heard of the batch that was cut off
    with pytest.raises(SequenceConflict):  # whoever goes on as if it were stored is stopped
        await store.append("s_one", make_event(3))
    held.fail = False
    await store.append("s_one", make_event(2, type="error"))
    assert [(event.seq, event.type) for event in await store.read("s_one")] == [
        (1, "user_message"),
        (2, "error"),
    ]
    await store.close()


@pytest.mark.parametrize("mode", ["never", "always"])
async def test_an_unsynced_append_needing_no_later_fsync_is_durable_when_it_returns(
    tmp_path: Path, mode: FsyncMode
) -> None:
    # "never" has no fsync to wait for; "always" fsyncs a batch line by line as it writes it
    store = FilesystemSessionStore(tmp_path / "sessions", fsync=mode)
    await store.append("s_one", make_event(1))
    synced = await store.append_unsynced("s_one", events(2, 3))
    assert synced.done()
    assert await store.last_seq("s_one") == 3
    await store.close()


async def test_releasing_a_session_waits_for_the_fsync_of_its_unsynced_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, held, synced = await held_unsynced_batch(tmp_path, monkeypatch)
    releasing = asyncio.ensure_future(store.release("s_one"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not releasing.done()  # closing the log under its fsync would fail it
    held.release.set()
    await synced
    await releasing
    assert [event.seq for event in await store.read("s_one")] == [1, 2]
    await store.close()


def test_an_unknown_fsync_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be"):
        FilesystemSessionStore(tmp_path, fsync="sometimes")  # type: ignore[arg-type]


async def test_concurrent_appends_from_one_process_are_serialised(store: FilesystemSessionStore) -> None:
    async def append_next() -> None:
        while True:
            seq = await store.last_seq("s_race") + 1
            try:
                await store.append("s_race", make_event(seq))
                return
            except SequenceConflict:  # lost the race for this seq: retry with the next one
                continue

    await asyncio.gather(*(append_next() for _ in range(20)))

    assert [event.seq for event in await store.read("s_race")] == list(range(1, 21))


# --- locks ---------------------------------------------------------------------------------------


async def test_a_second_store_in_the_same_process_cannot_write_a_held_session(
    store: FilesystemSessionStore, tmp_path: Path
) -> None:
    await store.append("s_mine", make_event(1))
    other = FilesystemSessionStore(tmp_path / "sessions")

    with pytest.raises(SessionLocked, match="session s_mine is in use by pid"):
        await other.append("s_mine", make_event(2))
    with pytest.raises(SessionLocked):
        await other.save_snapshot(SessionSnapshot("s_mine", "helper", "active", 1, START, START))
    assert await other.last_seq("s_mine") == 1

    await store.close()
    await other.append("s_mine", make_event(2))
    await other.close()


async def test_the_lock_file_names_the_writing_process(store: FilesystemSessionStore, tmp_path: Path) -> None:
    import os

    await store.append("s_pid", make_event(1))

    lock_text = (tmp_path / "sessions" / "s_pid" / ".lock").read_text()

    assert lock_text.splitlines() == [str(os.getpid()), "session s_pid"]


def test_invalid_session_ids_never_become_paths(tmp_path: Path) -> None:
    store = FilesystemSessionStore(tmp_path / "sessions")

    for bad in ("../outside", "a/b", ".", ""):
        with pytest.raises(InvalidName):
            store.session_dir(bad)
    assert not (tmp_path / "outside").exists()


def test_a_session_lock_held_for_a_moment_by_a_child_process_is_waited_for(tmp_path: Path) -> None:
    import subprocess
    import sys

    from duragent.stores.filesystem.locks import SessionLock

    # what a child started by another thread does between fork and exec: holds a copy of the
    # lock's descriptor (here: locks the file itself) for a moment, then lets go
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(tmp_path / '.lock')!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(0.3)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    lock = SessionLock(tmp_path, "s_mine")
    lock.acquire()  # waits the holder out instead of calling the session in use
    assert lock.held
    lock.release()
    assert holder.wait(10) == 0


def test_the_kept_conversation_yaml_renders_what_a_fresh_dump_renders_as_the_conversation_changes() -> None:
    entries: list[dict[str, Any]] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}: ünïcode\nsecond line"}
        for i in range(12)
    ]
    kept = ConversationYaml()

    def rendered(conversation: list[dict[str, Any]]) -> str:
        snapshot = SessionSnapshot("s_yaml", "a", "active", 1, START, START, conversation=conversation)
        text = snapshot_to_yaml(snapshot, kept).decode()
        return text[text.index("conversation:") : text.index("usage:")]

    for end in (1, 5, 5, 12):
        assert rendered(entries[:end]) == yaml.dump(
            {"conversation": entries[:end]}, sort_keys=False, allow_unicode=True, width=100
        )
    # A past rewritten (not done by sessions today, but a cache must not serve stale text).
    entries[3] = {"role": "assistant", "content": "a different reply"}
    assert rendered(entries[:8]) == yaml.dump(
        {"conversation": entries[:8]}, sort_keys=False, allow_unicode=True, width=100
    )
    assert rendered(entries[:2]) == yaml.dump(
        {"conversation": entries[:2]}, sort_keys=False, allow_unicode=True, width=100
    )
    assert rendered([]) == "conversation: []\n"


async def test_a_store_keeps_no_lock_for_sessions_it_has_released(tmp_path: Path) -> None:
    """A server that has served thousands of sessions holds nothing for the ones it unloaded."""
    store = FilesystemSessionStore(tmp_path / "sessions")
    for number in range(50):
        session_id = f"s_{number}"
        await store.append(session_id, events(1, 2))
        snapshot = SessionSnapshot(session_id, "a", "active", 2, START, START)
        await store.save_snapshot(snapshot)
        await store.release(session_id)
    await store.delete("s_0")
    assert (len(store._guards), len(store._snapshot_guards)) == (0, 0)
    await store.close()


async def _session_active_at(
    store: FilesystemSessionStore, session_id: str, at: datetime, touched: datetime
) -> None:
    """A session whose only activity is at `at` and whose files were last written at `touched`."""
    start = SessionEvent(1, new_id("evt"), at, "session_start", {"agent": "helper", "metadata": {}})
    await store.append(session_id, start)
    stamp = touched.timestamp()
    os.utime(store.events_path(session_id), (stamp, stamp))


async def test_a_page_never_reads_sessions_whose_files_are_older_than_it(
    store: FilesystemSessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    await _session_active_at(store, "s_new", START + timedelta(days=2), START + timedelta(days=2))
    await _session_active_at(store, "s_old", START, START)
    store.snapshot_path("s_old").write_text("{not: yaml")  # reading it would be a warning
    os.utime(store.snapshot_path("s_old"), (START.timestamp(), START.timestamp()))

    with caplog.at_level(logging.WARNING):
        page = await store.list(limit=1)

    assert [s.session_id for s in page] == ["s_new"]
    assert "s_old" not in caplog.text


async def test_pages_are_in_activity_order_when_files_were_written_in_another_order(
    store: FilesystemSessionStore,
) -> None:
    # Copied or migrated: every file written later than its activity, the oldest session last.
    written = START + timedelta(days=30)
    for n in range(6):
        await _session_active_at(store, f"s_{n}", START + timedelta(hours=n), written - timedelta(hours=n))

    first = await store.list(limit=4)
    rest = await store.list(limit=4, after=(first[-1].updated_at, first[-1].session_id))

    assert [s.session_id for s in first + rest] == ["s_5", "s_4", "s_3", "s_2", "s_1", "s_0"]


def _fsync_threads_alive() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("duragent-fsync-")}


async def test_fsync_threads_run_jobs_side_by_side_up_to_their_count_and_queue_the_rest() -> None:
    from duragent.stores.filesystem.sessions import _FsyncThreads

    before = _fsync_threads_alive()
    threads = _FsyncThreads(2)
    release = threading.Event()
    started: list[int] = []
    finished: list[int] = []

    def job(number: int) -> None:
        started.append(number)
        assert release.wait(30)
        finished.append(number)

    # one job at a time (a session's turns): one thread serves them all
    release.set()
    for number in range(3):
        threads.run(functools.partial(job, number))
        await until(lambda number=number: number in finished)
    assert len(_fsync_threads_alive() - before) == 1
    # three held at once: two run side by side, the third waits for one of them to end
    release.clear()
    for number in range(3, 6):
        threads.run(functools.partial(job, number))
    await until(lambda: len(started) == 5)
    assert sorted(started[3:]) == [3, 4]
    assert len(_fsync_threads_alive() - before) == 2
    release.set()
    await until(lambda: sorted(finished) == [0, 1, 2, 3, 4, 5])
    threads.stop()
    await until(lambda: not _fsync_threads_alive() - before)
