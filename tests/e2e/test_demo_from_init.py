"""A fresh `duragent init --yes` workspace works offline: the demo provider, memory, git history."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.runtime.events import TextDelta, ToolCallFinished, TurnFinished
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.stores.base import utcnow
from duragent.workspace import Workspace

DURAGENT = Path(sys.executable).parent / "duragent"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    subprocess.run([str(DURAGENT), "init", "--yes", str(root)], check=True, capture_output=True)
    monkeypatch.chdir(root)
    return root


async def one_turn(message: str) -> tuple[list[object], str]:
    async with Workspace(load_config()) as ws:
        providers = ProviderPool({})
        runtime = Runtime(
            provider_for=providers.for_agent,
            memory=ws.stores.memory,
            artifacts=ws.stores.artifacts,
            on_change=ws.record_change,
        )
        agent = ws.agents.get("assistant")
        log = await SessionLog.create(ws.stores.sessions, agent=agent.name)
        events = await drain(runtime.run_turn(log, agent, message))
        await providers.close()
        return events, log.session_id


def test_demo_provider_answers_offline_and_says_what_it_is(workspace: Path) -> None:
    events, _ = asyncio.run(one_turn("hello, who are you?"))
    reply = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "demo provider" in reply
    assert "OPENAI_API_KEY" in reply
    assert isinstance(events[-1], TurnFinished)


def test_remember_goes_through_the_memory_tool_into_todays_file_and_git(workspace: Path) -> None:
    events, session_id = asyncio.run(one_turn("remember my favourite tea is genmaicha"))
    assert any(isinstance(e, ToolCallFinished) and e.tool == "memory" and e.ok for e in events)
    today = workspace / ".duragent" / "memory" / "assistant" / f"{utcnow().date().isoformat()}.md"
    assert "- my favourite tea is genmaicha" in today.read_text()
    log = subprocess.run(
        ["git", "-C", str(workspace / ".duragent"), "log", "--format=%s", "--name-only"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"memory/assistant/{today.name}" in log
    assert f"sessions/{session_id}/events.jsonl" in log
