"""Runtime overhead per turn against an instant fake LLM, compared in the same run with a bare
aiohttp request to that server; plus turn latency with git on vs off, and as a session grows.

    python bench/turn.py [--turns N] [--quick]

What a turn includes: the durable appends (user message, assistant message, fsync per batch),
the state.yaml snapshot every 20 events, context assembly (prompts, memory, history), one
streamed model call, and — with git on — handing the changed paths to the background committer.
The fake model runs in its own process; the bare baseline replays each turn's exact request
body (already encoded) in the same order, so turn i is compared with a request that makes the
fake parse the same history, and everything else — encoding the request included — counts as
Duragent's overhead.
Targets: <= 2 ms median overhead per simple turn; git on / git off <= 1.05; overhead flat as
the session grows (turns 951-1000 cost what turns 1-50 cost).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp

from duragent.config import load_config
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.types import LLMRequest
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import start_process
from duragent.workspace import Workspace

REPLY = "Sure, here is a short answer to that."


async def bare_requests(url: str, bodies: list[bytes]) -> list[float]:
    """Seconds per plain streamed chat completion read to the end, without Duragent.

    `bodies` are the exact requests the runtime sent, already encoded, so the fake server parses
    the same history in both measurements and everything else (including encoding the request)
    counts as Duragent's own work.
    """
    times = []
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as client:
        for body in bodies:
            started = time.perf_counter()
            async with client.post(f"{url}/chat/completions", data=body, headers=headers) as response:
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


def start_fake_llm(root: Path) -> tuple[subprocess.Popen[str], str]:
    """The fake model in its own process (its parsing is not Duragent's work), answering every
    request with REPLY in 8 pieces at once."""
    script = root / "reply.yaml"
    script.write_text(f"default:\n  text: {REPLY!r}\n  chunks: 8\n")
    return start_process(script)


@contextmanager
def recording_bodies(bodies: list[bytes]) -> Iterator[None]:
    """Keep every request body the OpenAI provider sends (for the bare requests to replay)."""
    encode = OpenAICompatProvider.encode_body

    def recording(self: OpenAICompatProvider, request: LLMRequest) -> bytes:
        body = encode(self, request)
        bodies.append(body)
        return body

    OpenAICompatProvider.encode_body = recording  # type: ignore[method-assign]
    try:
        yield
    finally:
        OpenAICompatProvider.encode_body = encode  # type: ignore[method-assign]


@asynccontextmanager
async def session_turns(root: Path) -> AsyncIterator[Callable[[int], Awaitable[float]]]:
    """A function running turn i of one session through Runtime.run_turn, returning its seconds."""
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

        async def turn(i: int) -> float:
            started = time.perf_counter()
            await drain(runtime.run_turn(session, agent, f"question number {i}"))
            return time.perf_counter() - started

        try:
            yield turn
        finally:
            await providers.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


#: Turns per block: git on, git off and the bare replays take turns a block at a time, so a
#: slower or faster spell of the machine falls on all three alike.
BLOCK = 20


async def main(turns: int) -> None:
    git_on: list[float] = []
    git_off: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        fake, url = start_fake_llm(Path(tmp))
        try:
            async with (
                session_turns(make_workspace(Path(tmp) / "on", url, git=True)) as on_turn,
                session_turns(make_workspace(Path(tmp) / "off", url, git=False)) as off_turn,
            ):
                for first in range(0, turns, BLOCK):
                    block = range(first, min(first + BLOCK, turns))
                    bodies: list[bytes] = []
                    with recording_bodies(bodies):
                        git_on += [await on_turn(i) for i in block]
                    git_off += [await off_turn(i) for i in block]
                    bare += await bare_requests(url, bodies)
        finally:
            fake.terminate()
            fake.wait(timeout=30)
    on_p50, off_p50 = statistics.median(git_on), statistics.median(git_off)
    # Turn i against the bare replay of turn i's own request (the same history to parse).
    overhead = [turn - replay for turn, replay in zip(git_on, bare, strict=True)]
    window = min(50, turns // 4)
    early, late = statistics.median(git_on[:window]), statistics.median(git_on[-window:])
    bare_early, bare_late = statistics.median(bare[:window]), statistics.median(bare[-window:])
    early_overhead = statistics.median(overhead[:window])
    late_overhead = statistics.median(overhead[-window:])
    print(f"turns per run: {turns}")
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}")
    for label, values in (
        ("bare aiohttp request", bare),
        ("turn, git on", git_on),
        ("turn, git off", git_off),
    ):
        p99 = statistics.quantiles(values, n=100)[98]
        print(f"{label:<34}{ms(statistics.median(values)):>9}{ms(p99):>9}")
    print(f"overhead per turn (git on - bare)   {ms(statistics.median(overhead))} ms   (target <= 2 ms)")
    print(f"git on / git off                    {on_p50 / off_p50:.3f}     (target <= 1.05)")
    print(f"first {window} turns vs last {window}:")
    print(f"  turn                            {ms(early)} ms -> {ms(late)} ms")
    print(f"  bare request (same bodies)      {ms(bare_early)} ms -> {ms(bare_late)} ms")
    print(f"  overhead                        {ms(early_overhead)} ms -> {ms(late_overhead)} ms  (flat?)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS                            {peak:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 turns")
    args = parser.parse_args()
    asyncio.run(main(200 if args.quick else args.turns))
