"""Per-turn store overhead: sessions and memory on files vs in PostgreSQL, in one run.

    python bench/backends.py [--turns N] [--quick] [--pg-url URL]

Both runs send the same N turns through `Runtime.run_turn` + `SessionLog` against the instant
fake LLM (`duragent.testing.fake_llm.FakeLLMServer`), in a workspace made by `duragent init`
with git off in both (so the difference is the stores alone): once with `services.session` and
`services.memory` on files, once on PostgreSQL in a fresh schema (dropped afterwards). A turn
includes the durable appends, the snapshot every 20 events, and the memory reads of context
assembly. The PostgreSQL server is `--pg-url`, else `DURAGENT_TEST_PG_URL`, else the local default.

Target (issue 10): PostgreSQL costs <= 3 ms more per turn than files at the median.

Not measured here: throughput of 1, 2 and 4 workers sharing PostgreSQL. Any-worker routing of a
session (ownership locks, LISTEN/NOTIFY) is the stateless-workers part of issue 10, which is not
built yet; the workers benchmark that comes with it measures throughput and the scaling ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from duragent.config import load_config
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.postgres import postgres_test_url, with_schema
from duragent.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from turn import REPLY, make_workspace  # bench/ is not a package: import the sibling script

TARGET_EXTRA_MS = 3.0
WARMUP_TURNS = 10


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """A new, empty schema on the server at `url`; yields a URL selecting it, drops it at the end."""
    schema = f"duragent_bench_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(parse_postgres_url(url).dsn, timeout=5)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield with_schema(url, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


def use_postgres(root: Path, url: str) -> None:
    """Point the workspace's sessions and memory at PostgreSQL (artifacts stay on files)."""
    config = root / "duragent.yaml"
    document = yaml.safe_load(config.read_text())
    for service in ("session", "memory"):
        document["services"][service] = {"backend": "postgres", "url": url}
    config.write_text(yaml.safe_dump(document, sort_keys=False))


class TimedStore:
    """Passes every call through to a store, adding up the seconds its coroutines take, per method."""

    def __init__(self, store: Any, name: str, seconds: dict[str, float], calls: Counter[str]):
        self._store, self._name, self._seconds, self._calls = store, name, seconds, calls

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._store, attribute)
        if not inspect.iscoroutinefunction(value):
            return value
        key = f"{self._name}.{attribute}"

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            finally:
                self._seconds[key] += time.perf_counter() - started
                self._calls[key] += 1

        return timed


@dataclass
class Run:
    """Seconds per measured turn, and the seconds spent in each store method over those turns."""

    turns: list[float]
    store_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    store_calls: Counter[str] = field(default_factory=Counter)


async def turns(server: FakeLLMServer, root: Path, count: int) -> Run:
    """Turns through Runtime.run_turn, all in one session (warm-up turns dropped from every figure)."""
    config = load_config(root / "duragent.yaml")
    run = Run([])
    async with Workspace(config, env={"OPENAI_API_KEY": "bench"}) as workspace:
        providers = ProviderPool({"OPENAI_API_KEY": "bench"})
        memory = TimedStore(workspace.stores.memory, "memory", run.store_seconds, run.store_calls)
        sessions = TimedStore(workspace.stores.sessions, "session", run.store_seconds, run.store_calls)
        runtime = Runtime(
            provider_for=providers.for_agent,
            memory=memory,
            artifacts=workspace.stores.artifacts,
            on_change=workspace.record_change,
        )
        agent = workspace.agents.get("assistant")
        session = await SessionLog.create(sessions, agent=agent.name)  # type: ignore[arg-type]
        for i in range(count + WARMUP_TURNS):
            if i == WARMUP_TURNS:
                run.store_seconds.clear()
                run.store_calls.clear()
            server.enqueue(text(REPLY, chunks=8))
            started = time.perf_counter()
            await drain(runtime.run_turn(session, agent, f"question number {i}"))
            run.turns.append(time.perf_counter() - started)
        await providers.close()
    run.turns = run.turns[WARMUP_TURNS:]
    return run


def print_store_time(label: str, run: Run) -> None:
    """Average milliseconds per turn spent in each store method (calls per turn in brackets)."""
    count = len(run.turns)
    parts = [
        f"{key} {run.store_seconds[key] * 1000 / count:.2f} ({run.store_calls[key] / count:g}x)"
        for key in sorted(run.store_seconds, key=lambda key: -run.store_seconds[key])
    ]
    print(f"  {label}: " + ", ".join(parts))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


async def main(count: int, pg_url: str) -> int:
    async with FakeLLMServer() as server, fresh_schema(pg_url) as schema_url:
        with tempfile.TemporaryDirectory() as tmp:
            files_root = make_workspace(Path(tmp) / "files", server.url, git=False)
            postgres_root = make_workspace(Path(tmp) / "postgres", server.url, git=False)
            use_postgres(postgres_root, schema_url)
            files_run = await turns(server, files_root, count)
            postgres_run = await turns(server, postgres_root, count)
    on_files, on_postgres = files_run.turns, postgres_run.turns
    files_p50, postgres_p50 = statistics.median(on_files), statistics.median(on_postgres)
    extra_ms = (postgres_p50 - files_p50) * 1000
    print(f"turns per backend: {count} (after {WARMUP_TURNS} warm-up turns)")
    print(f"PostgreSQL: {parse_postgres_url(pg_url).describe()}")
    print(f"{'':<36}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    rows = (("sessions + memory on files", on_files), ("sessions + memory in PostgreSQL", on_postgres))
    for label, values in rows:
        cuts = statistics.quantiles(values, n=100)
        print(f"{label:<36}{ms(statistics.median(values)):>9}{ms(cuts[89]):>9}{ms(cuts[98]):>9}")
    print("store time per turn in ms (mean), by method:")
    print_store_time("files", files_run)
    print_store_time("PostgreSQL", postgres_run)
    verdict = "ok" if extra_ms <= TARGET_EXTRA_MS else "OVER TARGET"
    target = f"target <= {TARGET_EXTRA_MS:g} ms: {verdict}"
    print(f"PostgreSQL - files at the median    {extra_ms:+.2f} ms  ({target})")
    return 0 if extra_ms <= TARGET_EXTRA_MS else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="100 turns")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL server (default: DURAGENT_TEST_PG_URL)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(100 if args.quick else args.turns, args.pg_url or postgres_test_url())))
