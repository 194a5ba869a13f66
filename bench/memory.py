"""What a long session keeps in the server's memory, per turn, by the code that allocated it.

    python bench/memory.py [--turns 1000] [--from 200] [--top 12]
    python bench/memory.py --sessions 2000 [--from 500]

With `--sessions`, each of that many sessions takes one turn and is then left idle until the
server unloads it (`idle_ttl`, shortened here to 0.5 s): what is still allocated per session
once they are unloaded is what a server that has seen many sessions keeps for nothing.

The server (`create_app`, as `duragent serve` runs it, git on, fsync per turn) runs in this
process under `tracemalloc`; the instant fake model runs in its own process. One session takes
`--turns` turns over HTTP. Memory still allocated is compared between turn `--from` and the
last turn, grouped by the innermost Duragent line on the allocation's stack (so a
`json.dumps` is charged to the Duragent line that called it), and printed in bytes per turn.
The client's own allocations (this script, aiohttp's client) are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from collections import Counter
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from duragent.config import load_config
from duragent.server.app import create_app
from duragent.server.state import STATE

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is not a package
from serve_turn import REPLY, make_workspace, start_fake_llm

_PACKAGE = str(Path(__import__("duragent").__file__).parent)


def _charged_to(trace: tracemalloc.Trace) -> str | None:
    """The innermost Duragent frame of an allocation (None: not the server's)."""
    for frame in reversed(trace.traceback):  # most recent call first
        if frame.filename.startswith(_PACKAGE) and "/testing/" not in frame.filename:
            return f"{frame.filename[len(_PACKAGE) - len('duragent') :]}:{frame.lineno}"
    return None


def _by_line(snapshot: tracemalloc.Snapshot) -> Counter[str]:
    sizes: Counter[str] = Counter()
    for trace in snapshot.traces:
        where = _charged_to(trace)
        if where is not None:
            sizes[where] += trace.size
    return sizes


async def _turn(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], session: str, i: int
) -> None:
    async with http.post(
        f"{base}/api/v1/sessions/{session}/messages",
        json={"content": f"question number {i}"},
        headers=headers,
    ) as response:
        body = await response.read()
    if response.status != 200 or REPLY.encode() not in body:
        raise RuntimeError(f"turn {i}: {response.status} {body[:200]!r}")


async def _new_session(http: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> str:
    async with http.post(f"{base}/api/v1/sessions", json={"agent": "assistant"}, headers=headers) as response:
        return str((await response.json())["session_id"])


async def _until_unloaded(app: web.Application) -> None:
    sessions = app[STATE].sessions
    # the server's idle sweep unloads them; nothing to wait on but time
    while sessions.live:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def main(turns: int, start: int, top: int, sessions: int = 0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fake, url, _record = start_fake_llm(Path(tmp))
        root = make_workspace(Path(tmp) / "ws", url, git=True)
        try:
            config = load_config(root / "duragent.yaml")
            env = {**os.environ, "OPENAI_API_KEY": "bench"}
            idle_ttl = timedelta(seconds=0.5) if sessions else timedelta(minutes=30)
            app = create_app(config, env=env, host="127.0.0.1", idle_ttl=idle_ttl)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            base = f"http://127.0.0.1:{port}"
            token = (root / ".duragent" / "run" / "tokens.json").read_text()
            headers = {"Authorization": f"Bearer {json.loads(token)['api_token']}"}
            before: Counter[str] = Counter()
            async with aiohttp.ClientSession() as http:
                if sessions:
                    for i in range(1, sessions + 1):
                        await _turn(http, base, headers, await _new_session(http, base, headers), i)
                        if i == start:
                            await _until_unloaded(app)
                            gc.collect()
                            before = _by_line(tracemalloc.take_snapshot())
                    await _until_unloaded(app)
                else:
                    session = await _new_session(http, base, headers)
                    for i in range(1, turns + 1):
                        await _turn(http, base, headers, session, i)
                        if i == start:
                            gc.collect()
                            before = _by_line(tracemalloc.take_snapshot())
                gc.collect()
                after = _by_line(tracemalloc.take_snapshot())
            await runner.cleanup()
        finally:
            fake.terminate()
            fake.wait(timeout=30)
    unit = "session" if sessions else "turn"
    last = sessions or turns
    span = last - start
    growth = Counter({line: after[line] - before.get(line, 0) for line in after})
    total = sum(growth.values())
    if sessions:
        print(f"sessions {start}-{last}, one turn each, all unloaded; through the server in-process (git on)")
    else:
        print(f"turns {start}-{last} of one session, through the server in-process (git on)")
    print(
        f"server allocations still held: {sum(before.values()) / 1024:.0f} KiB at {unit} {start}, "
        f"{sum(after.values()) / 1024:.0f} KiB at {unit} {last}"
    )
    print(f"growth: {total / span:.0f} bytes per {unit}")
    for line, size in growth.most_common(top):
        if size <= 0:
            break
        print(f"  {size / span:8.0f} B/{unit}  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--from", dest="start", type=int, default=200)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--sessions", type=int, default=0, help="that many sessions of one turn each")
    args = parser.parse_args()
    tracemalloc.start(12)
    asyncio.run(main(args.turns, args.start, args.top, args.sessions))
