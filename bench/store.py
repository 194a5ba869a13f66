"""Session store benchmark: append latency against a bare write+fsync loop, and resume time.

    python bench/store.py            full run (about 10 s)
    python bench/store.py --quick    fewer iterations (a few seconds)
    python bench/store.py --dir D    benchmark on the filesystem holding D (default: the temp dir)

Targets (issue 4): append p50 <= 1.5x the bare os.write+os.fsync loop, one session writing
(with several sessions writing, fsync runs in a thread: shown apart, no target); resume (load_snapshot +
read the events after the snapshot) of a 100,000-event session <= 50 ms, and about the same
for 10,000 events (it grows with the tail, not with the log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from duragent.ids import new_id
from duragent.stores.base import SessionEvent, SessionReadOptions, SessionSnapshot
from duragent.stores.filesystem.sessions import FilesystemSessionStore

APPEND_TARGET_RATIO = 1.5
RESUME_TARGET_MS = 50.0
TAIL_EVENTS = 50


def make_event(seq: int) -> SessionEvent:
    """A typical user message: a sentence or two and a turn number."""
    content = "Please summarise the meeting notes from Tuesday and list the open action items."
    return SessionEvent(
        seq, new_id("evt"), datetime.now(UTC), "user_message", {"content": content, "turn": seq}
    )


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at `fraction` of the sorted list (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bare_write_fsync(path: Path, line: bytes, count: int) -> list[float]:
    """The floor: os.write of one line then os.fsync, on an O_APPEND file, timed per iteration."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, line)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return samples


async def store_appends(store: FilesystemSessionStore, session_id: str, count: int) -> list[float]:
    """FilesystemSessionStore.append of one event per call (fsync=turn), timed per call."""
    first = await store.last_seq(session_id) + 1
    samples = []
    for seq in range(first, first + count):
        event = make_event(seq)
        started = time.perf_counter()
        await store.append(session_id, event)
        samples.append(time.perf_counter() - started)
    return samples


async def bench_append(workdir: Path, count: int) -> dict[str, float]:
    """Alternate blocks of bare and store appends so both see the same disk conditions."""
    store = FilesystemSessionStore(workdir / "append", fsync="turn")
    line = (json.dumps(make_event(1).to_record(), separators=(",", ":")) + "\n").encode()
    # Warm-up on the measured session itself: it opens the log, takes the lock and learns the
    # fsync cost. (Another session writing would move fsyncs to a thread for a while: that is
    # the "sessions writing together" row, measured apart.)
    await store_appends(store, "s_append", 20)
    bare: list[float] = []
    ours: list[float] = []
    together: list[float] = []
    block = max(10, count // 10)
    for _ in range(0, count, block):
        bare += bare_write_fsync(workdir / "bare.jsonl", line, block)
        ours += await store_appends(store, "s_append", block)
    for _ in range(0, count, block):
        for session_id in ("s_append", "s_other"):
            together += await store_appends(store, session_id, block // 2)
    await store.close()
    return {
        "bare_p50": percentile(bare, 0.5),
        "bare_p99": percentile(bare, 0.99),
        "store_p50": percentile(ours, 0.5),
        "store_p99": percentile(ours, 0.99),
        "together_p50": percentile(together, 0.5),
        "together_p99": percentile(together, 0.99),
    }


async def build_session(root: Path, session_id: str, events: int) -> None:
    """A long session: `events` events, and a snapshot TAIL_EVENTS events before the end."""
    store = FilesystemSessionStore(root, fsync="never")
    for first in range(1, events + 1, 1000):
        await store.append(
            session_id, [make_event(seq) for seq in range(first, min(first + 1000, events + 1))]
        )
    now = datetime.now(UTC)
    conversation = [{"role": "user", "content": make_event(1).payload["content"]}] * 40
    await store.save_snapshot(
        SessionSnapshot(
            session_id, "helper", "active", events - TAIL_EVENTS, now, now, conversation=conversation
        )
    )
    await store.close()


async def resume_once(root: Path, session_id: str) -> tuple[float, int]:
    """What a restart does: a fresh store, load the snapshot, replay the events after it."""
    started = time.perf_counter()
    store = FilesystemSessionStore(root)
    snapshot = await store.load_snapshot(session_id)
    assert snapshot is not None
    tail = await store.read(session_id, SessionReadOptions(after_seq=snapshot.last_seq))
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed, len(tail)


async def bench_resume(workdir: Path, events: int, repeats: int) -> dict[str, float]:
    """Median resume time and, for contrast, one full replay of the same log."""
    root = workdir / f"resume-{events}"
    await build_session(root, "s_long", events)
    await resume_once(root, "s_long")  # first load imports pydantic: not part of a resume
    samples = []
    for _ in range(repeats):
        elapsed, replayed = await resume_once(root, "s_long")
        assert replayed == TAIL_EVENTS
        samples.append(elapsed)
    store = FilesystemSessionStore(root)
    started = time.perf_counter()
    everything = await store.read("s_long")
    full = time.perf_counter() - started
    assert len(everything) == events
    return {"resume_ms": statistics.median(samples) * 1000, "full_replay_ms": full * 1000}


def main() -> None:
    """Run the benchmarks and print a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (picks the filesystem)")
    options = parser.parse_args()
    appends, repeats = (300, 5) if options.quick else (3000, 30)

    with tempfile.TemporaryDirectory(prefix="duragent-bench-", dir=options.dir) as scratch:
        workdir = Path(scratch)
        append = asyncio.run(bench_append(workdir, appends))
        resumes = {
            events: asyncio.run(bench_resume(workdir, events, repeats)) for events in (10_000, 100_000)
        }

    ratio = append["store_p50"] / append["bare_p50"]
    print(f"append, 1 event per call, fsync=turn ({appends} calls, filesystem of {workdir.parent})")
    print(f"  {'':28}{'p50':>10}{'p99':>10}")
    rows = (
        ("bare os.write + os.fsync", "bare"),
        ("FilesystemSessionStore", "store"),
        ("  two sessions writing", "together"),  # fsync in a thread, off the event loop
    )
    for label, key in rows:
        print(f"  {label:28}{append[key + '_p50'] * 1e6:>8.0f}us{append[key + '_p99'] * 1e6:>8.0f}us")
    verdict = "ok" if ratio <= APPEND_TARGET_RATIO else "MISSED"
    print(
        f"  p50 ratio {ratio:.2f}x (target <= {APPEND_TARGET_RATIO}x: {verdict}); two sessions writing: "
        f"{append['together_p50'] / append['bare_p50']:.2f}x (fsync off the event loop, no target)"
    )
    print()
    print(f"resume = load_snapshot + read(after_seq=last_seq-{TAIL_EVENTS}), median of {repeats}")
    print(f"  {'events in log':>14}{'resume':>12}{'full replay':>14}")
    for events, result in resumes.items():
        print(f"  {events:>14,}{result['resume_ms']:>10.1f}ms{result['full_replay_ms']:>12.0f}ms")
    worst = max(result["resume_ms"] for result in resumes.values())
    verdict = "ok" if worst <= RESUME_TARGET_MS else "MISSED"
    print(f"  target <= {RESUME_TARGET_MS:.0f} ms at 100,000 events: {verdict}")


if __name__ == "__main__":
    main()
