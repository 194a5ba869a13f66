"""A failed or cancelled turn runs again on request (`POST /retry`, `/retry` in chat and in a
gateway chat), without the person typing the message again and without a second copy of it in
the history: a model down for a minute, a key fixed, a rate limit that outlasted the retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from duragent.runtime.context import PARTIAL_NOTE
from duragent.sessions.live import LiveSession, NothingToRetry
from duragent.sessions.manager import SessionManager
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.fake_llm import FakeLLMServer, broken_stream, delay, error, text, tool_calls
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import Api, ApiFactory, collect_until, session_manager
from tests.waiting import eventually, until

REFUSED = [error(404, "The model `gpt-test` does not exist")]


def stored_events(root: Path, session_id: str) -> list[dict[str, Any]]:
    log = root / "ws0" / "data" / "sessions" / session_id / "events.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


async def failed_turn(api: Api, fake_llm: FakeLLMServer, *responses: Any) -> str:
    session_id = await api.new_session()
    fake_llm.enqueue(*responses)
    status, problem = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hello"})
    assert status == 502, problem
    return session_id


async def test_a_failed_turn_runs_again_and_its_message_is_answered_once(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await failed_turn(api, fake_llm, *REFUSED)
    fake_llm.enqueue(text("hello to you"))
    events = api.http.get(api.url(f"/api/v1/sessions/{session_id}/events"))

    async with events as stream:
        status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
        assert (status, body["status"]) == (202, "active"), body
        seen = await collect_until(stream, "done")

    assert [e.event for e in seen if e.event in ("turn_retried", "done")] == ["turn_retried", "done"]
    assert seen[-1].data["content"] == "hello to you"
    last_request = fake_llm.requests[-1].messages
    assert [m["content"] for m in last_request if m["role"] == "user"] == ["hello"]
    stored = stored_events(tmp_path, session_id)
    assert [e["type"] for e in stored if e["type"] in ("user_message", "error", "turn_retried")] == [
        "user_message",
        "error",
        "turn_retried",
    ]
    assert stored[-1]["type"] == "assistant_message"

    status, problem = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
    assert status == 409, problem
    assert problem["detail"] == "the last turn did not fail: there is nothing to retry"


async def test_a_turn_that_kept_a_partial_reply_runs_again_without_the_half_reply(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    # A stream cut mid-reply used to be refused a retry: the person had to send the message again,
    # leaving it twice in the history.
    api = await start_api(git=False)
    session_id = await failed_turn(api, fake_llm, broken_stream(2, "one two three four", chunks=4))
    (error_event,) = [e for e in stored_events(tmp_path, session_id) if e["type"] == "error"]
    assert error_event["payload"]["retryable"] is True
    fake_llm.enqueue(text("one two three four"))
    events = api.http.get(api.url(f"/api/v1/sessions/{session_id}/events"))

    async with events as stream:
        status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
        assert status == 202, body
        seen = await collect_until(stream, "done")

    assert seen[-1].data["content"] == "one two three four"
    # The model answers the person's message anew: not after its own half answer, as if said.
    assert [m["role"] for m in fake_llm.requests[-1].messages] == ["system", "user"]
    fake_llm.enqueue(text("fine"))
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "next"})
    assert status == 200
    later = [(m["role"], m["content"]) for m in fake_llm.requests[-1].messages[1:]]
    assert later == [("user", "hello"), ("assistant", "one two three four"), ("user", "next")]
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
    assert status == 409


async def test_a_partial_reply_the_person_answered_reaches_the_model_marked_as_cut_off(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    session_id = await failed_turn(api, fake_llm, broken_stream(2, "one two three four", chunks=4))
    fake_llm.enqueue(text("three four"))

    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go on"})

    assert status == 200
    (half,) = [m for m in fake_llm.requests[-1].messages if m["role"] == "assistant"]
    assert half["content"].startswith("one two")
    assert half["content"].endswith(PARTIAL_NOTE), half


async def test_a_failed_turns_error_says_whether_it_can_be_retried(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Clients (the terminal's "/retry runs it again") read `retryable` off the error event."""
    api = await start_api(git=False)
    session_id = await api.new_session()
    events = api.http.get(api.url(f"/api/v1/sessions/{session_id}/events"))
    fake_llm.enqueue(*REFUSED)

    async with events as stream:
        status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hello"})
        seen = await collect_until(stream, "error")

    assert status == 502
    assert seen[-1].data["retryable"] is True
    (error_event,) = [e for e in stored_events(tmp_path, session_id) if e["type"] == "error"]
    assert error_event["payload"]["retryable"] is True


async def test_a_retry_while_a_turn_runs_is_refused(start_api: ApiFactory, fake_llm: FakeLLMServer) -> None:
    api = await start_api(git=False)
    session_id = await failed_turn(api, fake_llm, *REFUSED)
    fake_llm.enqueue(delay(30, text("slow")))
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
    assert status == 202

    status, problem = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")

    assert status == 409, problem
    assert problem["detail"].startswith("a turn is running or queued")
    await api.call("POST", f"/api/v1/sessions/{session_id}/cancel")


async def test_a_cancelled_turn_with_tool_results_runs_again_from_them(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})]), delay(30, text("never")))
    url = f"/api/v1/sessions/{session_id}/messages"
    sending = asyncio.create_task(api.call("POST", url, {"content": "say hi"}))
    await until(lambda: len(fake_llm.requests) == 2)
    await api.call("POST", f"/api/v1/sessions/{session_id}/cancel")
    await sending
    fake_llm.enqueue(text("it said hi"))

    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")

    assert status == 202

    async def answered() -> bool | None:
        _, messages = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
        return True if any(m.get("content") == "it said hi" for m in messages["messages"]) else None

    await eventually(answered, within=20)
    assert fake_llm.requests[-1].messages[-1]["role"] == "tool"


@pytest.fixture(params=["fs", "pg"])
async def manager(
    request: pytest.FixtureRequest, tmp_path: Path, fake_llm: FakeLLMServer
) -> AsyncIterator[SessionManager]:
    """A session manager on either store; the files fsynced, so a store write waits (as PG's does)."""
    if request.param == "fs":
        store = FilesystemSessionStore(tmp_path / "sessions", fsync="always")
        async with session_manager(tmp_path, fake_llm.url, store, max_background="1h") as made:
            yield made
        return
    async with (
        temporary_schema() as url,
        session_manager(tmp_path, fake_llm.url, PostgresSessionStore(url), max_background="1h") as made,
    ):
        yield made


async def failed_live_turn(manager: SessionManager, fake_llm: FakeLLMServer) -> LiveSession:
    fake_llm.enqueue(*REFUSED)
    live = await manager.create("helper")
    await live.submit("hello")
    await until(lambda: not live.busy and live.log.state.turn_closed_by == "error")
    return live


async def test_two_retries_at_once_run_the_turn_once(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    """Two clients (or a double click) ask while the first retry is being stored: one turn runs."""
    live = await failed_live_turn(manager, fake_llm)
    fake_llm.enqueue(text("one"), text("two"))

    first, second = await asyncio.gather(live.retry(), live.retry(), return_exceptions=True)

    assert first is None
    assert isinstance(second, NothingToRetry), second
    await until(lambda: not live.busy)
    events = await live.log.store.read(live.session_id)
    assert [e.type for e in events].count("turn_retried") == 1
    assert [e.payload["content"] for e in events if e.type == "assistant_message"] == ["one"]
    assert len(fake_llm.requests) == 2


async def test_a_retry_is_accepted_once_it_is_stored(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    """So a crash right after the 202 still runs the turn: recovery takes it up."""
    live = await failed_live_turn(manager, fake_llm)
    fake_llm.enqueue(text("one"))

    await live.retry()

    assert "turn_retried" in [e.type for e in await live.log.store.read(live.session_id)]
    await until(lambda: not live.busy)


async def test_a_message_sent_as_a_retry_starts_waits_for_the_retried_turn(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    live = await failed_live_turn(manager, fake_llm)
    fake_llm.enqueue(text("hello to you"), text("and the rest"))

    retried, ticket = await asyncio.gather(live.retry(), live.queue("and another thing"))

    assert retried is None
    assert ticket.ahead == 1
    await until(lambda: live.log.state.turns == 2 and not live.busy)
    last = fake_llm.requests[-1].messages
    assert [(m["role"], m["content"]) for m in last[1:]] == [
        ("user", "hello"),
        ("assistant", "hello to you"),
        ("user", "and another thing"),
    ]
