"""Following a session that has ended: the stream sends what the client missed, then ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from duragent.client.follow import EventFollower
from duragent.client.http import ApiClient, api_token
from duragent.config import load_config
from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory, SSEEvent, read_sse

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def ended_session(api: Api, fake_llm: FakeLLMServer) -> str:
    """A session with one turn, then ended by its client, and unloaded."""
    fake_llm.enqueue(text("the only reply"))
    session_id = await api.new_session()
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200, body
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/end")
    assert (status, body["status"]) == (200, "ended")
    manager = api.server.app[STATE].sessions
    manager.idle_ttl = timedelta(0)
    assert session_id in await manager.unload_idle(0.0)
    return session_id


async def follow(api: Api, session_id: str, **headers: str) -> tuple[int, list[SSEEvent]]:
    """GET /events to its end (a stream that never ends fails the test after 5 s)."""
    async with asyncio.timeout(5):
        async with api.http.get(
            api.url(f"/api/v1/sessions/{session_id}/events"), headers=headers
        ) as response:
            return response.status, [event async for event in read_sse(response)]


async def test_following_an_ended_session_from_the_start_replays_it_and_ends(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    session_id = await ended_session(api, fake_llm)
    status, events = await follow(api, session_id, **{"Last-Event-ID": "0"})
    assert status == 200
    assert [e.event for e in events][-1] == "session_end"
    assert "done" in [e.event for e in events]
    assert events[-1].data["reason"] == "ended by client"
    assert session_id not in api.server.app[STATE].sessions.live  # never loaded to replay it


async def test_reconnecting_to_an_ended_session_with_nothing_left_answers_204_at_once(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    session_id = await ended_session(api, fake_llm)
    _, events = await follow(api, session_id, **{"Last-Event-ID": "0"})
    last = events[-1].id
    assert last is not None
    assert await follow(api, session_id, **{"Last-Event-ID": last}) == (204, [])
    assert await follow(api, session_id) == (204, [])  # live events only: none will ever come


async def test_following_from_before_the_end_of_a_loaded_session_ends_with_it(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    fake_llm.enqueue(text("the only reply"))
    session_id = await api.new_session()
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/end")
    assert status == 200
    status, events = await follow(api, session_id, **{"Last-Event-ID": "1"})
    assert status == 200
    assert events[-1].event == "session_end"
    assert api.server.app[STATE].sessions.live[session_id].attached == 0


async def follower_of(api: Api, tmp_path: Path, session_id: str, after: str | None) -> EventFollower:
    config = load_config(tmp_path / "ws0" / "duragent.yaml")
    client = ApiClient(api.url("").rstrip("/"), token=api_token(config))
    follower = EventFollower(client, session_id, after=after)
    follower.start()
    return follower


async def events_until_it_stops(follower: EventFollower) -> list[str]:
    """The names of the events a follower queues until its task ends (5 s at most)."""
    names: list[str] = []
    async with asyncio.timeout(5):
        while True:
            event = await follower.next(within=0.1)
            if event is not None:
                names.append(event.event)
            elif follower.stopped:
                return names


async def test_the_terminal_follower_stops_after_the_session_ends(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await ended_session(api, fake_llm)
    follower = await follower_of(api, tmp_path, session_id, after="0")
    try:
        names = await events_until_it_stops(follower)
    finally:
        await follower.close()
        await follower.api.close()
    assert names[-1] == "session_end"
    assert names.count("session_end") == 1


async def test_the_terminal_follower_of_an_already_ended_session_says_it_ended(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await ended_session(api, fake_llm)
    follower = await follower_of(api, tmp_path, session_id, after=None)
    try:
        assert await events_until_it_stops(follower) == ["session_end"]
    finally:
        await follower.close()
        await follower.api.close()


async def test_following_a_session_that_does_not_exist_is_a_404_problem(api: Api) -> None:
    async with asyncio.timeout(5):
        status, body = await api.call("GET", "/api/v1/sessions/s_nothing_here/events")
    assert status == 404
    assert "s_nothing_here" in body["detail"]
