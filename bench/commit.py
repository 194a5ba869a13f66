"""What one commit of many sessions costs, and where: the committer's own thread (which shares
the GIL with the server's event loop when it runs inside `duragent serve`) and its git commands.

    python bench/commit.py [--sessions 400] [--events 5] [--rounds 4] [--against DIR]

Each round appends `--events` events to each session's events.jsonl, rewrites its state.yaml,
notifies the committer once per event (as the store does), then has its worker thread commit
the batch (`flush`), screened by a secret guard as `duragent serve` always screens. Reported per
round, CPU times (they hold on a busy machine far better than wall times):
- server CPU: this process's own CPU while it commits (RUSAGE_SELF), the committer's worker
  thread's in effect: in `duragent serve` that time is taken under the GIL the event loop needs;
- git CPU: the git processes this process ran (RUSAGE_CHILDREN), and git runs, how many;
- apart CPU: the commit process and its git commands (`/proc/<pid>/stat`), when the batch was
  handed to one (`duragent/vcs/commit_process.py`; `--inline` keeps it in the worker thread);
- wall time.
The first round commits new files; the later ones are what a running server repeats.

With `--against DIR` (a folder holding another `duragent/` tree, e.g. from
`git -C /work/main archive main duragent | tar -x -C DIR`) the same rounds run in child
processes against both trees, alternating, `--repeats` times each, and the medians of the
repeated rounds (2 onwards) are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENT = '{"seq": %d, "type": "assistant_message", "data": {"content": "Sure, here is a short answer."}}\n'
FIGURES = ("server_ms", "git_ms", "git_runs", "apart_ms", "wall_ms")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_tree_cpu(pid: int | None) -> float:
    """CPU seconds of a running process and of the children it has reaped (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(sessions: int, events: int, rounds: int, inline: bool) -> list[dict[str, float]]:
    """Run the rounds in this process with the `duragent` it imports; one dict of figures per round."""
    from duragent.secrets import SecretGuard
    from duragent.stores.base import Change
    from duragent.vcs.committer import Committer
    from duragent.vcs.repo import GitRepo

    started_processes = 0
    original_popen_init = subprocess.Popen.__init__

    def counting_init(self: subprocess.Popen[bytes], *a: object, **k: object) -> None:
        nonlocal started_processes
        started_processes += 1
        original_popen_init(self, *a, **k)  # type: ignore[arg-type]

    subprocess.Popen.__init__ = counting_init  # type: ignore[method-assign]
    figures = []
    with tempfile.TemporaryDirectory(prefix="duragent-commit-") as tmp:
        root = Path(tmp) / "data"
        repo = GitRepo.open_or_init(root)
        options: dict[str, object] = {"separate_process_from": None} if inline else {}
        committer = Committer(repo, debounce=3600, max_delay=3600, guard=SecretGuard(), **options)  # type: ignore[arg-type]
        committer.start()
        for round_ in range(rounds):
            for i in range(sessions):
                folder = root / "sessions" / f"s_{i:05d}"
                folder.mkdir(parents=True, exist_ok=True)
                with (folder / "events.jsonl").open("a") as log:
                    log.writelines(EVENT % (round_ * events + k) for k in range(events))
                (folder / "state.yaml").write_text(f"seq: {(round_ + 1) * events}\n")
                paths = (folder / "events.jsonl", folder / "state.yaml")
                for _ in range(events):
                    summary = f"turn {round_ + 1} (+1 event)"
                    committer.notify(Change(paths, "session", folder.name, summary, ("assistant_message",)))
            apart_before = process_tree_cpu(commit_process_pid(committer))
            runs_before, server_before, git_before = started_processes, time.process_time(), children_cpu()
            wall_before = time.perf_counter()
            committer.flush()  # the worker thread commits; this one waits
            apart_after = process_tree_cpu(commit_process_pid(committer))
            figures.append(
                {
                    "wall_ms": (time.perf_counter() - wall_before) * 1000,
                    "server_ms": (time.process_time() - server_before) * 1000,
                    "git_ms": (children_cpu() - git_before) * 1000,
                    "git_runs": started_processes - runs_before,
                    "apart_ms": (apart_after - apart_before) * 1000,
                }
            )
        committer.close()
        if repo.head() is None or committer.commits_made != rounds:
            raise RuntimeError(f"{committer.commits_made} commits for {rounds} rounds")
    return figures


def commit_process_pid(committer: object) -> int | None:
    """The pid of the committer's commit process, if this tree has one and it runs."""
    process = getattr(committer, "_commit_process", None)
    return process.pid if process is not None else None


HEADER = f"{'server CPU ms':>15}{'git CPU ms':>12}{'git runs':>10}{'apart CPU ms':>14}{'wall ms':>10}"


def row_text(row: dict[str, float]) -> str:
    return (
        f"{row['server_ms']:>15.1f}{row['git_ms']:>12.1f}{row['git_runs']:>10.0f}"
        f"{row['apart_ms']:>14.1f}{row['wall_ms']:>10.0f}"
    )


def print_rounds(figures: list[dict[str, float]]) -> None:
    print(f"{'round':<8}{HEADER}")
    for number, row in enumerate(figures, 1):
        print(f"{number:<8}{row_text(row)}")


def compare(against: Path, args: argparse.Namespace) -> None:
    """Alternate child runs of this tree and `against`; print the medians of rounds 2 onwards."""
    here = Path(__file__).resolve().parent.parent
    trees = {"against": against.resolve(), "this tree": here}
    repeated: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    first: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            command = [sys.executable, __file__, "--json", *_shape(args)]
            if args.inline and name == "this tree":
                command.append("--inline")
            env = {**os.environ, "PYTHONPATH": str(tree)}
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            rounds = json.loads(done.stdout)
            first[name].append(rounds[0])
            repeated[name].extend(rounds[1:])
    print(f"medians of {args.repeats} runs per tree, alternating; rounds 2-{args.rounds} (1: new files)")
    print(f"{'':<12}{HEADER}")
    medians = {}
    for name in trees:
        medians[name] = {key: statistics.median(row[key] for row in repeated[name]) for key in FIGURES}
        print(f"{name:<12}{row_text(medians[name])}")
    before, after = medians["against"], medians["this tree"]
    print(f"server CPU (under the GIL): {after['server_ms'] / before['server_ms']:.2f}x of against's")
    total_before = before["server_ms"] + before["git_ms"] + before["apart_ms"]
    total_after = after["server_ms"] + after["git_ms"] + after["apart_ms"]
    print(f"all CPU of a commit (server + git + apart): {total_after / total_before:.2f}x of against's")


def _shape(args: argparse.Namespace) -> list[str]:
    return ["--sessions", str(args.sessions), "--events", str(args.events), "--rounds", str(args.rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--events", type=int, default=5, help="events per session per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--against", type=Path, help="a directory holding another duragent/ tree")
    parser.add_argument("--repeats", type=int, default=3, help="child runs per tree with --against")
    parser.add_argument(
        "--inline", action="store_true", help="commit in the worker thread, never in the commit process"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.against is not None:
        compare(args.against, args)
        return
    figures = measure(args.sessions, args.events, args.rounds, args.inline)
    if args.json:
        print(json.dumps(figures))
        return
    where = "in the worker thread" if args.inline else "as serve does"
    print(f"{args.sessions} sessions x {args.events} events per commit, screened for secrets, {where}")
    print_rounds(figures)


if __name__ == "__main__":
    main()
