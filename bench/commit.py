"""What one commit of many sessions costs, and where: the committer's own thread (which shares
the GIL with the server's event loop when it runs inside `duragent serve`) and its git commands.

    python bench/commit.py [--sessions 400] [--events 5] [--rounds 3]

Each round appends `--events` events to each session's events.jsonl, rewrites its state.yaml,
notifies the committer once per event (as the store does), then commits the batch. Reported per
round: CPU seconds of the committing thread (`time.thread_time`), CPU seconds of the git
processes it ran (RUSAGE_CHILDREN), git processes started, and wall time. CPU times hold on a
busy machine far better than wall times.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from duragent.stores.base import Change
from duragent.vcs.committer import Committer
from duragent.vcs.repo import GitRepo

EVENT = '{"seq": %d, "type": "assistant_message", "data": {"content": "Sure, here is a short answer."}}\n'


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--events", type=int, default=5, help="events per session per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started_processes = 0
    original_popen_init = subprocess.Popen.__init__

    def counting_init(self: subprocess.Popen[bytes], *a: object, **k: object) -> None:
        nonlocal started_processes
        started_processes += 1
        original_popen_init(self, *a, **k)  # type: ignore[arg-type]

    subprocess.Popen.__init__ = counting_init  # type: ignore[method-assign]
    print(f"{args.sessions} sessions x {args.events} events per commit")
    print(f"{'round':<8}{'thread CPU ms':>15}{'git CPU ms':>12}{'git runs':>10}{'wall ms':>10}")
    with tempfile.TemporaryDirectory(prefix="duragent-commit-") as tmp:
        root = Path(tmp) / "data"
        committer = Committer(GitRepo.open_or_init(root), debounce=3600, max_delay=3600)
        for round_ in range(args.rounds):
            for i in range(args.sessions):
                folder = root / "sessions" / f"s_{i:05d}"
                folder.mkdir(parents=True, exist_ok=True)
                with (folder / "events.jsonl").open("a") as log:
                    log.writelines(EVENT % (round_ * args.events + k) for k in range(args.events))
                (folder / "state.yaml").write_text(f"seq: {(round_ + 1) * args.events}\n")
                paths = (folder / "events.jsonl", folder / "state.yaml")
                for _ in range(args.events):
                    summary = f"turn {round_ + 1} (+1 event)"
                    committer.notify(Change(paths, "session", folder.name, summary, ("assistant_message",)))
            runs_before, thread_before, git_before = started_processes, time.thread_time(), children_cpu()
            wall_before = time.perf_counter()
            committer.flush()  # no worker thread started: the commit runs here, in this thread
            wall = time.perf_counter() - wall_before
            thread = time.thread_time() - thread_before
            git = children_cpu() - git_before
            runs = started_processes - runs_before
            print(f"{round_ + 1:<8}{thread * 1000:>15.1f}{git * 1000:>12.1f}{runs:>10}{wall * 1000:>10.0f}")


if __name__ == "__main__":
    main()
