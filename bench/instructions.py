"""Instructions that `duragent`'s starts execute, against `python -c pass`, in one run.

Wall-clock start-up times swing with whatever else the machine runs, and `perf stat -e
instructions` has no counter on the VM this project runs on; valgrind's callgrind counts the
instructions a process executes whatever else runs, so it judges a change on a loaded machine.
Measured: `python -c pass`, `duragent --help`, a warm `send` (whole process, the server runs) and
`chat` to its prompt taking input (callgrind is asked for a dump with `callgrind_control` when a
key typed at the prompt has echoed, so leaving is not counted), and the floor under `chat`: a
bare prompt_toolkit prompt (`startup.py`'s). Medians of `--runs` each; with
`--against DIR` the same for DIR's `duragent/` (put first on PYTHONPATH), alternating.

    python bench/instructions.py [--runs N] [--against DIR]    (needs valgrind)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from startup import BARE_PROMPT  # (bench/ is the script's folder)

_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)
#: Runs the command as the console script does (valgrind needs an executable, not a script).
_DURAGENT = "import sys; from duragent.cli import main; sys.argv[0] = 'duragent'; main()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", type=Path, help="a folder holding another tree's duragent/")
    args = parser.parse_args()
    trees = {"this tree": None, "against": args.against} if args.against else {"this tree": None}
    duragent = shutil.which("duragent") or str(Path(sys.executable).parent / "duragent")
    results: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        subprocess.run([duragent, "init", "--yes", str(workspace)], check=True, capture_output=True)
        subprocess.run([duragent, "send", "hi"], cwd=workspace, check=True, capture_output=True)
        try:
            for _ in range(args.runs + 1):  # the first round writes bytecode and is not counted
                for name, path in trees.items():
                    env = _env(path)
                    counts = {
                        "python -c pass": _whole([sys.executable, "-c", "pass"], workspace, env),
                        "duragent --help": _whole(_python(duragent, "--help"), workspace, env),
                        "duragent send (warm)": _whole(_python(duragent, "send", "hi"), workspace, env),
                        "duragent chat to prompt": _to_prompt(_python(duragent, "chat"), workspace, env),
                        "bare prompt_toolkit prompt": _to_prompt(
                            [sys.executable, "-c", BARE_PROMPT], workspace, env
                        ),
                    }
                    for case, count in counts.items():
                        results[name].setdefault(case, []).append(count)
        finally:
            subprocess.run([duragent, "serve", "stop"], cwd=workspace, capture_output=True)
    _report(results)


def _report(results: dict[str, dict[str, list[float]]]) -> None:
    names = list(results)
    print(f"{'M instructions (medians)':<26}" + "".join(f"{name:>14}{'x python':>10}" for name in names))
    for case in results[names[0]]:
        row = f"{case:<26}"
        for name in names:
            counts = results[name][case][1:]
            base = statistics.median(results[name]["python -c pass"][1:])
            row += f"{statistics.median(counts) / 1e6:>14.1f}{statistics.median(counts) / base:>10.1f}"
        print(row)
    print(f"(runs={len(results[names[0]]['python -c pass']) - 1}, python {sys.version.split()[0]})")


def _env(tree: Path | None) -> dict[str, str]:
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1", "TERM": "xterm"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users load modules from bytecode
    if tree is not None:
        env["PYTHONPATH"] = str(tree.resolve())
    return env


def _python(duragent: str, *args: str) -> list[str]:
    """The interpreter of the `duragent` script, running it (valgrind does not follow #!)."""
    interpreter = Path(duragent).read_text().splitlines()[0].removeprefix("#!").strip()
    return [interpreter, "-c", _DURAGENT, *args]


def _whole(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Instructions of the whole process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
        )
        return _total(out)


def _to_prompt(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Instructions until the program's `›` prompt echoes a key typed at it."""
    import pexpect  # the test extra

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
        child = pexpect.spawn(command[0], command[1:], cwd=str(cwd), env=env, encoding="utf-8", timeout=300)
        child.delaybeforesend = None
        child.expect("›")
        child.send("@")
        child.expect("@")
        dump = ["callgrind_control", "--dump=prompt", str(child.pid)]
        subprocess.run(dump, check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while not (dumps := [p for p in Path(tmp).iterdir() if p != out and p.stat().st_size]):
            if time.monotonic() > deadline:
                raise SystemExit("callgrind wrote no dump")
            time.sleep(0.05)
        time.sleep(0.5)  # the dump is written in one go, but give it time to finish
        count = _total(dumps[0])
        child.send("\x7f")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
        return count


def _total(path: Path) -> float:
    match = _TOTAL.search(path.read_text())
    if match is None:
        raise SystemExit(f"no instruction total in {path}")
    return float(match.group(1))


if __name__ == "__main__":
    main()
