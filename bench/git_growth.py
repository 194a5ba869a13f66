"""How fast the data repository grows: N turns through the runtime with the real committer.

Runs `--turns` turns (default 1,000) of one session through `Runtime` + `SessionLog` against the
fake LLM server (every 10th turn also remembers a fact through the memory tool), with the real
git committer on a short debounce, then compacts the repository as `duragent gc` does and
reports: commits per turn, the `.git` size before and after gc, the size of the files git
tracks, and their ratio (target: <= 3x after gc).

    python bench/git_growth.py [--turns N] [--debounce SECONDS] [--max-delay SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from duragent.agents.loader import load_agent
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.memory import FilesystemMemoryStore
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.vcs.committer import Committer
from duragent.vcs.repo import GitRepo
from duragent.vcs.revisions import folder_size, gc_repository

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: bench
spec:
  model: {{provider: openai, name: gpt-bench, base_url: "{url}"}}
  system_prompt: You are a benchmark agent.
  memory: {{enabled: true}}
  tools: {{builtin: [memory], policy: {{mode: allow}}}}
"""
REPLY = "Here is a reply of a realistic length, a few sentences long. " * 6


async def run(turns: int, debounce: float, max_delay: float, root: Path) -> dict[str, float]:
    """Drive the turns and return the measurements."""
    data = root / "data"
    repo = GitRepo.open_or_init(data)
    committer = Committer(repo, debounce=debounce, max_delay=max_delay)
    committer.start()
    sessions = FilesystemSessionStore(data / "sessions", fsync="never", on_change=committer.notify)
    memory = FilesystemMemoryStore(data / "memory", on_change=committer.notify)
    pool = ProviderPool({"OPENAI_API_KEY": "sk-bench"})
    async with FakeLLMServer() as fake_llm:
        folder = data / "agents" / "bench"
        folder.mkdir(parents=True)
        (folder / "agent.yaml").write_text(AGENT_YAML.format(url=fake_llm.url))
        agent, _ = load_agent(folder, env={"OPENAI_API_KEY": "sk-bench"})
        runtime = Runtime(provider_for=pool.for_agent, memory=memory)
        log = await SessionLog.create(sessions, agent="bench")
        started = time.perf_counter()
        for turn in range(1, turns + 1):
            if turn % 10 == 0:
                fact = {"action": "remember", "section": "fact", "content": f"fact number {turn}"}
                fake_llm.enqueue(tool_calls([("memory", fact)]), text("Noted."))
            else:
                fake_llm.enqueue(text(f"{REPLY} (turn {turn})", chunks=4))
            await drain(runtime.run_turn(log, agent, f"message number {turn}: tell me something"))
        elapsed = time.perf_counter() - started
    await pool.close()
    await sessions.close()
    committer.close()
    commits = int("".join(repo.stream(["rev-list", "--count", "HEAD"])).strip())
    before = folder_size(repo.git_dir)
    report = gc_repository(repo)
    return {
        "turns": turns,
        "seconds": elapsed,
        "commits": commits,
        "commits_per_turn": commits / turns,
        "git_before_gc": before,
        "git_after_gc": report.git_after,
        "tracked": report.tracked,
        "ratio": report.ratio,
    }


def main() -> None:
    """Parse arguments, run, print the report."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--debounce", type=float, default=0.05, help="committer debounce (seconds)")
    parser.add_argument("--max-delay", type=float, default=0.5, help="committer max delay (seconds)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="duragent-git-growth-") as folder:
        result = asyncio.run(run(args.turns, args.debounce, args.max_delay, Path(folder)))
    kib = 1024
    print(f"turns              {result['turns']:.0f} in {result['seconds']:.1f} s")
    print(f"commits            {result['commits']:.0f} ({result['commits_per_turn']:.3f} per turn)")
    print(f".git before gc     {result['git_before_gc'] / kib:.0f} KiB")
    print(f".git after gc      {result['git_after_gc'] / kib:.0f} KiB")
    print(f"tracked files      {result['tracked'] / kib:.0f} KiB")
    verdict = "ok" if result["ratio"] <= 3 else "ABOVE TARGET"
    print(f"ratio after gc     {result['ratio']:.2f}x (target <= 3x: {verdict})")


if __name__ == "__main__":
    main()
