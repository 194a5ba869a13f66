"""The user message is fsynced while the model is asked, yet nothing is answered before it is on disk.

The server writes a turn's user message and fsyncs it in a thread while it builds and sends the
model request. These tests hold that fsync (or fail it) and check what clients see meanwhile:
no reply, no `start`, no 202 for a message queued behind it; and on a failed fsync, an error
and a log that ends on the events it had acknowledged.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.durability import DurabilityWaits, HeldLogFsync
from tests.e2e.server_harness import Api, ApiFactory, read_sse
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    started: Api = await start_api(git=False, fsync="turn")
    return started


async def stream(api: Api, session_id: str, content: str, seen: list[str]) -> None:
    """POST a message to /stream, noting each event's name in `seen` until the turn ends."""
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": content}
    ) as response:
        async for event in read_sse(response):
            seen.append(event.event)
            if event.event in ("done", "error"):
                return


def events_on_disk(tmp_path: Path, session_id: str) -> list[dict[str, Any]]:
    import json

    log = tmp_path / "ws0" / "data" / "sessions" / session_id / "events.jsonl"
    return [json.loads(line) for line in log.read_bytes().splitlines()]


async def test_no_reply_and_no_queued_answer_before_the_user_message_is_durable(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await api.new_session()
    held, waits = HeldLogFsync(monkeypatch), DurabilityWaits(monkeypatch)
    fake_llm.enqueue(text("hello there"), text("and again"))
    _, before = await api.call("GET", f"/api/v1/sessions/{session_id}")
    held.armed = True
    base = f"/api/v1/sessions/{session_id}/messages"

    reply = asyncio.ensure_future(api.call("POST", base, {"content": "first"}))
    await until(lambda: waits.count >= 1)  # the model answered; its text waits for the message
    assert len(fake_llm.requests) == 1  # the model was asked while the message's fsync ran
    # readers see the session as it durably is: without the message
    _, during = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert during["last_seq"] == before["last_seq"]
    _, history = await api.call("GET", base)
    assert history["messages"] == []
    queued = asyncio.ensure_future(api.call("POST", base, {"content": "second"}))
    await until(lambda: waits.count >= 2)  # the second message waits to be recorded after it
    assert not reply.done()
    assert not queued.done()

    held.release.set()
    assert await queued == (202, {"status": "queued", "position": 1})
    assert held.durable.is_set()
    status, body = await reply
    assert (status, body["content"]) == (200, "hello there")


async def test_a_stream_starts_only_once_its_message_is_durable(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await api.new_session()
    held, waits = HeldLogFsync(monkeypatch), DurabilityWaits(monkeypatch)
    fake_llm.enqueue(text("hello there"))
    held.armed = True
    seen: list[str] = []

    streaming = asyncio.ensure_future(stream(api, session_id, "first", seen))
    await until(lambda: waits.count >= 1)
    assert seen == []  # no `start`, no token: the message might still be lost

    held.release.set()
    await streaming
    assert seen[0] == "start"
    assert seen[-1] == "done"
    assert "token" in seen


async def test_a_user_message_whose_fsync_fails_fails_its_turn_and_is_not_in_the_log(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session_id = await api.new_session()
    acknowledged = events_on_disk(tmp_path, session_id)
    held = HeldLogFsync(monkeypatch)
    fake_llm.enqueue(text("never shown"), text("fine again"))
    held.armed, held.fail = True, True
    held.release.set()
    base = f"/api/v1/sessions/{session_id}/messages"

    status, body = await api.call("POST", base, {"content": "lost on a dying disk"})

    assert status == 502
    assert "Input/output error" in body["detail"]
    stored = events_on_disk(tmp_path, session_id)
    assert stored[: len(acknowledged)] == acknowledged
    assert [event["type"] for event in stored[len(acknowledged) :]] == ["error"]
    assert all(event["payload"].get("content") != "lost on a dying disk" for event in stored)
    assert [event["seq"] for event in stored] == list(range(1, len(stored) + 1))
    # the session goes on from there
    status, body = await api.call("POST", base, {"content": "try again"})
    assert (status, body["content"]) == (200, "fine again")
