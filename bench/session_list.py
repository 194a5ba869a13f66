"""Milliseconds per page of `GET /api/v1/sessions` at the store, files and PostgreSQL, against another tree.

    python bench/session_list.py [--sessions 20000] [--runs 5] [--against DIR] [--pg-url URL]

Writes `--sessions` sessions once (in bulk, not through the store: a session directory with a
`session_start` line and a small `state.yaml` each, their files dated at their last activity as
a server that wrote them over time leaves them; on PostgreSQL, rows copied into a fresh schema of
each tree, migrated by that tree's own code, dropped afterwards), four agents, one session in ten
paused. Then each tree, in its own process, fetches the pages the route asks for: this tree's
store pages itself (`list(limit=51, after=cursor)`); a tree whose `list` takes no `after` (before
keyset pages) gets what its route did, every session, sorted and cut. Pages: the first, the
second, one a quarter of the way down, the first of one agent, the first of the paused. Each
figure is the median of `--runs` fetches. `--against DIR` is a clean tree holding another
`duragent/` (its own `.venv/bin/python` is used when it has one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parents[1]
START = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = ("helper", "coder", "writer", "ops")
LIMIT = 50
PAGES = ("first", "second", "quarter down", "agent=coder", "status=paused")


def plan(count: int) -> list[tuple[str, str, str, datetime]]:
    """(session id, agent, status, last activity) of every session, activity a second apart."""
    chooser = random.Random(7)
    moments = list(range(count))
    chooser.shuffle(moments)
    return [
        (
            f"s_{chooser.getrandbits(64):016x}",
            AGENTS[n % len(AGENTS)],
            "paused" if n % 10 == 0 else "active",
            START + timedelta(seconds=moments[n]),
        )
        for n in range(count)
    ]


def _line(seq: int, at: datetime, type: str, payload: dict[str, Any]) -> str:
    stamp = at.isoformat().replace("+00:00", "Z")
    record = {"seq": seq, "id": f"evt_{secrets.token_hex(8)}", "ts": stamp, "type": type, "payload": payload}
    return json.dumps(record, separators=(",", ":")) + "\n"


def write_files(root: Path, sessions: list[tuple[str, str, str, datetime]]) -> None:
    """A session directory each: events.jsonl and state.yaml, both dated at the session's activity."""
    from duragent.stores.base import SessionSnapshot
    from duragent.stores.filesystem.sessions import snapshot_to_yaml

    for session_id, agent, status, at in sessions:
        folder = root / session_id
        folder.mkdir(parents=True)
        lines = _line(1, at, "session_start", {"agent": agent, "on_disconnect": "pause", "metadata": {}})
        if status != "active":
            lines += _line(2, at, "status_change", {"from": "active", "to": status})
        (folder / "events.jsonl").write_text(lines)
        last_seq = 1 if status == "active" else 2
        snapshot = SessionSnapshot(session_id, agent, status, last_seq, at, at, on_disconnect="pause")  # type: ignore[arg-type]
        (folder / "state.yaml").write_bytes(snapshot_to_yaml(snapshot))
        for name in ("events.jsonl", "state.yaml"):
            os.utime(folder / name, (at.timestamp(), at.timestamp()))


async def fill_postgres(url: str, sessions: list[tuple[str, str, str, datetime]]) -> None:
    """Copy the sessions (a row and a session_start event each) into the migrated schema of `url`."""
    import asyncpg

    from duragent.stores.postgres.pool import parse_postgres_url

    target = parse_postgres_url(url)
    connection = await asyncpg.connect(target.dsn)
    try:
        rows = [(sid, agent, status, at, at, 1) for sid, agent, status, at in sessions]
        await connection.copy_records_to_table(
            "sessions",
            records=rows,
            columns=["id", "agent", "status", "created_at", "updated_at", "last_seq"],
            schema_name=target.schema,
        )
        events = [
            (sid, 1, f"evt_{n:08d}", at, "session_start", json.dumps({"agent": agent, "metadata": {}}))
            for n, (sid, agent, _, at) in enumerate(sessions)
        ]
        await connection.copy_records_to_table(
            "events",
            records=events,
            columns=["session_id", "seq", "id", "ts", "type", "payload"],
            schema_name=target.schema,
        )
        await connection.execute(f'ANALYZE "{target.schema}".sessions, "{target.schema}".events')
    finally:
        await connection.close()


async def fetch_page(
    store: Any, paged: bool, *, after: tuple[datetime, str] | None, **filters: str
) -> list[Any]:
    """One page (and one more session) as the tree's route fetches it."""
    if paged:
        return list(await store.list(**filters, limit=LIMIT + 1, after=after))
    # Before keyset pages: every session, sorted and cut by the route.
    everything = await store.list(**filters)

    def key(summary: Any) -> tuple[str, str]:
        return (summary.updated_at.isoformat().replace("+00:00", "Z"), summary.session_id)

    ordered = sorted(everything, key=key, reverse=True)
    if after is not None:
        bound = (after[0].isoformat().replace("+00:00", "Z"), after[1])
        ordered = [s for s in ordered if key(s) < bound]
    return ordered[: LIMIT + 1]


async def measure(store: Any, runs: int, quarter: tuple[datetime, str]) -> dict[str, float]:
    """Median milliseconds of each page in `PAGES`."""
    import inspect

    paged = "after" in inspect.signature(store.list).parameters
    first = await fetch_page(store, paged, after=None)
    second_after = (first[LIMIT - 1].updated_at, first[LIMIT - 1].session_id)
    asks: dict[str, tuple[tuple[datetime, str] | None, dict[str, str]]] = {
        "first": (None, {}),
        "second": (second_after, {}),
        "quarter down": (quarter, {}),
        "agent=coder": (None, {"agent": "coder"}),
        "status=paused": (None, {"status": "paused"}),
    }
    found: dict[str, float] = {}
    for name, (after, filters) in asks.items():
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            page = await fetch_page(store, paged, after=after, **filters)
            times.append((time.perf_counter() - started) * 1000)
            assert len(page) == LIMIT + 1, (name, len(page))
        found[name] = statistics.median(times)
    return found


async def child(tree: str, sessions_root: str, pg_url: str, count: int, runs: int) -> dict[str, Any]:
    """This process's tree: the pages of files and of PostgreSQL (a schema of its own)."""
    import asyncpg

    import duragent
    from duragent.stores.filesystem.sessions import FilesystemSessionStore
    from duragent.stores.postgres.pool import parse_postgres_url
    from duragent.stores.postgres.sessions import PostgresSessionStore
    from duragent.testing.postgres import with_schema

    assert duragent.__file__ is not None
    assert duragent.__file__.startswith(tree), duragent.__file__
    sessions = plan(count)
    ordered = sorted(((at, sid) for sid, _, _, at in sessions), reverse=True)
    quarter = ordered[count // 4]
    results: dict[str, Any] = {}
    files = FilesystemSessionStore(Path(sessions_root), fsync="never")
    try:
        results["files"] = await measure(files, runs, quarter)
    finally:
        await files.close()
    schema = f"duragent_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(parse_postgres_url(pg_url).dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    url = with_schema(pg_url, schema)
    database = PostgresSessionStore(url)
    try:
        await database.list(limit=1)  # opens the pool and migrates the schema with this tree's code
        await fill_postgres(url, sessions)
        results["postgres"] = await measure(database, runs, quarter)
    finally:
        await database.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    return results


def run_tree(tree: Path, sessions_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run `child` with `tree`'s duragent (and its own venv's Python, if it has one)."""
    python = tree / ".venv" / "bin" / "python"
    command = [str(python) if python.exists() else sys.executable, __file__, "--child", str(tree)]
    command += [str(sessions_root), args.pg_url, str(args.sessions), str(args.runs)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        tree, sessions_root, pg_url, count, runs = sys.argv[2:7]
        sys.path.insert(0, tree)
        print(json.dumps(asyncio.run(child(tree, sessions_root, pg_url, int(count), int(runs)))))
        return
    from duragent.testing.postgres import postgres_test_url

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="fetches of each page (the median is printed)")
    parser.add_argument("--against", type=Path, help="a directory holding another duragent/ tree")
    parser.add_argument("--pg-url", default=postgres_test_url())
    args = parser.parse_args()
    trees = {"this tree": _HERE}
    if args.against is not None:
        trees["against"] = args.against.resolve()
    with tempfile.TemporaryDirectory(prefix="duragent-bench-sessions-") as scratch:
        root = Path(scratch) / "sessions"
        started = time.perf_counter()
        write_files(root, plan(args.sessions))
        took = time.perf_counter() - started
        print(f"{args.sessions:,} sessions written in {took:.1f} s; ms per page of {LIMIT}:")
        results = {name: run_tree(tree, root, args) for name, tree in trees.items()}
    for backend in ("files", "postgres"):
        print(f"\n{backend:<16}" + "".join(f"{name:>14}" for name in trees))
        for page in PAGES:
            row = "".join(f"{results[name][backend][page]:>14.2f}" for name in trees)
            print(f"  {page:<14}{row}")


if __name__ == "__main__":
    main()
