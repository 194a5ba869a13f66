"""`duragent agent context NAME --session ID` shows the conversation as the model is sent it: the
tool calls an assistant message makes, and which call each tool result answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def turn_reading_a_file(data: Path) -> tuple[str, list[dict[str, Any]]]:
    """Run a turn of agent `helper` that reads a file: its session's id, and the messages of the
    model's last request."""
    store = FilesystemSessionStore(data / "sessions", fsync="never")
    session = await SessionLog.create(store, agent="helper")
    async with FakeLLMServer() as server:
        agent = agent_in(
            data,
            f"name: helper\nmodel: {{provider: openai, name: gpt-test, base_url: '{server.url}'}}\n"
            "system_prompt: You help.\ntools: [read_file]\n",
            policy="mode: allow\n",
        )
        (data / "work").mkdir()
        (data / "work" / "notes.txt").write_text("the notes")
        server.enqueue(tool_calls([("read_file", {"path": "notes.txt"})]), text("read it"))
        async with runtime_on(data) as runtime:
            await turn_answering(runtime, session, agent, "read my notes", decision="allow")
    await store.close()
    return session.session_id, server.requests[-1].body["messages"]


def test_agent_context_shows_the_tool_calls_and_results_the_model_was_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "duragent.yaml").write_text("data_dir: .duragent\n")
    session_id, sent = asyncio.run(turn_reading_a_file(tmp_path / ".duragent"))
    monkeypatch.chdir(tmp_path)

    shown = CliRunner().invoke(build_app(), ["agent", "context", "helper", "--session", session_id])
    as_json = CliRunner().invoke(
        build_app(), ["agent", "context", "helper", "--session", session_id, "--json"]
    )

    call = sent[2]["tool_calls"][0]
    assert (sent[3]["role"], sent[3]["tool_call_id"]) == ("tool", call["id"])
    messages = json.loads(as_json.output)["messages"]
    assert messages[2]["tool_calls"] == [
        {"id": call["id"], "name": "read_file", "arguments": json.loads(call["function"]["arguments"])}
    ]
    assert messages[3] | {"content": None} == {
        "role": "tool",
        "content": None,
        "tool_call_id": call["id"],
        "name": "read_file",
    }
    assert [m["content"] or "" for m in messages[:4]] == [m["content"] or "" for m in sent]
    assert f'-> read_file {call["id"]} {{"path": "notes.txt"}}' in shown.output
    assert f"===== tool (read_file {call['id']}) =====\nthe notes" in shown.output
