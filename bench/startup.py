"""Start-up cost of the `duragent` command against a bare `python -c pass`, in one run.

Prints the median wall time and peak RSS of each command over N runs (default 15), and the
ratio to the bare interpreter. Targets (issue 3): `--help` <= 120 ms, <= 40 MiB peak RSS.
Issue 15: a cold `send` (no server running: it starts one and waits for it to be ready)
<= 0.9 s, a warm `send` (the server runs) and `chat` to its prompt <= 150 ms; `chat` to its
prompt when no server runs (it starts one) is printed beside them, and so is the floor under
`chat`: a bare prompt_toolkit prompt, the same measure for a program that only imports
prompt_toolkit and shows its prompt. The load average is printed with the figures: on a shared
machine they mean little without it.

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
from collections.abc import Callable
from pathlib import Path

#: The least a terminal client built on prompt_toolkit can do before its prompt takes input.
BARE_PROMPT = """\
from prompt_toolkit import PromptSession
try:
    PromptSession().prompt("› ")
except EOFError:
    pass
"""


def measure(argv: list[str], runs: int, cwd: Path, *, warm_up: bool = True) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MiB) of `argv` over `runs` runs (after a warm-up)."""
    walls: list[float] = []
    rss: list[float] = []
    first = 1 if warm_up else 0
    for i in range(runs + first):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv)} failed with status {status}")
        if i >= first:  # the first run warms the page cache and bytecode
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
        loads = {name: os.getloadavg()[0] for name in results}
        send = [duragent, "send", "hi"]
        stop = [duragent, "serve", "stop"]
        try:
            cold_runs = max(3, args.runs // 3)
            results["duragent send (cold)"] = measure_cold(
                lambda: measure(send, 1, workspace, warm_up=False), stop, cold_runs, workspace
            )
            loads["duragent send (cold)"] = os.getloadavg()[0]
            results["duragent send (warm)"] = measure(send, args.runs, workspace)
            loads["duragent send (warm)"] = os.getloadavg()[0]
            results["duragent chat to prompt"] = measure_prompt([duragent, "chat"], args.runs, workspace)
            loads["duragent chat to prompt"] = os.getloadavg()[0]
            results["bare prompt_toolkit prompt"] = measure_prompt(
                [sys.executable, "-c", BARE_PROMPT], args.runs, workspace
            )
            loads["bare prompt_toolkit prompt"] = os.getloadavg()[0]
            results["duragent chat (cold)"] = measure_cold(
                lambda: measure_prompt([duragent, "chat"], 1, workspace, warm_up=False),
                stop,
                cold_runs,
                workspace,
            )
            loads["duragent chat (cold)"] = os.getloadavg()[0]
        finally:
            subprocess.run(stop, cwd=workspace, capture_output=True)
    base_wall, base_rss = results["python -c pass"]
    print(f"{'command':<26}{'median ms':>10}{'x python':>10}{'peak MiB':>10}{'load 1m':>9}")
    for name, (wall, rss) in results.items():
        print(f"{name:<26}{wall * 1000:>10.1f}{wall / base_wall:>10.1f}{rss:>10.1f}{loads[name]:>9.2f}")
    python = sys.version.split()[0]
    print(f"(runs={args.runs}, python {python}, {os.cpu_count()} cpus; baseline {base_rss:.1f} MiB)")


def measure_cold(
    measure_once: Callable[[], tuple[float, float]], stop: list[str], runs: int, cwd: Path
) -> tuple[float, float]:
    """Median of `measure_once()` (wall seconds, peak MiB) when no server runs: each run stops
    the server the last one started."""
    walls: list[float] = []
    rss: list[float] = []
    for _ in range(runs):
        subprocess.run(stop, cwd=cwd, capture_output=True, check=True)
        wall, peak = measure_once()
        walls.append(wall)
        rss.append(peak)
    return statistics.median(walls), statistics.median(rss)


def measure_prompt(argv: list[str], runs: int, cwd: Path, *, warm_up: bool = True) -> tuple[float, float]:
    """Median wall seconds from starting `argv` in a pseudo-terminal until its `›` prompt shows and
    echoes a key typed at it (drawn is not enough: it must be taking input), and median peak RSS
    (MiB) at that moment."""
    import pexpect  # the test extra; only this measurement needs a terminal

    walls: list[float] = []
    rss: list[float] = []
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1", "TERM": "xterm"}
    first = 1 if warm_up else 0
    for i in range(runs + first):
        start = time.perf_counter()
        child = pexpect.spawn(argv[0], argv[1:], cwd=str(cwd), env=env, encoding="utf-8", timeout=120)
        child.delaybeforesend = None  # pexpect waits 50 ms before each send unless told not to
        child.expect("›")
        child.send("@")
        child.expect("@")
        if i >= first:  # the first run warms the page cache and bytecode
            walls.append(time.perf_counter() - start)
            rss.append(_peak_rss_mib(child.pid))
        child.send("\x7f")  # rub the key out: Ctrl-D leaves only at an empty prompt
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
    return statistics.median(walls), statistics.median(rss)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
