"""Runtime overhead per turn against an instant fake LLM, compared in the same run with a bare
aiohttp request to that server; plus turn latency with git on vs off, and as a session grows.

    python bench/turn.py [--turns N] [--quick]

What a turn includes: the durable appends (user message, assistant message, fsync per batch),
the state.yaml snapshot every 20 events, context assembly (prompts, memory, history), one
streamed model call, and — with git on — handing the changed paths to the background committer.
Targets: <= 2 ms median overhead per simple turn; git on / git off <= 1.05; flat as the
session grows (turns 951-1000 cost what turns 1-50 cost).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from duragent.config import load_config
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.workspace import Workspace

REPLY = "Sure, here is a short answer to that."


async def bare_requests(server: FakeLLMServer, bodies: list[dict[str, Any]]) -> list[float]:
    """Seconds per plain streamed chat completion read to the end, without Duragent.

    `bodies` are the exact requests the runtime sent, so the fake server parses the same
    history in both measurements and the difference is Duragent's own work.
    """
    times = []
    async with aiohttp.ClientSession() as client:
        for body in bodies:
            server.enqueue(text(REPLY, chunks=8))
            started = time.perf_counter()
            async with client.post(f"{server.url}/chat/completions", json=body) as response:
                async for _line in response.content:
                    pass
            times.append(time.perf_counter() - started)
    return times


def make_workspace(root: Path, url: str, *, git: bool) -> Path:
    init_workspace(root, provider=ProviderChoice("openai", "bench", "benchmark"), git=git)
    agent_yaml = root / ".duragent" / "agents" / "assistant" / "agent.yaml"
    text_ = agent_yaml.read_text().replace("name: bench", f"name: bench\n    base_url: {url}")
    agent_yaml.write_text(text_)
    if not git:
        config = root / "duragent.yaml"
        config.write_text(config.read_text() + "\ngit:\n  enabled: false\n")
    return root


async def runtime_turns(server: FakeLLMServer, root: Path, count: int) -> list[float]:
    """Seconds per turn through Runtime.run_turn, all turns in one session."""
    config = load_config(root / "duragent.yaml")
    async with Workspace(config, env={"OPENAI_API_KEY": "bench"}) as workspace:
        providers = ProviderPool({"OPENAI_API_KEY": "bench"})
        runtime = Runtime(
            provider_for=providers.for_agent,
            memory=workspace.stores.memory,
            artifacts=workspace.stores.artifacts,
            on_change=workspace.record_change,
        )
        agent = workspace.agents.get("assistant")
        session = await SessionLog.create(workspace.stores.sessions, agent=agent.name)
        times = []
        for i in range(count):
            server.enqueue(text(REPLY, chunks=8))
            started = time.perf_counter()
            await drain(runtime.run_turn(session, agent, f"question number {i}"))
            times.append(time.perf_counter() - started)
        await providers.close()
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


async def main(turns: int) -> None:
    async with FakeLLMServer() as server:
        with tempfile.TemporaryDirectory() as tmp:
            git_on = await runtime_turns(
                server, make_workspace(Path(tmp) / "on", server.url, git=True), turns
            )
            bodies = [request.body for request in server.requests[-turns:]]
            git_off = await runtime_turns(
                server, make_workspace(Path(tmp) / "off", server.url, git=False), turns
            )
        bare = await bare_requests(server, bodies)
    bare_p50 = statistics.median(bare)
    on_p50, off_p50 = statistics.median(git_on), statistics.median(git_off)
    window = min(50, turns // 4)
    early, late = statistics.median(git_on[:window]), statistics.median(git_on[-window:])
    print(f"turns per run: {turns}")
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}")
    for label, values in (
        ("bare aiohttp request", bare),
        ("turn, git on", git_on),
        ("turn, git off", git_off),
    ):
        p99 = statistics.quantiles(values, n=100)[98]
        print(f"{label:<34}{ms(statistics.median(values)):>9}{ms(p99):>9}")
    print(f"overhead per turn (git on - bare)   {ms(on_p50 - bare_p50)} ms   (target <= 2 ms)")
    print(f"git on / git off                    {on_p50 / off_p50:.3f}     (target <= 1.05)")
    print(
        f"first {window} turns vs last {window}        {ms(early)} ms -> {ms(late)} ms  (x{late / early:.2f})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS                            {peak:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 turns")
    args = parser.parse_args()
    asyncio.run(main(200 if args.quick else args.turns))
