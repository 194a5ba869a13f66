"""Soak: many turns through one `duragent serve`, its memory and open files staying flat.

Not run by default (`-m soak` runs it): 10,000 turns take minutes. `--count N` sets the turns.
RSS and open file descriptors are read from /proc after a warm-up and at the end; a leak of a
few kilobytes per turn, or of one file per session, shows as growth far beyond the margins.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from duragent.testing.fake_llm import start_process
from tests.e2e.server_harness import start_serve, write_workspace

pytestmark = [pytest.mark.soak, pytest.mark.slow, pytest.mark.timeout(7200)]

SESSIONS = 20
CONCURRENCY = 4
#: Turns per block of sessions; the first block is the warm-up.
BLOCK = 500
#: Allowed growth after the warm-up: RSS (bytes) and open file descriptors.
RSS_MARGIN = 40 * 1024 * 1024
FD_MARGIN = 10


def rss_and_fds(pid: int) -> tuple[int, int]:
    """Resident memory in bytes and the number of open file descriptors of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kb * 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def run_turns(url: str, headers: dict[str, str], sessions: list[str], turns: int, start: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(start, start + turns):
        queue.put_nowait(number)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            session = sessions[number % len(sessions)]
            path = f"{url}/api/v1/sessions/{session}/messages"
            async with http.post(path, json={"content": f"turn {number}"}) as response:
                assert response.status == 200, await response.text()

    async with aiohttp.ClientSession(headers=headers) as http:
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))


async def run_block(url: str, headers: dict[str, str], start: int, turns: int) -> None:
    """`turns` turns over new sessions, which are deleted afterwards.

    A conversation is kept in memory while its session is live, so sessions that lived through
    the whole run would grow by their history; deleting them shows what a session leaves behind.
    """
    async with aiohttp.ClientSession(headers=headers) as http:
        sessions = []
        for _ in range(SESSIONS):
            async with http.post(f"{url}/api/v1/sessions", json={"agent": "helper"}) as response:
                sessions.append((await response.json())["session_id"])
        await run_turns(url, headers, sessions, turns, start)
        for session in sessions:
            async with http.delete(f"{url}/api/v1/sessions/{session}") as response:
                assert response.status == 204, await response.text()


async def test_ten_thousand_turns_keep_memory_and_open_files_flat(
    tmp_path: Path, fault_count: Callable[[int], int]
) -> None:
    turns = fault_count(10_000)
    script = tmp_path / "script.json"
    script.write_text("[]")  # the fake model echoes
    model, model_url = start_process(script)
    try:
        config = write_workspace(tmp_path, model_url, git=True)
        server = start_serve(config, tmp_path / "serve.log")
        try:
            headers = server.headers
            await run_block(server.url, headers, 0, min(BLOCK, turns))
            rss_before, fds_before = rss_and_fds(server.process.pid)
            started = time.monotonic()
            for start in range(BLOCK, turns, BLOCK):
                await run_block(server.url, headers, start, min(BLOCK, turns - start))
            seconds = time.monotonic() - started
            rss_after, fds_after = rss_and_fds(server.process.pid)
            print(
                f"\nsoak: {turns} turns ({seconds:.0f} s after the warm-up), "
                f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB, "
                f"open files {fds_before} -> {fds_after}"
            )
            assert rss_after - rss_before < RSS_MARGIN
            assert fds_after - fds_before <= FD_MARGIN
        finally:
            assert server.terminate(timeout=60) == 0
    finally:
        model.terminate()
        model.wait(10)
