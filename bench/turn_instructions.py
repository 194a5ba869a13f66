"""Instructions the `duragent serve` process executes per turn, counted by callgrind.

Wall-clock turn times on a shared 2-core machine swing by ±10% between runs; the instructions a
server executes per turn do not, so this judges a change to the turn path where `serve_turn.py`
cannot. The server runs under valgrind's callgrind with counting off; after `--warmup` turns
counting is switched on (`callgrind_control -i on`) for `--turns` turns of one session, then the
counts are dumped. Every thread of the server is counted (the fsync and snapshot threads too);
its `git` children and the commit process are not (the wall-clock benchmark covers them).

    python bench/turn_instructions.py [--turns 200] [--warmup 50] [--runs 1] [--against DIR]

With `--against DIR` (DIR holds another tree's `duragent/`) the same for that tree, alternating.
Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from instructions import _total  # bench/
from serve_turn import (  # bench/
    Server,
    api_headers,
    free_port,
    make_workspace,
    new_session,
    start_fake_llm,
    turn,
    until_ready,
)


async def count(root: Path, llm_url: str, tree: Path | None, turns: int, warmup: int) -> float:
    """Instructions per turn of one server over `turns` turns after `warmup` uncounted ones."""
    port = free_port()
    process = launch_under_callgrind(root, tree, port)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        await until_ready(http, process, url, root, poll=0.2, within=300)  # slow under valgrind
        server = Server(root, process, url, headers=api_headers(root))
        session = await new_session(http, server)
        for i in range(warmup):
            await turn(http, server, session, i)
        control(process.pid, "--instr=on")
        for i in range(warmup, warmup + turns):
            await turn(http, server, session, i)
        control(process.pid, "--dump=turns")
        control(process.pid, "--instr=off")
    return stop_and_read(process, root) / turns


def launch_under_callgrind(root: Path, tree: Path | None, port: int) -> subprocess.Popen[bytes]:
    """`duragent serve` of the workspace at `root` under callgrind, counting off."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["OPENAI_API_KEY"] = "sk-bench"
    if tree is not None:
        env["PYTHONPATH"] = str(tree.resolve())
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={root / 'callgrind.out'}",
        *(sys.executable, "-m", "duragent", "-c", str(root / "duragent.yaml"), "serve", "--port", str(port)),
    ]
    with (root / "serve.log").open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)


def stop_and_read(process: subprocess.Popen[bytes], root: Path) -> float:
    """Stops the server; the instructions of the turns' dump."""
    process.terminate()
    process.wait(timeout=120)
    dumps = [path for path in root.glob("callgrind.out.*") if path.stat().st_size]
    if not dumps:
        raise SystemExit("callgrind wrote no dump")
    # Beside the turns' dump (`--dump=turns`) callgrind writes one at exit, with what ran after
    # counting was switched off again: next to nothing. Which is listed first varies.
    return max(_total(path) for path in dumps)


def control(pid: int, action: str) -> None:
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--against", type=Path, help="a folder holding another tree's duragent/")
    args = parser.parse_args()
    trees: dict[str, Path | None] = {"this tree": None}
    if args.against:
        trees["against"] = args.against
    results: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="duragent-turn-instr-") as tmp:
        fake, llm_url, _ = start_fake_llm(Path(tmp))
        try:
            for run in range(args.runs):
                for name, tree in trees.items():
                    root = make_workspace(Path(tmp) / f"{name.replace(' ', '-')}-{run}", llm_url, git=True)
                    results[name].append(await count(root, llm_url, tree, args.turns, args.warmup))
        finally:
            fake.terminate()
            fake.wait(timeout=30)
    print(f"server instructions per turn (turns {args.warmup + 1}-{args.warmup + args.turns}, git on)")
    base = statistics.median(results["this tree"])
    for name, counts in results.items():
        median = statistics.median(counts)
        each = ", ".join(f"{c / 1e6:.2f}" for c in counts)
        print(f"{name:<12} {median / 1e6:8.2f} M  ({each})  x{median / base:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
