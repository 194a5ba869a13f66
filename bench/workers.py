"""Stateless workers: turn throughput of 1, 2 and 4 `duragent serve` processes sharing PostgreSQL.

    python bench/workers.py [--sessions 32] [--turns 10] [--workers 1,2,4] [--pg-url URL]

Each configuration starts N workers on one fresh PostgreSQL schema (sessions and memory in
PostgreSQL, as in the deployment plan's stage 3) and an instant fake LLM in its own process,
then runs `--sessions` sessions concurrently, each sending `--turns` messages one after the other
to the worker that created it (a load balancer with session affinity). Reported: turns/s over
the whole run, the median turn latency seen by clients, and the scaling ratio against one
worker. On this 2-core machine the clients, the fake LLM, PostgreSQL and the workers share the
two cores, so more workers than cores cannot scale linearly; the ratio is reported as measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from sse import AGENT_YAML, start_fake_llm, wait_ready

from duragent.testing.postgres import postgres_test_url, temporary_schema


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_workers(
    root: Path, count: int, pg_url: str, llm_url: str
) -> tuple[list[subprocess.Popen[str]], list[str]]:
    """`count` workers with the same configuration (each its own local data dir for agents)."""
    processes, urls = [], []
    for index in range(count):
        data = root / f"worker{index}"
        folder = data / "agents" / "bench"
        folder.mkdir(parents=True)
        (folder / "agent.yaml").write_text(AGENT_YAML.format(name="bench", url=llm_url))
        config = root / f"worker{index}.yaml"
        config.write_text(
            f"data_dir: {data}\n"
            "services:\n"
            f"  session: {{backend: postgres, url: '{pg_url}'}}\n"
            f"  memory: {{backend: postgres, url: '{pg_url}'}}\n"
            "git:\n  enabled: false\n"
        )
        port = free_port()
        log = (root / f"worker{index}.log").open("w")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "duragent", "-c", str(config), "serve", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "BENCH_LLM_KEY": "sk-bench"},
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    return processes, urls


def api_headers(data: Path) -> dict[str, str]:
    """What a client of this worker sends: its API token, as the CLI reads it (each worker has its own)."""
    return {"Authorization": f"Bearer {json.loads((data / 'run' / 'tokens.json').read_text())['api_token']}"}


async def one_session(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], turns: int, latencies: list[float]
) -> None:
    async with http.post(f"{url}/api/v1/sessions", json={"agent": "bench"}, headers=headers) as response:
        if response.status not in (200, 201):
            raise RuntimeError(f"session not created: {response.status} {await response.text()}")
        session = (await response.json())["session_id"]
    for turn in range(turns):
        started = time.perf_counter()
        async with http.post(
            f"{url}/api/v1/sessions/{session}/messages", json={"content": f"message {turn}"}, headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"turn failed: {response.status} {await response.text()}")
            await response.read()
        latencies.append(time.perf_counter() - started)


async def run(count: int, sessions: int, turns: int, base_url: str, llm_url: str) -> tuple[float, float]:
    """(turns per second, median latency in ms) for `count` workers."""
    async with temporary_schema(base_url) as pg_url:
        with tempfile.TemporaryDirectory() as tmp:
            processes, urls = start_workers(Path(tmp), count, pg_url, llm_url)
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
                    for url in urls:
                        await wait_ready(http, url)
                    headers = [api_headers(Path(tmp) / f"worker{index}") for index in range(count)]
                    latencies: list[float] = []
                    started = time.perf_counter()
                    await asyncio.gather(
                        *(
                            one_session(http, urls[i % count], headers[i % count], turns, latencies)
                            for i in range(sessions)
                        )
                    )
                    elapsed = time.perf_counter() - started
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(30)
    return sessions * turns / elapsed, statistics.median(latencies) * 1000


async def main(options: argparse.Namespace) -> None:
    counts = [int(n) for n in options.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        llm, llm_url = start_fake_llm(Path(tmp), "instant", chunks=8, pace=0.0)
        try:
            results = {
                n: await run(n, options.sessions, options.turns, options.pg_url, llm_url) for n in counts
            }
        finally:
            llm.terminate()
            llm.wait(10)
    base = results[counts[0]][0]
    print(f"{options.sessions} sessions x {options.turns} turns, {os.cpu_count()} CPUs, state in PostgreSQL")
    print(f"{'workers':<10}{'turns/s':>10}{'p50 ms':>10}{'scaling':>10}")
    for count, (rate, p50) in results.items():
        print(f"{count:<10}{rate:>10.1f}{p50:>10.1f}{rate / base:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--pg-url", default=postgres_test_url())
    asyncio.run(main(parser.parse_args()))
