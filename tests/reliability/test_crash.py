"""`kill -9` of `duragent serve` at random moments mid-turn, on files and on PostgreSQL.

Each round starts the server, begins three turns at once (one streaming text, one running a
tool, one waiting for an approval), and SIGKILLs the server at a random moment after every
message was acknowledged. After the last round a clean server recovers everything and stops.
What must hold: no acknowledged message lost or stored twice, no tool call run twice, every
session loadable, and (on files) every change committed and `git fsck` clean.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from duragent.access_tokens import auth_headers, ensure_tokens
from duragent.config import load_config
from duragent.testing.fake_llm import FakeLLMServer, RecordedRequest, ScriptedResponse, text, tool_calls
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import read_sse, start_serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

AGENT = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: worker
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
    api_key_env: FAKE_LLM_KEY
  system_prompt: You are a test agent.
  session:
    on_disconnect: continue
  tools:
    builtin: [bash]
    policy:
      mode: ask
      allow: ["bash:mkdir *"]
"""
KINDS = ("stream", "tool", "ask")


def workspace(root: Path, llm_url: str, pg_url: str | None) -> Path:
    data = root / "data"
    agent = data / "agents" / "worker"
    agent.mkdir(parents=True)
    (agent / "agent.yaml").write_text(AGENT.format(url=llm_url))
    (data / ".gitignore").write_text("run/\n.locks/\n*.lock\n")
    lines = [f"data_dir: {data}", "session:", "  fsync: turn", "git:", "  enabled: true"]
    lines += ["  commit_debounce: 200ms", "  max_commit_delay: 1s", "server:", "  host: 127.0.0.1"]
    if pg_url:
        lines += ["services:", "  session:", "    backend: postgres", f"    url: {pg_url}"]
    config = root / "duragent.yaml"
    config.write_text("\n".join(lines) + "\n")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *command], cwd=data, check=True, capture_output=True)
    return config


def responder(ran: Path) -> Callable[[RecordedRequest], ScriptedResponse]:
    """What the model says, from what it is asked (a restarted turn asks again)."""

    def respond(request: RecordedRequest) -> ScriptedResponse:
        last = request.messages[-1]
        if last.get("role") == "tool":
            return text("done with the tool", chunks=4, chunk_delay=0.02)
        words = str(last.get("content") or "").split()
        name, kind = ([*words, "", ""])[:2]
        if kind == "tool":
            return tool_calls([("bash", {"command": f"mkdir {ran / name}"})])
        if kind == "ask":
            return tool_calls([("bash", {"command": f"rmdir {ran / name}"})])
        return text(f"a streamed reply to {name} " + "word " * 30, chunks=12, chunk_delay=0.03)

    return respond


async def send(http: aiohttp.ClientSession, url: str, session_id: str, content: str) -> None:
    """Send over SSE and return once the server acknowledged (its first event: the stored message)."""
    response = await http.post(f"{url}/api/v1/sessions/{session_id}/stream", json={"content": content})
    assert response.status == 200, await response.text()
    events = read_sse(response)
    await asyncio.wait_for(events.__anext__(), 60)
    # the rest of the stream is cut by the kill


async def new_session(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/api/v1/sessions", json={"agent": "worker"}) as response:
        body = await response.json()
        assert response.status == 201, body
        return str(body["session_id"])


async def crash_rounds(
    root: Path, config: Path, rounds: int, rng: random.Random
) -> tuple[list[str], dict[str, str]]:
    """Run the rounds; the acknowledged message texts and the session of each."""
    acknowledged: list[str] = []
    sessions: dict[str, str] = {}
    # the tokens every server of this workspace requires (made now, before the first start)
    ensure_tokens(load_config(config).data_path)
    async with aiohttp.ClientSession(headers=auth_headers(load_config(config))) as http:
        for round_number in range(rounds):
            server = await asyncio.to_thread(start_serve, config, root / f"serve-{round_number}.log")
            try:
                streams = []
                for kind in KINDS:
                    session_id = await new_session(http, server.url)
                    name = f"m{round_number}{kind}"
                    streams.append(asyncio.create_task(send(http, server.url, session_id, f"{name} {kind}")))
                    sessions[name] = session_id
                for stream, kind in zip(streams, KINDS, strict=True):
                    await stream
                    acknowledged.append(f"m{round_number}{kind} {kind}")
                await asyncio.sleep(rng.uniform(0, 0.6))  # the fault's moment: random on purpose
            finally:
                server.kill()
    return acknowledged, sessions


async def stored_messages(
    http: aiohttp.ClientSession, url: str, session_ids: set[str]
) -> dict[str, list[str]]:
    """Each session's user messages and tool results, once no turn of it runs any more.

    Recovery resumes the turns the kills cut off; a turn waiting for a person counts as over.
    """
    stored: dict[str, list[str]] = {}
    for session_id in session_ids:
        async with asyncio.timeout(120):
            while True:
                async with http.get(f"{url}/api/v1/sessions/{session_id}") as response:
                    session = await response.json()
                assert response.status == 200, f"session {session_id} does not load: {session}"
                if not session.get("busy") or session.get("pending_approvals"):
                    break
                await asyncio.sleep(0.1)  # polling the API for the condition: the turn is over
        async with http.get(f"{url}/api/v1/sessions/{session_id}/messages?limit=1000") as response:
            page = await response.json()
        stored[session_id] = [
            str(item.get("content"))
            for item in page["messages"]
            if item["type"] in ("user_message", "tool_result")
        ]
    return stored


def git(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=False)


@pytest.fixture(params=["files", "postgres"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    if request.param == "files":
        yield None
        return
    async with temporary_schema() as url:
        yield url


async def test_kill_9_mid_turn_loses_nothing_acknowledged_and_runs_no_tool_twice(
    tmp_path: Path, fake_llm: FakeLLMServer, backend: str | None, fault_count: Callable[[int], int]
) -> None:
    rounds = fault_count(15)  # per backend: 30 kill points in all
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    ran = tmp_path / "ran"
    ran.mkdir()
    fake_llm.responder = responder(ran)
    config = workspace(tmp_path, fake_llm.url, backend)
    acknowledged, sessions = await crash_rounds(tmp_path, config, rounds, rng)

    server = await asyncio.to_thread(start_serve, config, tmp_path / "serve-final.log")
    try:
        async with aiohttp.ClientSession(headers=server.headers) as http:
            messages = await stored_messages(http, server.url, set(sessions.values()))
    finally:
        exit_code = server.terminate()
    report = f"seed {seed}, {rounds} kills"
    assert exit_code == 0, f"{report}: the final server did not stop cleanly:\n{server.log()}"

    for content in acknowledged:
        found = messages[sessions[content.split()[0]]].count(content)
        assert found == 1, f"{report}: acknowledged message {content!r} stored {found} times"
    double_runs = [result for results in messages.values() for result in results if "File exists" in result]
    assert double_runs == [], f"{report}: a tool call ran twice"
    print(  # the figures docs/reliability.md records (pytest -s)
        f"\ncrash[{'postgres' if backend else 'files'}] {report}: {len(acknowledged)} acknowledged messages, "
        f"{len(sessions)} sessions, {sum(len(r) for r in messages.values())} stored messages and tool results"
    )
    if backend is None:
        data = tmp_path / "data"
        status = git(data, "status", "--porcelain", "--untracked-files=all").stdout.splitlines()
        assert status == [], f"{report}: files never committed, or an index left stale: {status}"
        fsck = git(data, "fsck", "--no-progress")
        assert fsck.returncode == 0, f"{report}: git fsck: {fsck.stderr}"
