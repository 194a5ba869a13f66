"""What a crash left uncommitted is committed when Duragent starts again, and `doctor` shows it meanwhile.

A `kill -9` between a store's write and the committer's debounce leaves files that differ from
HEAD. Nothing would commit them later unless the same session happens to be written again.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestServer

from duragent.config import load_config
from duragent.doctor import Check, diagnose
from duragent.ids import new_id
from duragent.server.app import create_app
from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import CHILD_ENV, start_test_server, write_workspace


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


async def write_uncommitted_session(sessions: Path) -> str:
    """What a server killed before its committer ran leaves: a session nobody ever committed."""
    store = FilesystemSessionStore(sessions, fsync="never")  # tells no committer, as if killed first
    # a finished exchange: nothing for recovery to resume (and so to write) on the next start
    log = await SessionLog.create(store, agent="helper", session_id=new_id("s"))
    await store.close()
    return log.state.session_id


async def data_repo_check(config_path: Path) -> Check:
    report = await diagnose(config_path, env=CHILD_ENV, wait_seconds=0.5)
    return next(check for check in report.checks if check.name == "data repo")


async def serve_once(config_path: Path) -> None:
    """Start the server and stop it again, doing nothing in between."""
    app = create_app(load_config(config_path), env=CHILD_ENV, shutdown_grace=1, idle_ttl=timedelta(minutes=5))
    server = await start_test_server(TestServer(app, host="127.0.0.1"))
    await server.close()


async def test_a_session_a_crash_left_uncommitted_is_committed_when_serve_starts_again(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config_path = write_workspace(tmp_path, fake_llm.url)
    data = tmp_path / "data"
    session_id = await write_uncommitted_session(data / "sessions")
    assert git(data, "status", "--porcelain"), "the crash left files that differ from HEAD"

    await serve_once(config_path)

    assert git(data, "status", "--porcelain", "--untracked-files=all") == ""
    tracked = git(data, "ls-files").split()
    assert f"sessions/{session_id}/events.jsonl" in tracked
    message = git(data, "log", "-1", "--format=%an%n%B", "--", f"sessions/{session_id}/events.jsonl")
    assert message.startswith("Duragent\n"), "the agent's files are committed as the agent's"
    assert f"session {session_id[:12]}" in message  # (the id cut to its time part)
    assert f"Duragent-Session: {session_id}" in message


async def test_doctor_reports_uncommitted_files_until_they_are_committed(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config_path = write_workspace(tmp_path, fake_llm.url)
    data = tmp_path / "data"
    assert (await data_repo_check(config_path)).status == "ok"

    session_id = await write_uncommitted_session(data / "sessions")
    check = await data_repo_check(config_path)
    assert check.status == "warn"
    assert "not committed" in check.message
    assert f"sessions/{session_id}" in check.message
    assert "duragent serve" in str(check.hint)

    await serve_once(config_path)
    after = await data_repo_check(config_path)
    assert after.status == "ok", after.message
