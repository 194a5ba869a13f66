"""Turn overhead where the user meets it: HTTP through `duragent serve`, git and fsync on.

    python bench/serve_turn.py [--turns 1000] [--quick] [--startups 5] [--warmup 20]
                               [--pause 0.25] [--against DIR | --floor]

Four processes: the instant fake model (`duragent.testing.fake_llm`, its own process, recording
every request body it receives), two `duragent serve` over fresh workspaces made by `init` with
the default configuration (fsync per turn; one with git on as by default, one with
`git.enabled: false`), and this script, the client. Each server gets 1,000 turns in one session:
`POST /api/v1/sessions/{id}/messages` and its synchronous reply. Blocks of 20 turns alternate
between the servers, then the bare replay, so a slow spell of the shared machine falls on all of
them. Which server goes first turns round each round: the first block after a pause pays for
caches the pause let go cold (~0.2 ms of server CPU per turn here), which a fixed order charged
to git on alone, as if git cost it.

- Overhead per turn: the turn's latency at the client minus the latency of a bare request of
  the same body (the exact bytes the server sent the model, recorded by the fake and replayed
  by this client in the same block): what remains is what `duragent serve` adds.
- Before the measured session each server answers `--warmup` turns (20) in another session,
  which it then ends, and the git-on server commits them: turns 1-50 then compare a short
  history with a long one on a warm server, not a server's first turns (its caches and
  allocator filling, the model connection being made, its first commit) with later ones. The
  warm-up's own latencies are printed, not counted; `--warmup 0` measures a fresh server's
  first turns.
- Growth in alternation: turns 1-50 and 951-1000 are ~10 s apart, and the machine's speed
  drifts in that time. After everything above is read, every server takes 100 more turns of
  the long session (1001-1100) one by one with the first 50 turns of two new sessions, so both
  histories are measured at the same moments; each against the replay of its own body.
- Server CPU per turn of the servers' own threads (schedstat, in ns) in the first and the last
  60 turns: what the server does more per turn late in a session, apart from the machine's
  latency swings: in runs of 2026-12-04 the floor's overhead grew 0.78x to 1.32x from turns
  1-50 to 951-1000 while its CPU per turn stayed within 8%.
- Server CPU per turn: utime + stime of the server process, its reaped children (the `git`
  commands) and its running ones (the commit process of large batches) from the first turn
  until the git-on server has committed everything, divided by the turns; git on vs git off
  as a ratio, with the number of commits that landed while the turns ran and in which blocks
  (the branch's file is checked after each block). With the default configuration a commit
  comes 10 s after the first change under constant writes, and 1,000 turns take ~10 s here:
  each round of blocks is followed by a `--pause` (0.25 s, shorter than the 2-s quiet time
  that would start a commit on its own), as a person's turns come with pauses, so the turns
  span ~23 s and commits land among them. `--pause 0` runs them back to back.
- Peak RSS of each server (VmHWM) and its growth per turn (VmRSS after turn 50 vs the end).
- Start-up: `duragent serve` started to `/readyz` answering 200, `--startups` times after one
  untimed start (which writes bytecode); wall time and the server's CPU until then.
- `--against DIR` (DIR holds another tree's `duragent/`): a third server, git on, runs that
  tree's code in the same blocks, for an A/B of overhead and server CPU per turn in one run.
- `--floor`: the third server is `bench/floor_server.py` instead, the least a session server can
  do per turn (aiohttp in and out, history in memory, each message encoded once, two fsyncs):
  the overhead no change to Duragent's code can remove on this machine.
- The first turn waits until the workspaces' files are older than `file_stamps.SETTLE_NS` (3 s;
  the start-ups take most of it), as a person's files are by the time they talk to an agent: a
  file changed in the last 3 s is read again every turn (git's racily-clean rule), which made
  turns 1-50 of a workspace made just before ~20% slower than the rest. `--fresh` starts at once
  and measures that.

Targets (2 cores, issue #17): median overhead <= 2.0 ms, p99 <= 5 ms; turns 951-1000 within
15% of turns 1-50; server CPU per turn git on / git off <= 1.10; peak RSS <= 60 MiB; start-up
<= 0.4 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from duragent.file_stamps import SETTLE_NS
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.testing.fake_llm import read_recorded, start_process

REPLY = "Sure, here is a short answer to that."
BLOCK = 20
#: New sessions whose first turns `in_alternation` pairs with the long session's next ones.
ALTERNATION_ROUNDS = 2
_TICKS = os.sysconf("SC_CLK_TCK")


def start_fake_llm(root: Path) -> tuple[subprocess.Popen[str], str, Path]:
    """The instant fake model in its own process, recording request bodies; (process, url, record)."""
    script = root / "reply.yaml"
    script.write_text(f"default:\n  text: {REPLY!r}\n  chunks: 8\n")
    record = root / "requests.bin"
    record.touch()
    process, url = start_process(script, record=record)
    return process, url, record


def make_workspace(root: Path, llm_url: str, *, git: bool) -> Path:
    """`duragent init` with an OpenAI-compatible agent on the fake model; git off when asked."""
    init_workspace(root, provider=ProviderChoice("openai", "bench", "benchmark"), git=git)
    agent_yaml = root / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text(
        agent_yaml.read_text().replace("name: bench", f"name: bench\n    base_url: {llm_url}")
    )
    if not git:
        config = root / "duragent.yaml"
        config.write_text(config.read_text() + "\ngit:\n  enabled: false\n")
    return root


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A `duragent serve` process of one workspace."""

    root: Path
    process: subprocess.Popen[bytes]
    url: str
    started_in: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / ".duragent"

    def cpu_seconds(self) -> float:
        """utime + stime of the server, of its children it has waited for (git commands), and of
        the ones still running other than git (the commit process, with its own git commands)."""
        pid = self.process.pid
        return process_cpu(pid) + sum(process_cpu(child) for child in long_lived_children(pid))

    def memory_kib(self, key: str) -> int:
        """A line of /proc/PID/status in KiB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


#: How `launch` runs `duragent` (or, for the floor, bench/floor_server.py).
DURAGENT = ("-m", "duragent")
FLOOR = (str(Path(__file__).resolve().parent / "floor_server.py"),)


def launch(
    root: Path, env: dict[str, str], port: int, program: tuple[str, ...] = DURAGENT
) -> subprocess.Popen[bytes]:
    """`duragent serve` of the workspace at `root` on `port`, its output in `root/serve.log`.

    It runs in `root`, so the current folder's `duragent/` never shadows the one meant.
    """
    with (root / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                *program,
                "-c",
                str(root / "duragent.yaml"),
                "serve",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )


async def until_settled(made_at: float) -> None:
    """Until files written at `made_at` (monotonic seconds) are old enough to be cached by stamp."""
    settled_at = made_at + SETTLE_NS / 1e9 + 0.5
    await asyncio.sleep(max(0.0, settled_at - time.monotonic()))


async def start_server(
    root: Path, http: aiohttp.ClientSession, env: dict[str, str], program: tuple[str, ...] = DURAGENT
) -> Server:
    """`duragent serve` on a free port; returns once `/readyz` answers 200 (timed)."""
    port = free_port()
    started = time.perf_counter()
    process = launch(root, env, port, program)
    url = f"http://127.0.0.1:{port}"
    await until_ready(http, process, url, root, poll=0.005)
    return Server(root, process, url, time.perf_counter() - started, api_headers(root))


async def until_ready(
    http: aiohttp.ClientSession,
    process: subprocess.Popen[bytes],
    url: str,
    root: Path,
    poll: float,
    within: float | None = None,
) -> None:
    """Until the server at `url` answers `/readyz` with 200; an error if it exits first (or
    `within` seconds pass)."""
    deadline = None if within is None else time.monotonic() + within
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"duragent serve exited with {process.returncode}: see {root / 'serve.log'}")
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError(f"duragent serve did not answer in {within} s: see {root / 'serve.log'}")
        try:
            async with http.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(poll)


def api_headers(root: Path) -> dict[str, str]:
    """The API token header of the workspace's server, like the CLI sends (none if it needs none)."""
    tokens = root / ".duragent" / "run" / "tokens.json"
    if not tokens.exists():
        return {}
    return {"Authorization": f"Bearer {json.loads(tokens.read_text())['api_token']}"}


async def new_session(http: aiohttp.ClientSession, server: Server) -> str:
    async with http.post(
        f"{server.url}/api/v1/sessions", json={"agent": "assistant"}, headers=server.headers
    ) as response:
        response.raise_for_status()
        return str((await response.json())["session_id"])


async def end_session(http: aiohttp.ClientSession, server: Server, session: str) -> None:
    """End the session (the server lets go of it); the floor has no such route and ignores it."""
    async with http.post(f"{server.url}/api/v1/sessions/{session}/end", headers=server.headers) as response:
        if response.status != 404:
            response.raise_for_status()


async def turn(http: aiohttp.ClientSession, server: Server, session: str, i: int) -> float:
    """One turn: POST the message, read the synchronous reply; its seconds."""
    started = time.perf_counter()
    async with http.post(
        f"{server.url}/api/v1/sessions/{session}/messages",
        json={"content": f"question number {i}"},
        headers=server.headers,
    ) as response:
        body = await response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or REPLY.encode() not in body:
        raise RuntimeError(f"turn {i} failed: {response.status} {body[:300]!r}")
    return elapsed


async def bare(http: aiohttp.ClientSession, llm_url: str, bodies: Sequence[bytes]) -> list[float]:
    """Seconds per replay of each recorded body straight to the fake model, read to the end."""
    times = []
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        started = time.perf_counter()
        async with http.post(f"{llm_url}/chat/completions", data=body, headers=headers) as response:
            await response.read()
        times.append(time.perf_counter() - started)
    return times


def process_cpu(pid: int) -> float:
    """utime + stime of a process and of the children it has waited for (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    return sum(int(value) for value in stat.rsplit(")", 1)[1].split()[11:15]) / _TICKS


def thread_cpu(pid: int) -> float:
    """Seconds the process's threads have run on a CPU (schedstat: nanoseconds, where the clock
    ticks of `process_cpu` are 10 ms); its children are not counted."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def long_lived_children(pid: int) -> list[int]:
    """The running children of `pid`, any thread's, except short git commands (counted once reaped)."""
    children = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in listing.read_text().split():
            try:
                name = Path(f"/proc/{child}/comm").read_text().strip()
            except FileNotFoundError:
                continue
            if name != "git":
                children.append(int(child))
    return children


def branch_ref(data: Path) -> Path:
    """The file of the branch the data repo's HEAD is on (a commit rewrites it)."""
    head = (data / ".git" / "HEAD").read_text().strip()
    return data / ".git" / head.removeprefix("ref: ")


def stamp_of(path: Path) -> int:
    """When `path` last changed (ns), 0 while it does not exist: checked after every block, so
    no `git` process runs beside the servers."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def commits(data: Path) -> int:
    done = subprocess.run(
        ["git", "-C", str(data), "rev-list", "--count", "HEAD"], capture_output=True, text=True
    )
    return int(done.stdout.strip() or 0)


def settle(server: Server, within: float = 30.0) -> None:
    """Until the server's committer has committed every change (nothing left to commit)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = subprocess.run(
            ["git", "-C", str(server.data), "status", "--porcelain", "--", "sessions", "memory"],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
        if not status.stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError("the git-on server did not commit its changes in time")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def p99(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def verdict(met: bool) -> str:
    return "ok" if met else "MISSED"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Run:
    """What one server measured."""

    turns: list[float] = field(default_factory=list)
    #: Latencies of the warm-up session's turns (before the measured session).
    warmup: list[float] = field(default_factory=list)
    #: CPU seconds of the server's threads in each block of the measured session.
    block_cpu: list[float] = field(default_factory=list)
    #: The first turn of each block (all servers' turns and the replays) during which the
    #: git-on server's branch moved: a commit landed.
    commit_blocks: list[int] = field(default_factory=list)
    #: Overheads of turns after the measured ones, and of a new session's first turns, taken in
    #: alternation (`in_alternation`).
    long_late: list[float] = field(default_factory=list)
    new_early: list[float] = field(default_factory=list)
    #: Wall seconds of the measured session, all servers' blocks and the replays.
    seconds: float = 0.0
    cpu: float = 0.0
    rss_early_kib: int = 0
    rss_end_kib: int = 0
    peak_kib: int = 0


async def measure(
    turns: int,
    startups: int,
    against: Path | None,
    floor: bool,
    fresh: bool = False,
    warmup: int = 0,
    pause: float = 0.0,
) -> None:
    # Servers load modules from bytecode, as an installed package does: with
    # PYTHONDONTWRITEBYTECODE set (some shells and CI set it) every start would compile the
    # package's source again, ~30% of a start's CPU on this machine.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["OPENAI_API_KEY"] = "sk-bench"
    print(f"load average at start: {load_average()}   ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="duragent-serve-turn-") as tmp:
        root = Path(tmp)
        fake, llm_url, record = start_fake_llm(root)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            try:
                on_root = make_workspace(root / "on", llm_url, git=True)
                off_root = make_workspace(root / "off", llm_url, git=False)
                last_made = time.monotonic()
                startup_times: list[tuple[float, float]] = []
                for i in range(startups + 1 if startups else 0):
                    server = await start_server(on_root, http, env)
                    if i:  # the first start writes bytecode and warms the page cache: not timed
                        startup_times.append((server.started_in, server.cpu_seconds()))
                    server.stop()
                on = await start_server(on_root, http, env)
                off = await start_server(off_root, http, env)
                other = None
                if against is not None:
                    other_root = make_workspace(root / "against", llm_url, git=True)
                    last_made = time.monotonic()
                    other_env = {**env, "PYTHONPATH": str(against)}
                    (await start_server(other_root, http, other_env)).stop()  # writes its bytecode
                    other = await start_server(other_root, http, other_env)
                elif floor:
                    other = await start_server(
                        make_workspace(root / "floor", llm_url, git=True), http, env, FLOOR
                    )
                if fresh:
                    print("turns start at once: files younger than 3 s are read again each turn")
                else:
                    print("turns start once the workspaces' files are 3 s old (--fresh: at once)")
                    await until_settled(last_made)
                try:
                    label = "floor" if floor else "against"
                    await run_turns(
                        http, turns, llm_url, record, on, off, startup_times, other, label, warmup, pause
                    )
                finally:
                    for server in (on, off, other):
                        if server is not None:
                            server.stop()
            finally:
                fake.terminate()
                fake.wait(timeout=30)


async def run_turns(
    http: aiohttp.ClientSession,
    turns: int,
    llm_url: str,
    record: Path,
    on: Server,
    off: Server,
    startup_times: list[tuple[float, float]],
    other: Server | None = None,
    other_label: str = "against",
    warmup: int = 0,
    pause: float = 0.0,
) -> None:
    servers = {"on": on, "off": off, **({"against": other} if other is not None else {})}
    results = {"on": Run(), "off": Run(), "against": Run()}
    if warmup:
        for name, server in servers.items():
            session = await new_session(http, server)
            results[name].warmup = [await turn(http, server, session, i) for i in range(warmup)]
            await end_session(http, server, session)
        await asyncio.to_thread(settle, on)
        if other is not None:
            await asyncio.to_thread(settle, other)
    on_session, off_session = await new_session(http, on), await new_session(http, off)
    other_session = await new_session(http, other) if other is not None else ""
    replays: list[float] = []
    _, offset = read_recorded(record)  # the start-ups' and warm-up's requests, if any
    commits_before = commits(on.data)
    cpu_start = {name: server.cpu_seconds() for name, server in servers.items()}
    window = min(50, max(1, turns // 4))

    async def timed_block(name: str, session: str, block: range) -> None:
        server, result = servers[name], results[name]
        before = thread_cpu(server.process.pid)
        result.turns += [await turn(http, server, session, i) for i in block]
        result.block_cpu.append(thread_cpu(server.process.pid) - before)

    head = branch_ref(on.data)
    head_stamp = stamp_of(head)
    started = time.monotonic()
    sessions = {"on": on_session, "off": off_session, "against": other_session}
    for round_number, first in enumerate(range(0, turns, BLOCK)):
        block = range(first, min(first + BLOCK, turns))
        bodies: list[bytes] = []
        for name in in_turn(list(servers), round_number):
            await timed_block(name, sessions[name], block)
            sent, offset = read_recorded(record, offset)
            if name == "on":
                bodies = sent
        replays += await bare(http, llm_url, bodies)
        _, offset = read_recorded(record, offset)
        if len(bodies) != len(block):
            raise RuntimeError(f"{len(bodies)} model requests for {len(block)} turns: a turn retried?")
        if stamp_of(head) != head_stamp:  # a commit landed while this block's turns ran
            head_stamp = stamp_of(head)
            results["on"].commit_blocks.append(first)
        if first + BLOCK >= window and not results["on"].rss_early_kib:
            results["on"].rss_early_kib = on.memory_kib("VmRSS")
            results["off"].rss_early_kib = off.memory_kib("VmRSS")
        if pause:
            await asyncio.sleep(pause)
    results["on"].seconds = time.monotonic() - started
    commits_during = commits(on.data) - commits_before
    load_end = load_average()
    await asyncio.to_thread(settle, on)
    if other is not None:
        await asyncio.to_thread(settle, other)  # its commits are counted like this tree's
    commits_total = commits(on.data) - commits_before
    for name, server in servers.items():
        result = results[name]
        result.cpu = server.cpu_seconds() - cpu_start[name]
        result.rss_end_kib = server.memory_kib("VmRSS")
        result.peak_kib = server.memory_kib("VmHWM")
    long_sessions = {"on": on_session, "off": off_session}
    if other is not None:
        long_sessions["against"] = other_session
    for name, pair in (
        await in_alternation(http, llm_url, record, offset, servers, long_sessions, turns, window)
    ).items():
        results[name].long_late, results[name].new_early = pair
    report(
        turns, window, results, replays, commits_during, commits_total, startup_times, load_end, other_label
    )


def in_turn(names: list[str], round_number: int) -> list[str]:
    """`names` rotated by `round_number`: each server goes first in as many rounds as the others."""
    shift = round_number % len(names)
    return names[shift:] + names[:shift]


async def in_alternation(
    http: aiohttp.ClientSession,
    llm_url: str,
    record: Path,
    offset: int,
    servers: dict[str, Server],
    long_sessions: dict[str, str],
    turns: int,
    count: int,
    rounds: int = ALTERNATION_ROUNDS,
) -> dict[str, tuple[list[float], list[float]]]:
    """Overheads of `rounds` * `count` more turns of each server's long session and of the first
    `count` turns of `rounds` new sessions, one of each in turn: both at the same moments of the
    machine, so what differs is the history. Per server: (the long session's, the new ones')."""
    measured: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in long_sessions}
    next_turn = turns
    blocks = 0
    for _round in range(rounds):
        new_sessions = {name: await new_session(http, servers[name]) for name in long_sessions}
        _, offset = read_recorded(record, offset)
        for first in range(0, count, BLOCK):
            block = range(first, min(first + BLOCK, count))
            latencies: dict[str, list[float]] = {}
            blocks += 1
            for name in in_turn(list(long_sessions), blocks):
                server, long_session, new = servers[name], long_sessions[name], new_sessions[name]
                latencies[name] = []
                for i in block:
                    latencies[name].append(await turn(http, server, long_session, next_turn + i))
                    latencies[name].append(await turn(http, server, new, i))
                bodies, offset = read_recorded(record, offset)
                if name == "on":
                    on_bodies = bodies  # the other servers send the same bytes
            replayed = await bare(http, llm_url, on_bodies)
            _, offset = read_recorded(record, offset)
            for name, values in latencies.items():
                overheads = [
                    latency - bare_latency for latency, bare_latency in zip(values, replayed, strict=True)
                ]
                measured[name][0].extend(overheads[0::2])
                measured[name][1].extend(overheads[1::2])
        next_turn += count
    return measured


def report(
    turns: int,
    window: int,
    results: dict[str, Run],
    replays: list[float],
    commits_during: int,
    commits_total: int,
    startup_times: list[tuple[float, float]],
    load_end: str,
    other_label: str = "against",
) -> None:
    on, off, other = results["on"], results["off"], results["against"]
    overhead = [t - r for t, r in zip(on.turns, replays, strict=True)]
    overhead_off = [t - r for t, r in zip(off.turns, replays, strict=True)]
    early, late = statistics.median(overhead[:window]), statistics.median(overhead[-window:])
    print(f"turns per server: {turns} in one session, blocks of {BLOCK}")
    if on.warmup:
        print(
            f"warm-up before it: {len(on.warmup)} turns in another session, turn p50 git on "
            f"{ms(statistics.median(on.warmup))} ms, git off {ms(statistics.median(off.warmup))} ms "
            f"(first turn {ms(on.warmup[0])} / {ms(off.warmup[0])} ms); not counted"
        )
    print(f"{'':<40}{'p50 ms':>9}{'p99 ms':>9}")
    for label, values in (
        ("bare request to the model (replayed)", replays),
        ("turn through serve, git on", on.turns),
        ("turn through serve, git off", off.turns),
        ("overhead per turn, git on", overhead),
        ("overhead per turn, git off", overhead_off),
    ):
        print(f"{label:<40}{ms(statistics.median(values)):>9}{ms(p99(values)):>9}")
    if other.turns:
        overhead_other = [t - r for t, r in zip(other.turns, replays, strict=True)]
        for label, values in (
            (f"turn through serve, {other_label}", other.turns),
            (f"overhead per turn, {other_label}", overhead_other),
        ):
            print(f"{label:<40}{ms(statistics.median(values)):>9}{ms(p99(values)):>9}")
    p50_ok = statistics.median(overhead) <= 0.002
    p99_ok = p99(overhead) <= 0.005
    print(f"overhead target: p50 <= 2.0 ms {verdict(p50_ok)}; p99 <= 5 ms {verdict(p99_ok)}")
    drift = late / early if early > 0 else float("inf")
    print(
        f"overhead turns 1-{window} vs {turns - window + 1}-{turns}: {ms(early)} -> {ms(late)} ms "
        f"({drift:.2f}x; target within 15%: {'ok' if abs(drift - 1) <= 0.15 else 'MISSED'})"
    )
    paired = []
    for label, result in (("git on", on), ("git off", off), (other_label, other)):
        if result.new_early:
            new, long = statistics.median(result.new_early), statistics.median(result.long_late)
            met = abs(long / new - 1) <= 0.15
            paired.append(f"{label} {ms(new)} -> {ms(long)} ms ({long / new:.2f}x; {verdict(met)})")
    if paired:
        print(
            f"  in alternation, {ALTERNATION_ROUNDS} new sessions' turns 1-{window} vs this one's "
            f"{turns + 1}-{turns + ALTERNATION_ROUNDS * window}: " + "; ".join(paired)
        )
    # the same for the servers beside it: growth they share is the machine's or the history's
    # size on the wire, not the git-on server's own
    yardsticks = [("git off", overhead_off)]
    if other.turns:
        yardsticks.append((other_label, [t - r for t, r in zip(other.turns, replays, strict=True)]))
    print(
        "  same turns, "
        + "; ".join(
            f"{label}: {ms(first)} -> {ms(last)} ms ({last / first:.2f}x)"
            for label, values in yardsticks
            for first, last in [(statistics.median(values[:window]), statistics.median(values[-window:]))]
        )
    )
    # what the servers' own threads spent per turn: growth here is the server's, not the machine's
    blocks = max(1, window // BLOCK + (window % BLOCK > 0))
    span = min(turns, blocks * BLOCK)
    cpu_growth = []
    for label, result in (("git on", on), ("git off", off), (other_label, other)):
        if result.block_cpu:
            first, last = sum(result.block_cpu[:blocks]) / span, sum(result.block_cpu[-blocks:]) / span
            cpu_growth.append(f"{label} {ms(first)} -> {ms(last)} ms ({last / first:.2f}x)")
    print(
        f"server CPU per turn (its threads), turns 1-{span} vs {turns - span + 1}-{turns}: "
        + "; ".join(cpu_growth)
    )
    # a cost paid every few turns (a snapshot, a cache refresh) shows as one slow column
    for label, values in [("git on", overhead), *yardsticks[1:]]:
        by_column = [statistics.median(values[column::10]) for column in range(10)]
        print(
            f"overhead by turn number mod 10, {label} (p50 ms): "
            + " ".join(f"{column}:{ms(value)}" for column, value in enumerate(by_column))
        )
    per_on, per_off = on.cpu / turns, off.cpu / turns
    ratio = per_on / per_off if per_off else float("inf")
    print(
        f"server CPU per turn (process + git children): git on {ms(per_on)} ms, git off {ms(per_off)} ms, "
        f"ratio {ratio:.3f} (target <= 1.10: {'ok' if ratio <= 1.10 else 'MISSED'})"
    )
    if other.turns:
        per_other = other.cpu / turns
        print(
            f"server CPU per turn, {other_label}: {ms(per_other)} ms; this tree / {other_label}: "
            f"{per_on / per_other:.3f}"
        )
    if on.commit_blocks:
        landed = ", ".join(f"{first + 1}-{first + BLOCK}" for first in on.commit_blocks)
        where = f"in its blocks of turns {landed}"
    else:
        # the default git.max_commit_delay: a commit waits at most that long under constant writes
        where = (
            f"none: the turns took {on.seconds:.1f} s, a commit comes 10 s after the first change; "
            "a longer --pause spreads them"
        )
    print(
        f"commits by the git-on server: {commits_during} while the turns ran ({where}), "
        f"{commits_total} with the last (counted in its CPU per turn)"
    )
    for name, result in (("git on", on), ("git off", off)):
        growth = (result.rss_end_kib - result.rss_early_kib) / max(1, turns - window)
        print(
            f"server RSS, {name}: peak {result.peak_kib / 1024:.1f} MiB, after turn {window} "
            f"{result.rss_early_kib / 1024:.1f} MiB, at the end {result.rss_end_kib / 1024:.1f} MiB "
            f"({growth:+.2f} KiB per turn)"
        )
    peak_ok = on.peak_kib / 1024 <= 60
    print(f"peak RSS target <= 60 MiB: {'ok' if peak_ok else 'MISSED'}")
    if startup_times:
        start = statistics.median(wall for wall, _ in startup_times)
        spread = ", ".join(f"{wall:.3f}" for wall, _ in startup_times)
        print(f"serve to /readyz: median {start:.3f} s ({spread}); target <= 0.4 s: {verdict(start <= 0.4)}")
        cpu = statistics.median(seconds for _, seconds in startup_times)
        print(f"server CPU until /readyz answered: median {cpu:.2f} s")
    print(f"load average at the end: {load_end}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 turns, 2 start-ups")
    parser.add_argument("--startups", type=int, default=5, help="serve start-ups timed before the turns")
    parser.add_argument(
        "--against",
        type=Path,
        help="a folder holding another tree's duragent/: a third server (git on) runs it",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="a third server: bench/floor_server.py, the least a server can do",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start the turns at once, while the workspaces' files are younger than 3 s",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.25,
        help="seconds between rounds of blocks, so the git-on server's commits land among the turns",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="turns each server answers in another session first, not counted (0: none)",
    )
    args = parser.parse_args()
    if args.floor and args.against:
        parser.error("--floor and --against both take the third server's place: choose one")
    turns, startups = (200, 2) if args.quick else (args.turns, args.startups)
    against = args.against.resolve() if args.against is not None else None
    asyncio.run(measure(turns, startups, against, args.floor, args.fresh, args.warmup, args.pause))


if __name__ == "__main__":
    main()
