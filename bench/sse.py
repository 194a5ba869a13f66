"""SSE relay: many sessions streaming through `duragent serve`, against the same clients reading the
fake LLM directly, in one run.

    python bench/sse.py [--sessions 200] [--chunks 500] [--quick]

Three processes, so the clients, the server and the model never share an event loop: the fake LLM
(`python -m duragent.testing.fake_llm`, two agents' worth: one instant, one paced), a real
`duragent serve`, and this script's clients.

- Throughput: every session asks the instant model for a reply of `--chunks` pieces at once;
  tokens/s = pieces received by all clients / wall time from the first request to the last
  byte. Pieces are counted in the text, not by events: the server relays pieces that reached it
  together as one `token` event. The same is measured reading the fake LLM's chat-completions stream directly.
- Latency per token: the paced model sends a piece every `--pace` ms on a fixed schedule and
  writes, per reply, when its first piece was due (`--timeline`, on the monotonic clock all
  processes share), so piece k was due at first + k * pace. A token's latency is its arrival at
  the client minus when it was due; p50/p99 over every token of every stream, read directly and
  through the server. The added latency is the difference (relayed minus direct, at each
  percentile). The turn's start-up (the durable user message, context, model request) happens
  before the model's first piece is due, so it is not counted here.

Targets (2 cores): >= 50,000 tokens/s relayed; p99 added latency <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from duragent.testing.fake_llm import start_process

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  model:
    provider: openai
    name: bench
    base_url: {url}
    api_key_env: BENCH_LLM_KEY
  system_prompt: You are a benchmark.
  session:
    on_disconnect: continue
"""


@dataclass
class StreamTimes:
    """When each token of one stream arrived (perf_counter seconds)."""

    arrivals: list[float]


def start_fake_llm(root: Path, name: str, chunks: int, pace: float) -> tuple[subprocess.Popen[str], str]:
    """A fake LLM process whose every reply is `chunks` pieces, `pace` seconds apart; it writes
    when each reply's first piece was due to `<root>/<name>.timeline`."""
    script = root / f"{name}.yaml"
    # Fixed-width pieces, one per chunk, so a client can count the tokens in any run of text.
    words = "".join(f"t{i:04d} " for i in range(chunks))
    script.write_text(f"default:\n  text: {words!r}\n  chunks: {chunks}\n  chunk_delay: {pace}\n")
    return start_process(script, timeline=root / f"{name}.timeline")


#: The server's duragent.yaml: the relay alone (no fsync, no git), or `--defaults`.
RELAY_ONLY = "session:\n  fsync: never\ngit:\n  enabled: false\n"


def start_server(root: Path, agents: dict[str, str], settings: str) -> tuple[subprocess.Popen[str], str]:
    """`duragent serve` on a free port over a fresh workspace, its duragent.yaml holding `settings`."""
    data = root / "data"
    for name, url in agents.items():
        folder = data / "agents" / name
        folder.mkdir(parents=True)
        (folder / "agent.yaml").write_text(AGENT_YAML.format(name=name, url=url))
    config = root / "duragent.yaml"
    config.write_text(f"data_dir: {data}\n{settings}")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (root / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "duragent", "-c", str(config), "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "BENCH_LLM_KEY": "sk-bench"},
    )
    return process, f"http://127.0.0.1:{port}"


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    """Until the server answers /livez."""
    for _ in range(400):
        try:
            async with http.get(f"{url}/livez") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("duragent serve did not start (see serve.log)")


async def arriving_lines(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[float, list[bytes]]]:
    """The body's complete lines as they arrive, a chunk at a time, with the chunk's arrival time.

    Reading whatever bytes are there and splitting them is far cheaper than aiohttp's line-by-line
    iteration, so the client is not what limits the measurement; tokens that arrived in the same
    chunk share its arrival time, which is when the client could first have seen them.
    """
    carry = b""
    async for data in response.content.iter_any():
        arrived = time.monotonic()  # the clock of the fake model's timeline
        lines = (carry + data).split(b"\n")
        carry = lines.pop()
        yield arrived, lines


#: One piece of the fake model's reply (`start_fake_llm`).
_TOKEN = re.compile(rb"t\d{4} ")


def tokens_in(line: bytes) -> int:
    """Pieces of reply text on one `data:` line: a chat-completions chunk (direct) or a `token`
    event (relayed; the server sends pieces that arrived together as one event). Other events
    (`done` repeats the whole reply) do not start with the content field and count nothing."""
    if line.startswith(b'data: {"content":') or (line.startswith(b"data: {") and b'"delta"' in line):
        return len(_TOKEN.findall(line))
    return 0


async def read_direct(http: aiohttp.ClientSession, llm_url: str, prompt: str = "go") -> StreamTimes:
    """One chat-completions stream read straight from the fake LLM."""
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    arrivals: list[float] = []
    async with http.post(f"{llm_url}/chat/completions", json=body) as response:
        async for arrived, lines in arriving_lines(response):
            count = sum(tokens_in(line) for line in lines)
            arrivals.extend([arrived] * count)
    return StreamTimes(arrivals)


async def read_relayed(
    http: aiohttp.ClientSession, url: str, session_id: str, prompt: str = "go"
) -> StreamTimes:
    """One turn streamed through the server (the pieces in its `token` events)."""
    arrivals: list[float] = []
    body = {"content": prompt}
    async with http.post(f"{url}/api/v1/sessions/{session_id}/stream", json=body) as response:
        async for arrived, lines in arriving_lines(response):
            for line in lines:
                if count := tokens_in(line):
                    arrivals.extend([arrived] * count)
                elif line.startswith(b"event: done") or line.startswith(b"event: error"):
                    return StreamTimes(arrivals)
    return StreamTimes(arrivals)


async def concurrently(
    n: int, read: Callable[[int], Awaitable[StreamTimes]]
) -> tuple[list[StreamTimes], float]:
    """Run `n` readers at once; their results and the wall time."""
    # What exists now is set-up: exempt it from collection, so this client's own GC pauses stay
    # short and are not counted against the server.
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    results = await asyncio.gather(*(read(i) for i in range(n)))
    return list(results), time.perf_counter() - started


def tokens_per_second(streams: list[StreamTimes], wall: float) -> float:
    """All tokens received over the wall time."""
    return sum(len(s.arrivals) for s in streams) / wall


def token_latencies(streams: dict[str, StreamTimes], timeline: Path, pace: float) -> list[float]:
    """Per token of every stream: arrival minus when the model had it due (from the timeline)."""
    due_first: dict[str, float] = {}
    for line in timeline.read_text().splitlines():
        record = json.loads(line)
        due_first[record["prompt"]] = record["first_piece_at"]
    latencies = []
    for prompt, stream in streams.items():
        first = due_first[prompt]
        latencies += [arrived - (first + k * pace) for k, arrived in enumerate(stream.arrivals)]
    return latencies


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def bench(sessions: int, chunks: int, pace: float, settings: str = RELAY_ONLY) -> dict[str, float]:
    """Run both measurements; returns the figures for the table."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        instant, instant_url = start_fake_llm(root, "instant", chunks, 0.0)
        paced_chunks = 40
        paced, paced_url = start_fake_llm(root, "paced", paced_chunks, pace)
        server, url = start_server(root, {"instant": instant_url, "paced": paced_url}, settings)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=600)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                await wait_ready(http, url)
                tokens = root / "data" / "run" / "tokens.json"
                if tokens.exists():  # a server that requires its API token gets it, like the CLI
                    http.headers["Authorization"] = f"Bearer {json.loads(tokens.read_text())['api_token']}"

                async def new_sessions(agent: str) -> list[str]:
                    ids = []
                    for _ in range(sessions):
                        async with http.post(f"{url}/api/v1/sessions", json={"agent": agent}) as r:
                            ids.append((await r.json())["session_id"])
                    return ids

                fast_ids, paced_ids = await new_sessions("instant"), await new_sessions("paced")
                await read_relayed(http, url, fast_ids[0])  # warm up imports and connections
                direct, direct_wall = await concurrently(sessions, lambda i: read_direct(http, instant_url))
                relayed, relay_wall = await concurrently(
                    sessions, lambda i: read_relayed(http, url, fast_ids[i])
                )
                paced_direct, _ = await concurrently(
                    sessions, lambda i: read_direct(http, paced_url, f"direct {i}")
                )
                paced_relayed, _ = await concurrently(
                    sessions, lambda i: read_relayed(http, url, paced_ids[i], f"relayed {i}")
                )
        finally:
            for process in (server, instant, paced):
                process.terminate()
            for process in (server, instant, paced):
                process.wait(timeout=30)
        expected = sessions * chunks
        received = sum(len(s.arrivals) for s in relayed)
        if received < expected:
            raise RuntimeError(f"relayed {received} of {expected} tokens: see the server log")
        timeline = root / "paced.timeline"
        direct_latency = token_latencies(
            {f"direct {i}": s for i, s in enumerate(paced_direct)}, timeline, pace
        )
        relayed_latency = token_latencies(
            {f"relayed {i}": s for i, s in enumerate(paced_relayed)}, timeline, pace
        )
        return {
            "direct_tps": tokens_per_second(direct, direct_wall),
            "relay_tps": tokens_per_second(relayed, relay_wall),
            "relay_wall": relay_wall,
            "p50_direct_ms": percentile(direct_latency, 50) * 1000,
            "p99_direct_ms": percentile(direct_latency, 99) * 1000,
            "p50_relayed_ms": percentile(relayed_latency, 50) * 1000,
            "p99_relayed_ms": percentile(relayed_latency, 99) * 1000,
        }


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=500, help="tokens per reply of the instant model")
    parser.add_argument(
        "--pace", type=float, default=50.0, help="ms between tokens of the paced model (below saturation)"
    )
    parser.add_argument("--quick", action="store_true", help="40 sessions x 100 tokens")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="the server with the default configuration (fsync per turn, git on) instead of the relay alone",
    )
    args = parser.parse_args()
    sessions, chunks = (40, 100) if args.quick else (args.sessions, args.chunks)
    result = asyncio.run(bench(sessions, chunks, args.pace / 1000, "" if args.defaults else RELAY_ONLY))
    ok_tps = result["relay_tps"] >= 50_000
    added_p50 = result["p50_relayed_ms"] - result["p50_direct_ms"]
    added_p99 = result["p99_relayed_ms"] - result["p99_direct_ms"]
    ok_latency = added_p99 <= 20
    print(f"SSE relay: {sessions} concurrent sessions x {chunks} tokens, {os.cpu_count()} CPUs")
    print(f"{'measure':<34}{'direct':>12}{'relayed':>12}{'target':>12}")
    print(
        f"{'tokens/s':<34}{result['direct_tps']:>12,.0f}{result['relay_tps']:>12,.0f}"
        f"{'>= 50,000':>12} {'ok' if ok_tps else 'MISSED'}"
    )
    print(
        f"{'latency per token p50 (ms)':<34}{result['p50_direct_ms']:>12.2f}{result['p50_relayed_ms']:>12.2f}"
    )
    print(
        f"{'latency per token p99 (ms)':<34}{result['p99_direct_ms']:>12.2f}{result['p99_relayed_ms']:>12.2f}"
    )
    print(f"{'added by the server, p50 (ms)':<34}{'':>12}{added_p50:>12.2f}")
    print(
        f"{'added by the server, p99 (ms)':<34}{'':>12}{added_p99:>12.2f}"
        f"{'<= 20':>12} {'ok' if ok_latency else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
