"""`duragent serve` to `/readyz`: wall time, the server's CPU and its RSS, against another tree.

    python bench/serve_startup.py [--runs 9] [--against DIR] [--instructions]

Starts `duragent serve` on a workspace made by `init` `--runs` times (after one untimed start
that writes bytecode), and with `--against DIR` (a checkout holding another `duragent/`, e.g.
`git archive main duragent | tar -x -C DIR`) starts that tree's server in alternation with this
one, so both meet the same spells of a busy machine and their ratio holds better than either
figure. CPU is utime + stime of the server process until `/readyz` first answered 200.

`--instructions` runs each server under valgrind's callgrind and also counts the instructions
it executed until `/readyz` first answered (`callgrind_control --dump` then): unlike wall and
CPU time, the count does not change with what else the machine runs. Wall and CPU are then
valgrind's, many times a plain start's.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from duragent.scaffold import ProviderChoice, init_workspace

_TICKS = os.sysconf("SC_CLK_TCK")
_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)
_HERE = str(Path(__file__).resolve().parents[1])
# The server runs `duragent` from the tree named on its command line, not the installed one.
_SERVE = (
    "import sys; sys.path.insert(0, sys.argv[2]); import duragent; "
    "assert duragent.__file__.startswith(sys.argv[2]), duragent.__file__; "
    "from duragent.cli import main; sys.argv = ['duragent', 'serve', '--port', sys.argv[1]]; main()"
)


def start_once(
    tree: str, workspace: Path, port: int, env: dict[str, str], *, instructions: bool = False
) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds, RSS MiB, instructions or 0) of one server from start to /readyz."""
    with tempfile.TemporaryDirectory(prefix="duragent-callgrind-") as dumps:
        command = [sys.executable, "-c", _SERVE, str(port), tree]
        if instructions:
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}/out", *command]
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the server of {tree} exited with {process.returncode}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
                    time.sleep(0.005)
            wall = time.perf_counter() - started
            count = _dump_count(process.pid, Path(dumps)) if instructions else 0.0
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICKS
            status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
            return wall, cpu, rss, count
        finally:
            process.terminate()
            process.wait(timeout=120)


def _dump_count(pid: int, folder: Path) -> float:
    """Instructions callgrind counted in process `pid` so far (it writes a dump into `folder`)."""
    subprocess.run(["callgrind_control", "--dump=ready", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while not (written := [path for path in folder.iterdir() if path.name != "out" and path.stat().st_size]):
        if time.monotonic() > deadline:
            raise SystemExit("callgrind wrote no dump")
        time.sleep(0.05)
    time.sleep(0.5)  # written in one go, but let it finish
    match = _TOTAL.search(written[0].read_text())
    if match is None:
        raise SystemExit(f"no instruction total in {written[0]}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--against", type=Path, help="a directory holding another duragent/ tree")
    parser.add_argument("--instructions", action="store_true", help="count instructions (valgrind)")
    args = parser.parse_args()
    trees = {"this tree": _HERE}
    if args.against is not None:
        trees = {"against": str(args.against.resolve()), **trees}
    # Bytecode as an installed package has it (PYTHONDONTWRITEBYTECODE would compile every start).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["OPENAI_API_KEY"] = "sk-bench"
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in trees}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="duragent-serve-startup-") as tmp:
        workspace = Path(tmp)
        init_workspace(workspace, provider=ProviderChoice("openai", "bench", "benchmark"), git=True)
        # below Linux's ephemeral ports (32768 up): polling a port there that nothing listens on
        # yet can connect the client to itself, which reads its own request back
        port = 20000 + os.getpid() % 12000
        for run in range(args.runs + 1):
            for name, tree in trees.items():
                measured = start_once(tree, workspace, port, env, instructions=args.instructions)
                if run:  # the first start of each tree writes its bytecode: not timed
                    results[name].append(measured)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"starts per tree: {args.runs}, alternating")
    counted = args.instructions
    extra = f"{'M instr':>10}" if counted else ""
    print(f"{'':<12}{'wall s':>9}{'CPU s':>9}{'RSS MiB':>9}{extra}   (medians)")
    medians = {}
    for name, runs in results.items():
        medians[name] = [statistics.median(values) for values in zip(*runs, strict=True)]
        wall, cpu, rss, count = medians[name]
        extra = f"{count / 1e6:>10.1f}" if counted else ""
        print(f"{name:<12}{wall:>9.3f}{cpu:>9.2f}{rss:>9.1f}{extra}")
    if args.against is not None:
        ratio = [
            mine / theirs if theirs else 0.0
            for mine, theirs in zip(medians["this tree"], medians["against"], strict=True)
        ]
        extra = f"{ratio[3]:>10.3f}" if counted else ""
        print(f"{'ratio':<12}{ratio[0]:>9.2f}{ratio[1]:>9.2f}{ratio[2]:>9.2f}{extra}   (this tree / against)")


if __name__ == "__main__":
    main()
