"""Every git commit failing (here: HEAD detached in the data directory; a full disk or a broken
repository fail the same way) while the server still serves turns: `/readyz` stays 200, so a load
balancer keeps the server, but its body says `degraded` with why, since when and what to do, and
`duragent serve status` and `duragent doctor` say it too. Once the repository is put right, the
next retry commits, and readiness is `ok` again, without a restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import cli, start_serve, write_workspace
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(data), *args], capture_output=True, text=True, check=True).stdout


async def test_failing_commits_are_a_degraded_readiness_named_by_status_and_doctor(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url)
    data = tmp_path / "data"
    branch = git(data, "branch", "--show-current").strip()
    git(data, "checkout", "--quiet", "--detach")
    server = start_serve(config, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(base_url=server.url, headers=server.headers) as http:

            async def readiness() -> tuple[int, dict[str, Any]]:
                async with http.get("/readyz") as response:
                    return response.status, await response.json()

            async with http.post("/api/v1/sessions", json={"agent": "helper"}) as response:
                session_id = (await response.json())["session_id"]
            fake_llm.enqueue(text("still answered"))
            async with http.post(
                f"/api/v1/sessions/{session_id}/messages", json={"content": "hi"}
            ) as response:
                assert (response.status, (await response.json())["content"]) == (200, "still answered")

            async def commits_reported_failing() -> tuple[int, dict[str, Any]] | None:
                status, body = await readiness()
                return (status, body) if any("commits failing" in line for line in body["warnings"]) else None

            status, body = await eventually(commits_reported_failing, within=30)
            assert (status, body["status"]) == (200, "degraded"), body
            (warning,) = [line for line in body["warnings"] if "commits failing since" in line]
            assert "HEAD is detached" in warning
            assert "without a restart" in warning

            shown = cli(config, "serve", "status")
            assert shown.returncode == 0, shown.stderr
            assert "degraded" in shown.stdout
            assert "commits failing since" in shown.stdout

            doctor = cli(config, "doctor", "--json")
            checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
            assert checks["server"]["status"] == "warn"
            assert "commits failing since" in checks["server"]["message"]

            git(data, "switch", "--quiet", branch)

            async def ready_again() -> bool | None:
                return True if (await readiness())[1]["status"] == "ok" else None

            await eventually(ready_again, within=90)  # (the retry backs off up to 60 s)
            assert "still answered" in git(data, "log", "-p", "-1", "--", "sessions")
    finally:
        server.terminate()


async def test_a_memory_file_held_back_for_a_secret_is_named_by_readyz_and_doctor(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    """The commit was refused with a line in the server's log and nowhere else: the agent's later
    lines in that file waited, unseen, and went in with the next person's edit."""
    config = write_workspace(tmp_path, fake_llm.url)
    data = tmp_path / "data"
    daily = data / "memory" / "helper" / "2026-12-07.md"
    token = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"  # GitHub's token shape: a secret by its look
    server = start_serve(config, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(base_url=server.url, headers=server.headers) as http:

            async def warnings() -> list[str]:
                async with http.get("/readyz") as response:
                    body = await response.json()
                    assert (response.status, body["status"]) == (200, "ok"), body
                    return [line for line in body["warnings"] if "holds a secret" in line]

            daily.parent.mkdir(parents=True)
            daily.write_text(f"- pasted by hand: {token}\n")  # a person's edit, seen by the watcher

            async def held_back() -> list[str] | None:
                return await warnings() or None

            (warning,) = await eventually(held_back, within=30)
            assert warning.startswith("git: memory/helper/2026-12-07.md is not committed: it holds a secret")
            assert token not in warning

            doctor = cli(config, "doctor", "--json")
            checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
            assert checks["server"]["status"] == "warn"
            assert "memory/helper/2026-12-07.md is not committed" in checks["server"]["message"]

            daily.write_text("- I like hiking\n")

            async def taken() -> bool | None:
                return True if not await warnings() else None

            await eventually(taken, within=30)

            async def committed() -> bool | None:
                return True if "I like hiking" in git(data, "log", "-p", "-1", "--", "memory") else None

            await eventually(committed, within=30)
            assert token not in git(data, "log", "-p", "--all")
    finally:
        server.terminate()
