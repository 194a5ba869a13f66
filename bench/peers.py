"""The same turn benchmark against `duragent serve` and, when installed, nanobot's `serve`.

    python bench/peers.py [--turns 1000] [--quick] [--nanobot PATH]

One instant fake model in its own process (`duragent.testing.fake_llm`, recording every request
body) answers both. Each system gets `--turns` turns in one session over HTTP with a synchronous
reply, in alternating blocks of 20 (duragent, then nanobot), and after each block the bodies it
sent the model are replayed straight to the fake: the overhead of a turn is its latency minus
that bare request, so each system is charged for what it adds, not for the model's parsing of
its (different) prompt.

- duragent: `duragent init` with an OpenAI-compatible agent on the fake model, the default
  configuration (fsync per turn, git on), `POST /api/v1/sessions/{id}/messages`.
- nanobot: `nanobot serve -c config.json -w WORKSPACE -p PORT` (found on PATH, or `--nanobot`),
  HOME set to a temporary folder, config.json: `agents.defaults = {workspace, model: "bench",
  provider: "custom"}`, `providers.custom = {apiKey: "sk-bench", apiBase: <fake>/v1}`, `api =
  {host: 127.0.0.1, port}`; everything else its defaults. `POST /v1/chat/completions` with
  `{"messages": [{"role": "user", ...}]}`, no `stream`: its one API session `api:default`.

Without nanobot installed it says so and measures duragent alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from serve_turn import (
    BLOCK,
    REPLY,
    Server,
    bare,
    free_port,
    load_average,
    make_workspace,
    ms,
    new_session,
    p99,
    start_fake_llm,
    start_server,
    turn,
)

from duragent.testing.fake_llm import read_recorded


@dataclass
class Peer:
    """One system under test: its server and how to run turn i."""

    name: str
    server: Server
    run_turn: Callable[[int], Awaitable[float]]
    turns: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    cpu: float = 0.0
    requests: int = 0


def launch_nanobot(executable: str, root: Path, llm_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """nanobot's OpenAI-compatible server on the fake model (configured as the docstring says)."""
    workspace = root / "workspace"
    workspace.mkdir(parents=True)
    port = free_port()
    config = {
        "agents": {"defaults": {"workspace": str(workspace), "model": "bench", "provider": "custom"}},
        "providers": {"custom": {"apiKey": "sk-bench", "apiBase": llm_url}},
        "api": {"host": "127.0.0.1", "port": port},
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    env = {**os.environ, "HOME": str(root)}
    with (root / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [executable, "serve", "-c", str(root / "config.json"), "-w", str(workspace), "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
    return process, f"http://127.0.0.1:{port}"


async def nanobot_ready(http: aiohttp.ClientSession, process: subprocess.Popen[bytes], url: str) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nanobot serve exited with {process.returncode}")
        try:
            async with http.get(f"{url}/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)


async def nanobot_turn(http: aiohttp.ClientSession, url: str, i: int) -> float:
    started = time.perf_counter()
    body = {"messages": [{"role": "user", "content": f"question number {i}"}]}
    async with http.post(f"{url}/v1/chat/completions", json=body) as response:
        data = await response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or REPLY.encode() not in data:
        raise RuntimeError(f"nanobot turn {i} failed: {response.status} {data[:300]!r}")
    return elapsed


async def run(turns: int, nanobot: str | None) -> None:
    print(f"load average at start: {load_average()}   ({os.cpu_count()} CPUs)")
    if nanobot is None:
        print("nanobot is not installed (pip install 'nanobot-ai[api]'): measuring duragent alone")
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
    with tempfile.TemporaryDirectory(prefix="duragent-peers-") as tmp:
        root = Path(tmp)
        fake, llm_url, record = start_fake_llm(root)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            peers: list[Peer] = []
            try:
                duragent = await start_server(make_workspace(root / "duragent", llm_url, git=True), http, env)
                session = await new_session(http, duragent)
                peers.append(Peer("duragent", duragent, lambda i: turn(http, duragent, session, i)))
                if nanobot is not None:
                    process, url = launch_nanobot(nanobot, root / "nanobot", llm_url)
                    started = time.perf_counter()
                    await nanobot_ready(http, process, url)
                    server = Server(root / "nanobot", process, url, time.perf_counter() - started)
                    peers.append(Peer("nanobot", server, lambda i: nanobot_turn(http, url, i)))
                await measure(http, turns, llm_url, record, peers)
            finally:
                for peer in peers:
                    peer.server.stop()
                fake.terminate()
                fake.wait(timeout=30)


async def measure(
    http: aiohttp.ClientSession, turns: int, llm_url: str, record: Path, peers: list[Peer]
) -> None:
    _, offset = read_recorded(record)
    cpu_start = {peer.name: peer.server.cpu_seconds() for peer in peers}
    for first in range(0, turns, BLOCK):
        block = range(first, min(first + BLOCK, turns))
        for peer in peers:
            times = [await peer.run_turn(i) for i in block]
            bodies, offset = read_recorded(record, offset)
            replays = await bare(http, llm_url, bodies)
            _, offset = read_recorded(record, offset)
            peer.turns += times
            peer.requests += len(bodies)
            if len(replays) == len(times):
                peer.overhead += [t - r for t, r in zip(times, replays, strict=True)]
            else:  # more model calls than turns (a consolidation): charge the block's model time evenly
                baseline = sum(replays) / len(times)
                peer.overhead += [t - baseline for t in times]
    for peer in peers:
        peer.cpu = peer.server.cpu_seconds() - cpu_start[peer.name]
    report(turns, peers)


def report(turns: int, peers: list[Peer]) -> None:
    window = min(50, max(1, turns // 4))
    print(f"turns per system: {turns} in one session, alternating blocks of {BLOCK}")
    header = f"{'':<30}" + "".join(f"{peer.name:>14}" for peer in peers)
    if len(peers) == 2:
        header += f"{'ratio':>10}"
    print(header)
    rows: list[tuple[str, Callable[[Peer], float], Callable[[float], str]]] = [
        ("turn p50 (ms)", lambda p: statistics.median(p.turns), ms),
        ("turn p99 (ms)", lambda p: p99(p.turns), ms),
        ("overhead p50 (ms)", lambda p: statistics.median(p.overhead), ms),
        ("overhead p99 (ms)", lambda p: p99(p.overhead), ms),
        (f"overhead turns 1-{window} (ms)", lambda p: statistics.median(p.overhead[:window]), ms),
        (f"overhead last {window} (ms)", lambda p: statistics.median(p.overhead[-window:]), ms),
        ("server CPU per turn (ms)", lambda p: p.cpu / turns, ms),
        ("peak RSS (MiB)", lambda p: p.server.memory_kib("VmHWM") / 1024, lambda v: f"{v:.1f}"),
        ("model requests", lambda p: float(p.requests), lambda v: f"{v:.0f}"),
    ]
    for label, value, fmt in rows:
        values = [value(peer) for peer in peers]
        line = f"{label:<30}" + "".join(f"{fmt(v):>14}" for v in values)
        if len(values) == 2 and values[0] > 0:
            line += f"{values[1] / values[0]:>9.1f}x"
        print(line)
    print(f"load average at the end: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 turns")
    parser.add_argument("--nanobot", help="the nanobot executable (default: `nanobot` on PATH)")
    args = parser.parse_args()
    nanobot = args.nanobot or shutil.which("nanobot")
    asyncio.run(run(200 if args.quick else args.turns, nanobot))


if __name__ == "__main__":
    main()
