"""Git never sits on a turn's path: turns complete while a commit waits on the repository."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory


def committed_log(data: Path, session_id: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(data), "show", f"HEAD:sessions/{session_id}/events.jsonl"],
        capture_output=True,
        text=True,
    )
    return done.stdout


async def wait_for(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def take_index_lock(lock: Path) -> None:
    """Take `.git/index.lock` as git does: create it only when nobody holds it (the committer
    updates the index just after its commit shows in the log; overwriting its lock file would
    let its rename remove ours)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return
        except FileExistsError:
            assert time.monotonic() < deadline, "index.lock stayed held"
            await asyncio.sleep(0.02)


async def turn(api: Api, session_id: str, content: str) -> None:
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": content})
    assert status == 200, body


async def test_a_turn_completes_while_a_commit_is_blocked(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=True)
    committer = api.server.app[STATE].workspace.committer
    assert committer is not None
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    fake_llm.enqueue(text("first answer"))
    await turn(api, session_id, "first question")
    await wait_for(lambda: "first answer" in committed_log(data, session_id))

    # a person's git command holds the index: the committer's next commit has to wait for it
    lock = data / ".git" / "index.lock"
    await take_index_lock(lock)
    try:
        fake_llm.enqueue(text("second answer"))
        await turn(api, session_id, "second question")
        await wait_for(lambda: committer.committing)

        fake_llm.enqueue(text("third answer"))
        await turn(api, session_id, "third question")

        assert "second answer" not in committed_log(data, session_id)
    finally:
        lock.unlink()
    await wait_for(lambda: "third answer" in committed_log(data, session_id))
