"""How long a turn's guard work holds the event loop (every other session of the server waits
meanwhile): the snapshot of the guarded files around a batch of unasked tool calls, and the
allowed-command path check that matches a bash command's globs on the disk.

    python bench/guard_stall.py [--turns N] [--files N]

Each turn runs one auto-allowed bash call through `Runtime.run_turn` (the fake model in its own
process), while a heartbeat coroutine sleeps 0.5 ms at a time and notes the longest gap between
its wake-ups: that gap is how long any other session's turn would have waited. Three cases:
`true` in a small workspace (the baseline), `true` with `--files` files in a shared tool folder
(the snapshot walks them before and after the batch), and `cat */*9.txt` in a work folder holding
`--files` files (the path check matches the glob over all of them and resolves the tenth that
match; a glob matching more than 1,000 files, `cat */*`, is asked about instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from duragent.config import load_config
from duragent.file_stamps import SETTLE_NS
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import start_process
from duragent.workspace import Workspace

FOLDERS = 50


def make_workspace(root: Path, url: str) -> Path:
    """A workspace (git off) whose agent may run `true` and `cat *` unasked."""
    init_workspace(root, provider=ProviderChoice("openai", "bench", "benchmark"), git=False)
    agent = root / ".duragent" / "agents" / "assistant"
    text = (agent / "agent.yaml").read_text().replace("name: bench", f"name: bench\n    base_url: {url}")
    (agent / "agent.yaml").write_text(text.replace("- notify_user", "- notify_user\n      - bash"))
    (agent / "policy.yaml").write_text('mode: ask\nallow: ["bash:true", "bash:cat *"]\n')
    config = root / "duragent.yaml"
    config.write_text(config.read_text() + "\ngit:\n  enabled: false\n")
    return root


def fill(folder: Path, files: int) -> None:
    """`files` empty files in FOLDERS subfolders of `folder`."""
    for n in range(files):
        sub = folder / f"d{n % FOLDERS:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{n}.txt").touch()


def fill_tool_folder(folder: Path, files: int) -> None:
    """A tool folder (`run`, README.md) holding `files` data files."""
    fill(folder / "data", files)
    (folder / "run").write_text("#!/bin/sh\necho ok\n")
    (folder / "run").chmod(0o755)
    (folder / "README.md").write_text("A tool with many data files.\n")


def start_fake_llm(root: Path, commands: list[str]) -> tuple[subprocess.Popen[str], str]:
    """The fake model in its own process: for each of `commands`, a bash call, then "done"."""
    responses: list[dict[str, object]] = []
    for command in commands:
        responses.append({"tool_calls": [{"name": "bash", "arguments": {"command": command}}]})
        responses.append({"text": "done"})
    script = root / "script.json"
    script.write_text(json.dumps({"responses": responses, "default": {"text": "done"}}))
    return start_process(script)


class Heartbeat:
    """A coroutine waking every 0.5 ms; `worst` is the longest gap between wake-ups since `reset`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.0005)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last)
            last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    def reset(self) -> None:
        self.worst = 0.0

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def measure(
    turn: Callable[[], Awaitable[float]], heartbeat: Heartbeat, turns: int
) -> tuple[float, ...]:
    """Median turn, median and worst longest loop stall per turn, in ms."""
    times: list[float] = []
    stalls: list[float] = []
    await turn()  # warm-up: caches filled, first snapshot taken
    for _ in range(turns):
        heartbeat.reset()
        times.append(await turn())
        stalls.append(heartbeat.worst)
    return tuple(x * 1000 for x in (statistics.median(times), statistics.median(stalls), max(stalls)))


async def main(turns: int, files: int) -> None:
    cases = [
        ("baseline: true", "true"),
        (f"{files} files in tools/: true", "true"),
        (f"{files} files: cat */*9.txt", "cat */*9.txt"),
    ]
    commands = [command for _label, command in cases for _ in range(turns + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        fake, url = start_fake_llm(Path(tmp), commands)
        root = make_workspace(Path(tmp) / "ws", url)
        data = root / ".duragent"
        try:
            config = load_config(root / "duragent.yaml")
            async with Workspace(config, env={"OPENAI_API_KEY": "bench"}) as workspace:
                providers = ProviderPool({"OPENAI_API_KEY": "bench"})
                runtime = Runtime(provider_for=providers.for_agent, memory=workspace.stores.memory)
                agent = workspace.agents.get("assistant")
                session = await SessionLog.create(workspace.stores.sessions, agent=agent.name)

                async def turn() -> float:
                    started = time.perf_counter()
                    await drain(runtime.run_turn(session, agent, "go"))
                    return time.perf_counter() - started

                heartbeat = Heartbeat()
                heartbeat.start()
                print(f"{'case':<34}{'turn p50 ms':>12}{'stall p50 ms':>14}{'stall max ms':>14}")
                try:
                    for index, (label, _command) in enumerate(cases):
                        if index == 1:
                            fill_tool_folder(data / "tools" / "big", files)
                        if index == 2:
                            fill(data / "work" / "assistant", files)
                            shutil.rmtree(data / "tools" / "big")
                        if index:
                            # (as in a workspace at rest: files changed in the last 3 s are read
                            # again at each snapshot, see `file_stamps.settled`)
                            await asyncio.sleep(SETTLE_NS / 1e9 + 0.1)
                        turn_ms, stall_p50, stall_max = await measure(turn, heartbeat, turns)
                        print(f"{label:<34}{turn_ms:>12.2f}{stall_p50:>14.2f}{stall_max:>14.2f}")
                finally:
                    await heartbeat.stop()
                    await providers.close()
        finally:
            fake.terminate()
            fake.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.files))
