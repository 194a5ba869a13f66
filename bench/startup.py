"""Start-up cost of the `duragent` command against a bare `python -c pass`, in one run.

Prints the median wall time and peak RSS of each command over N runs (default 15), and the
ratio to the bare interpreter. Targets (issue 3): `--help` <= 120 ms, <= 40 MiB peak RSS.

    python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(argv: list[str], runs: int, cwd: Path) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MiB) of `argv` over `runs` runs (after a warm-up)."""
    walls: list[float] = []
    rss: list[float] = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv)} failed with status {status}")
        if i:  # the first run warms the page cache and bytecode
            walls.append(elapsed)
            rss.append(usage.ru_maxrss / 1024)
    return statistics.median(walls), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    duragent = shutil.which("duragent") or str(Path(sys.executable).parent / "duragent")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        subprocess.run([duragent, "init", "--yes", str(workspace)], check=True, capture_output=True)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "duragent --help": [duragent, "--help"],
            "duragent --version": [duragent, "--version"],
            "duragent agent list": [duragent, "agent", "list"],
        }
        results = {name: measure(argv, args.runs, workspace) for name, argv in cases.items()}
    base_wall, base_rss = results["python -c pass"]
    print(f"{'command':<24}{'median ms':>10}{'x python':>10}{'peak MiB':>10}")
    for name, (wall, rss) in results.items():
        print(f"{name:<24}{wall * 1000:>10.1f}{wall / base_wall:>10.1f}{rss:>10.1f}")
    python = sys.version.split()[0]
    print(f"(runs={args.runs}, python {python}, {os.cpu_count()} cpus; baseline {base_rss:.1f} MiB)")


if __name__ == "__main__":
    main()
