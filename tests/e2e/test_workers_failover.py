"""Two real `duragent serve` workers sharing PostgreSQL: streams across workers, SIGKILL failover,
handing a session between workers, requests its owner serves for the other worker (approvals,
cancels, messages while a turn runs), and agents deployed on one worker used on the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.cluster.ownership import session_lock_key
from duragent.stores.postgres.sessions import PostgresSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import (
    AGENT_YAML,
    ServeProcess,
    SSEEvent,
    collect_until,
    read_sse,
    start_serve,
    write_workspace,
)
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin"]

ADMIN_TOKEN = "admin-token-for-workers"
#: Workers behind one load balancer share their tokens through duragent.yaml.
API_TOKEN = "api-token-for-workers"
API_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}
SLOW_REPLY = " ".join(f"w{i}" for i in range(40))


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


def worker_config(root: Path, llm_url: str, pg_url: str) -> Path:
    """The same configuration for every worker (each with its own local data directory)."""
    config = write_workspace(root, llm_url, git=False, api_token=API_TOKEN, admin_token=ADMIN_TOKEN)
    with config.open("a") as file:
        file.write(f"services:\n  session:\n    backend: postgres\n    url: {pg_url}\n")
    return config


async def start_worker(root: Path, llm_url: str, pg_url: str, name: str) -> ServeProcess:
    config = worker_config(root / name, llm_url, pg_url)
    # Started in a thread: the fake model in this process must keep answering meanwhile.
    return await asyncio.to_thread(start_serve, config, root / f"{name}.log")


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if "/api/admin/" in url else {}
    async with http.request(method, url, json=body, headers=headers) as response:
        if response.status == 204:
            return response.status, None
        return response.status, await response.json(content_type=None)


async def next_event(events: AsyncIterator[SSEEvent]) -> SSEEvent:
    """The next event of a stream, failing the test when none comes within 15 s."""
    return await asyncio.wait_for(events.__anext__(), 15)


@pytest.mark.slow
async def test_a_stream_on_worker_b_survives_worker_a_dying_mid_turn_and_loses_nothing(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    fake_llm.enqueue(
        text(SLOW_REPLY, chunks=40, chunk_delay=0.1), text("Recovered reply", chunks=3), text("Second turn")
    )
    a = await start_worker(tmp_path, fake_llm.url, pg_url, "a")
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            status, created = await call(http, "POST", f"{a.url}/api/v1/sessions", {"agent": "helper"})
            assert status == 201, created
            session_id = created["session_id"]
            stream = await http.get(f"{b.url}/api/v1/sessions/{session_id}/events?after=0")
            assert stream.status == 200
            events = read_sse(stream)
            sending = asyncio.create_task(
                http.post(f"{a.url}/api/v1/sessions/{session_id}/messages", json={"content": "hello"})
            )

            seen: list[SSEEvent] = []
            while sum(e.event == "token" for e in seen) < 3:
                seen.append(await next_event(events))
            a.process.kill()  # SIGKILL mid-turn: no shutdown, no snapshot, its locks die with it
            a.process.wait(10)
            killed_at = time.monotonic()
            while not seen or seen[-1].event != "done":
                seen.append(await next_event(events))
            took_over_after = time.monotonic() - killed_at
            stream.close()
            with pytest.raises(aiohttp.ClientError):
                await sending

            # Worker B finished the turn from the last durable step, within a few seconds.
            assert seen[-1].data["content"] == "Recovered reply"
            assert took_over_after < 10
            status, session = await call(http, "GET", f"{b.url}/api/v1/sessions/{session_id}")
            assert session["loaded"] is True

            # Every stored event reached the stream on B, once, in order; positions only grow.
            stored_ids = [int(e.id) for e in seen if e.id and "." not in e.id]
            assert stored_ids == list(range(1, stored_ids[-1] + 1))
            positions = [tuple(int(p) for p in (e.id or "").split(".")) for e in seen]
            assert positions == sorted(positions)
            assert len(set(positions)) == len(positions)
            assert [e.data.get("content") for e in seen if e.event == "start"] == ["hello"]
            # Token deltas streamed live from A (through NOTIFY) before it died.
            assert "".join(e.data["content"] for e in seen if e.event == "token").startswith("w0 w1")
            # B says the attempt restarted and which text was A's (void); what follows is B's reply.
            (restart,) = [e for e in seen if e.event == "attempt_restarted"]
            cut = seen.index(restart)
            void = [e for e in seen[:cut] if e.event == "token"]
            assert void
            assert {(e.id or "").split(".")[0] for e in void} == {restart.data["discard_after"]}
            assert "".join(e.data["content"] for e in seen[cut:] if e.event == "token") == "Recovered reply"

            # The table holds the acknowledged message once and the reply; no seq duplicated or skipped.
            store = PostgresSessionStore(pg_url)
            log = await store.read(session_id)
            await store.close()
            assert [e.seq for e in log] == list(range(1, len(log) + 1))
            assert [e.payload["content"] for e in log if e.type == "user_message"] == ["hello"]
            assert [e.payload["content"] for e in log if e.type == "assistant_message"][
                -1
            ] == "Recovered reply"

            # Last-Event-ID replays from the table on any worker.
            async with http.get(
                f"{b.url}/api/v1/sessions/{session_id}/events", headers={"Last-Event-ID": "2"}
            ) as replay:
                replay_events = read_sse(replay)
                first = await next_event(replay_events)
            assert first.id == "3"

            # A worker that joins later is handed the (idle) session by B for the next message.
            a = await start_worker(tmp_path, fake_llm.url, pg_url, "a2")
            status, reply = await call(
                http, "POST", f"{a.url}/api/v1/sessions/{session_id}/messages", {"content": "again"}
            )
            assert status == 200, reply
            assert reply["content"] == "Second turn"
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()


DEPLOYED_AGENT = AGENT_YAML.replace("name: {name}", "name: deployed-helper")


@pytest.mark.slow
async def test_an_agent_deployed_on_one_worker_serves_sessions_on_the_other(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    a = await start_worker(tmp_path, fake_llm.url, pg_url, "a")
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            files = {
                "agent.yaml": DEPLOYED_AGENT.format(
                    url=fake_llm.url, on_disconnect="continue", max_background="30m"
                )
            }
            status, body = await call(
                http, "POST", f"{a.url}/api/admin/v1/agents", {"name": "deployed-helper", "files": files}
            )
            assert status == 201, body

            # B learns of the deployment through NOTIFY, a moment after A answered.
            for _ in range(100):
                status, created = await call(
                    http, "POST", f"{b.url}/api/v1/sessions", {"agent": "deployed-helper"}
                )
                if status != 404:
                    break
                await asyncio.sleep(0.05)
            assert status == 201, created
            fake_llm.enqueue(text("hello from a deployed agent"))
            status, reply = await call(
                http, "POST", f"{b.url}/api/v1/sessions/{created['session_id']}/messages", {"content": "hi"}
            )
            assert (status, reply["content"]) == (200, "hello from a deployed agent")

            status, _ = await call(http, "DELETE", f"{a.url}/api/admin/v1/agents/deployed-helper")
            assert status == 204
            for _ in range(100):
                status, _ = await call(http, "POST", f"{b.url}/api/v1/sessions", {"agent": "deployed-helper"})
                if status == 404:
                    break
                await asyncio.sleep(0.05)
            assert status == 404
    finally:
        for worker in (a, b):
            worker.terminate()


async def wait_for(predicate: Any, what: str, within: float = 15.0) -> None:
    """Poll `predicate` (an async callable) until it is true, failing with `what` after `within` s."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def two_workers(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    """Workers A and B on one PostgreSQL, stopped afterwards."""
    a = await start_worker(tmp_path, fake_llm.url, pg_url, "a")
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        yield a, b
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()


async def first_turn_running_on(
    worker: ServeProcess, http: aiohttp.ClientSession, fake_llm: FakeLLMServer, agent: str
) -> tuple[str, asyncio.Task[tuple[int, Any]]]:
    """A new session of `agent` on `worker` whose first turn ("one") runs there now: its path and request."""
    status, created = await call(http, "POST", f"{worker.url}/api/v1/sessions", {"agent": agent})
    assert status == 201, created
    session = f"/api/v1/sessions/{created['session_id']}"
    first = asyncio.create_task(call(http, "POST", f"{worker.url}{session}/messages", {"content": "one"}))

    async def running() -> bool:
        return len(fake_llm.requests) == 1

    await wait_for(running, "the first turn runs")
    return session, first


@pytest.mark.slow
async def test_a_message_to_another_worker_waits_for_the_owners_short_turn_then_runs_there(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("first reply, slowly", chunks=10, chunk_delay=0.1), text("second reply"))
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, "helper")
        # A's turn ends about a second later: B must take the session over then, not answer 409.
        status, reply = await call(http, "POST", f"{b.url}{session}/messages", {"content": "two"})

        assert (status, reply.get("content")) == (200, "second reply"), reply
        status, first_reply = await first
        assert (status, first_reply["content"]) == (200, "first reply, slowly")
        status, shown = await call(http, "GET", f"{b.url}{session}")
        assert shown["loaded"] is True


@pytest.mark.slow
async def test_a_paused_session_with_a_queued_message_resumes_on_another_worker(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        text("first reply, slowly", chunks=10, chunk_delay=0.1),
        text("reply to the second"),
        text("to the third"),
    )
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, "pauser")
        for content in ("second", "third"):
            status, queued = await call(http, "POST", f"{a.url}{session}/messages", {"content": content})
            assert status == 202, queued
        first.cancel()  # the only client leaves: a pause-mode session pauses at a safe point

        async def paused_with_a_queued_message() -> bool:
            _, shown = await call(http, "GET", f"{a.url}{session}")
            return bool(shown["status"] == "paused" and shown.get("queued"))

        await wait_for(paused_with_a_queued_message, "the session pauses on A with a message queued")

        status, resumed = await call(http, "POST", f"{b.url}{session}/resume")
        assert status == 202, resumed
        assert resumed["status"] == "active"

        async def both_queued_messages_were_answered() -> bool:
            _, history = await call(http, "GET", f"{b.url}{session}/messages")
            return any(m.get("content") == "to the third" for m in history["messages"])

        await wait_for(both_queued_messages_were_answered, "B answers both queued messages")
        _, history = await call(http, "GET", f"{b.url}{session}/messages")
        said = [(m["role"], m["content"]) for m in history["messages"]]
        assert said[-4:] == [
            ("user", "second"),
            ("assistant", "reply to the second"),
            ("user", "third"),
            ("assistant", "to the third"),
        ]


@pytest.mark.slow
async def test_a_worker_that_lost_its_lock_connection_reconnects_and_serves_again(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """A network blip or a database failover drops the connection holding A's session locks: B
    may take A's sessions over at once, so A must not answer for them from what it had; but A
    answered 503 for every request until someone restarted it."""
    import asyncpg

    from duragent.stores.postgres.pool import parse_postgres_url

    fake_llm.enqueue(
        text(SLOW_REPLY, chunks=40, chunk_delay=0.2),
        text("one, resumed"),
        text("answered on B"),
        text("answered on A again"),
        text("new"),
    )
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, "helper")
        target = parse_postgres_url(pg_url)
        # The backend holding this session's lock (only this test's: others share the server).
        key = session_lock_key(target.schema, session.rsplit("/", 1)[1]) & 0xFFFF_FFFF_FFFF_FFFF
        connection = await asyncpg.connect(target.dsn)
        try:
            lock_pid = await connection.fetchval(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = $1 AND objid = $2 AND objsubid = 1",
                key >> 32,
                key & 0xFFFF_FFFF,
            )
            assert lock_pid is not None
            await connection.execute("SELECT pg_terminate_backend($1)", lock_pid)
        finally:
            await connection.close()
        # A stops its turn at once (it would stream on for 8 s), and stores nothing of it.
        status, problem = await asyncio.wait_for(first, 5)
        assert (status, problem["detail"]) == (
            409,
            f"session {session.rsplit('/', 1)[1]} is run by another worker now; nothing more was stored "
            "here (a message whose turn had started was, and its turn goes on where the session runs "
            "now): read the session before sending again",
        ), problem
        # B takes the session over: the turn resumes there, then B's message runs (queued behind
        # the resumed turn, unless B's failover scan resumed it and it ended already).
        status, reply = await call(http, "POST", f"{b.url}{session}/messages", {"content": "two"})
        assert (status, reply) in [(202, {"status": "queued", "position": 1}), (200, reply)], reply

        async def answered_on_b() -> bool | None:
            _, history = await call(http, "GET", f"{b.url}{session}/messages")
            return any(m.get("content") == "answered on B" for m in history["messages"]) or None

        await eventually(answered_on_b)

        async def ready_a() -> bool | None:
            status, _health = await call(http, "GET", f"{a.url}/readyz")
            return True if status == 200 else None

        await eventually(ready_a)
        status, reply = await call(http, "POST", f"{a.url}{session}/messages", {"content": "three"})
        assert (status, reply.get("content")) == (200, "answered on A again"), reply
        status, created = await call(http, "POST", f"{a.url}/api/v1/sessions", {"agent": "helper"})
        assert status == 201, created
        status, reply = await call(
            http, "POST", f"{a.url}/api/v1/sessions/{created['session_id']}/messages", {"content": "hi"}
        )
        assert (status, reply.get("content")) == (200, "new"), reply
        _, history = await call(http, "GET", f"{b.url}{session}/messages")
        said = [(m["role"], m["content"]) for m in history["messages"] if m["role"] in ("user", "assistant")]
        assert said == [
            ("user", "one"),
            ("assistant", "one, resumed"),
            ("user", "two"),
            ("assistant", "answered on B"),
            ("user", "three"),
            ("assistant", "answered on A again"),
        ]
        assert "reconnected to PostgreSQL" in a.log()


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["helper", "pauser"])
async def test_a_stream_sent_to_another_worker_streams_the_turn_the_owner_runs_for_it(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer, agent: str
) -> None:
    """B cannot take the session while A's long turn runs: it answered 409 to POST /stream. (The
    client streaming through B counts as attached on A: a pause-mode turn runs for it.)"""
    fake_llm.enqueue(
        text(SLOW_REPLY, chunks=40, chunk_delay=0.15),
        text("second reply, in parts", chunks=4, chunk_delay=0.05),
    )
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, agent)
        async with http.post(f"{b.url}{session}/stream", json={"content": "two"}) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            events = await asyncio.wait_for(collect_until(response), 30)

        status, first_reply = await first
        assert (status, first_reply["content"]) == (200, SLOW_REPLY)
        # Only its own turn, from its start to its end, as a stream on A would show it.
        assert events[0].event == "start"
        assert events[0].data["content"] == "two"
        assert events[-1].event == "done"
        assert events[-1].data["content"] == "second reply, in parts"
        assert "".join(e.data["content"] for e in events if e.event == "token") == "second reply, in parts"
        positions = [tuple(int(p) for p in (e.id or "").split(".")) for e in events]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        status, shown = await call(http, "GET", f"{a.url}{session}")
        assert shown["loaded"] is True  # A ran both turns


@pytest.mark.slow
async def test_a_client_leaving_a_stream_another_worker_relays_detaches_on_the_owner(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer
) -> None:
    """A pause-mode turn streamed through B pauses at its next safe point once that client leaves,
    as it would for a client of A's own."""
    fake_llm.enqueue(
        text(SLOW_REPLY, chunks=40, chunk_delay=0.15),
        tool_calls([("bash", {"command": "echo hi"})], delay=3),
        text("never asked for: nobody is attached"),
    )
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, "pauser")
        async with http.post(f"{b.url}{session}/stream", json={"content": "two"}) as response:
            assert response.status == 200, await response.text()
            started = await asyncio.wait_for(read_sse(response).__anext__(), 30)
            assert (started.event, started.data["content"]) == ("start", "two")
        status, first_reply = await first
        assert status == 200, first_reply

        async def paused_on_a() -> dict[str, Any] | None:
            _, shown = await call(http, "GET", f"{a.url}{session}")
            return shown if shown["status"] == "paused" else None

        shown = await eventually(paused_on_a)
        assert shown["attached"] == 0
        assert len(fake_llm.requests) == 2  # paused after the tool call, before asking the model again


@pytest.mark.slow
async def test_approvals_sent_to_a_worker_that_does_not_run_the_session_get_the_owners_answers(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer
) -> None:
    """The turn waiting for a person keeps its session on A for as long as the person takes: B
    could never take it over, and answered 409 however often the approval was sent again."""
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "ls /"}), ("bash", {"command": "uname"})]), text("listed")
    )
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        status, created = await call(http, "POST", f"{a.url}/api/v1/sessions", {"agent": "helper"})
        session = f"/api/v1/sessions/{created['session_id']}"
        status, first = await call(http, "POST", f"{a.url}{session}/messages", {"content": "look around"})
        assert (status, first["status"]) == (202, "pending_approval"), first

        status, second = await call(
            http, "POST", f"{b.url}{session}/approve", {"call_id": first["call_id"], "decision": "allow_once"}
        )
        assert (status, second["status"], second["command"]) == (202, "pending_approval", "uname"), second

        # A call already decided: B answers what A answers, word for word.
        decided = {"call_id": first["call_id"], "decision": "deny"}
        on_a = await call(http, "POST", f"{a.url}{session}/approve", decided)
        on_b = await call(http, "POST", f"{b.url}{session}/approve", decided)
        assert on_b == on_a
        assert on_a[0] == 400
        assert second["call_id"] in on_a[1]["detail"]

        status, done = await call(
            http,
            "POST",
            f"{b.url}{session}/approve",
            {"call_id": second["call_id"], "decision": "allow_once"},
        )
        assert (status, done) == (
            200,
            {"status": "complete", "message_id": done["message_id"], "content": "listed"},
        )
        status, again = await call(
            http, "POST", f"{b.url}{session}/approve", {"call_id": second["call_id"], "decision": "deny"}
        )
        assert (status, again["detail"]) == (404, "no pending approval for this session")

        status, shown = await call(http, "GET", f"{a.url}{session}")
        assert shown["loaded"] is True  # A ran the whole turn
        _, history = await call(http, "GET", f"{b.url}{session}/messages")
        results = [m["payload"] for m in history["messages"] if m["type"] == "approval_decision"]
        assert [r["decision"] for r in results] == ["allow_once", "allow_once"]


@pytest.mark.slow
async def test_a_message_and_a_cancel_sent_to_another_worker_reach_the_owners_long_turn(
    two_workers: tuple[ServeProcess, ServeProcess], fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text(SLOW_REPLY, chunks=40, chunk_delay=0.5), text("reply to the queued message"))
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, "helper")

        # A's turn runs on for 20 s: B cannot take the session, so A queues the message for it.
        status, queued = await call(http, "POST", f"{b.url}{session}/messages", {"content": "two"})
        assert (status, queued) == (202, {"status": "queued", "position": 1}), queued
        status, cancelled = await call(http, "POST", f"{b.url}{session}/cancel")
        assert (status, cancelled["status"]) == (200, "cancelled"), cancelled

        status, first_reply = await first
        assert (status, first_reply["detail"]) == (409, "the turn was cancelled"), first_reply

        async def queued_message_answered() -> bool:
            _, history = await call(http, "GET", f"{b.url}{session}/messages")
            return any(m.get("content") == "reply to the queued message" for m in history["messages"])

        await wait_for(queued_message_answered, "A runs the message B queued once the turn is cancelled")
        _, history = await call(http, "GET", f"{b.url}{session}/messages")
        said = [(m["type"], m.get("content")) for m in history["messages"]]
        assert said[0] == ("user_message", "one")
        assert said[-3:] == [
            ("cancelled", None),
            ("user_message", "two"),
            ("assistant_message", "reply to the queued message"),
        ]
