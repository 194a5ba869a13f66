"""A worker stopping gracefully (SIGTERM) while another worker gets requests for its sessions: the
stopping worker keeps a session whose turn runs until that turn ends (or the grace runs out and
it pauses), and the other worker serves those requests once it has let the session go."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import ServeProcess, start_serve
from tests.e2e.test_workers_failover import (
    API_HEADERS,
    SLOW_REPLY,
    call,
    first_turn_running_on,
    start_worker,
    worker_config,
)
from tests.waiting import eventually, until

pytest_plugins = ["duragent.testing.pytest_plugin"]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def start_worker_with_grace(
    root: Path, llm_url: str, pg_url: str, name: str, grace: float
) -> ServeProcess:
    config = worker_config(root / name, llm_url, pg_url)
    return await asyncio.to_thread(start_serve, config, root / f"{name}.log", "--grace", str(grace))


def listening(worker: ServeProcess) -> bool:
    """True while the worker takes new connections (a worker that stops closes its port first)."""
    port = int(worker.url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def stop_gracefully(worker: ServeProcess) -> None:
    """SIGTERM, returning once the worker has stopped taking connections (its stop has begun)."""
    worker.process.terminate()
    await until(lambda: not listening(worker), within=15)


async def history(http: aiohttp.ClientSession, worker: ServeProcess, session: str) -> list[tuple[str, Any]]:
    """What was said, in order (a reply a stop cut off marked `(cut off)`)."""
    _, page = await call(http, "GET", f"{worker.url}{session}/messages")
    return [
        (m["type"] + (" (cut off)" if m["payload"].get("partial") else ""), m.get("content"))
        for m in page["messages"]
    ]


@pytest.mark.slow
async def test_a_message_sent_to_another_worker_while_the_owner_stops_runs_after_its_turn_once(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """B answered `202 queued` at once, took the session while A's turn still ran in its grace
    period, and ran that turn again: A's client got 409 and the model was asked twice."""
    fake_llm.enqueue(text(SLOW_REPLY, chunks=40, chunk_delay=0.2), text("second reply"))
    a = await start_worker_with_grace(tmp_path, fake_llm.url, pg_url, "a", grace=10)
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            session, first = await first_turn_running_on(a, http, fake_llm, "helper")
            await stop_gracefully(a)

            # A's turn goes on in its grace period, its client attached: the session is active.
            status, shown = await call(http, "GET", f"{b.url}{session}")
            assert (status, shown["status"]) == (200, "active"), shown
            status, reply = await call(http, "POST", f"{b.url}{session}/messages", {"content": "two"})

            # B ran the message once A's turn had ended and A had let the session go.
            assert (status, reply.get("content")) == (200, "second reply"), reply
            status, first_reply = await first
            assert (status, first_reply.get("content")) == (200, SLOW_REPLY), first_reply
            assert await asyncio.to_thread(a.process.wait, 30) == 0
            assert len(fake_llm.requests) == 2  # no turn ran twice
            assert await history(http, b, session) == [
                ("user_message", "one"),
                ("assistant_message", SLOW_REPLY),
                ("user_message", "two"),
                ("assistant_message", "second reply"),
            ]
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()


@pytest.mark.slow
async def test_a_turn_the_grace_period_cuts_off_pauses_and_goes_on_where_the_next_message_goes(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    fake_llm.enqueue(text(SLOW_REPLY, chunks=40, chunk_delay=0.5), text("one, resumed"), text("second reply"))
    a = await start_worker_with_grace(tmp_path, fake_llm.url, pg_url, "a", grace=2)
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            session, first = await first_turn_running_on(a, http, fake_llm, "helper")
            await stop_gracefully(a)
            status, reply = await call(http, "POST", f"{b.url}{session}/messages", {"content": "two"})

            # A paused its turn when the grace ran out, then let the session go: B takes the turn
            # up from its last stored step (at once, or for the message), and the message follows.
            assert (status, reply) in [(202, {"status": "queued", "position": 1}), (200, reply)], reply
            assert status == 202 or reply["content"] == "second reply", reply
            status, first_reply = await first
            assert (status, first_reply) == (202, {"status": "paused", "reason": "server shutting down"})
            assert await asyncio.to_thread(a.process.wait, 30) == 0

            async def both_answered() -> bool | None:
                return ("assistant_message", "second reply") in await history(http, b, session) or None

            await eventually(both_answered, within=30)
            said = [m for m in await history(http, b, session) if m[0].startswith(("user", "assistant"))]
            assert said[0] == ("user_message", "one")
            cut_off = said[1]  # what A's turn had said when the grace ran out, kept as cut off
            assert cut_off[0] == "assistant_message (cut off)"
            assert SLOW_REPLY.startswith(cut_off[1])
            assert said[2:] == [
                ("assistant_message", "one, resumed"),
                ("user_message", "two"),
                ("assistant_message", "second reply"),
            ]
            assert len(fake_llm.requests) == 3  # the cut-off call, its resumption, the message
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()


@pytest.mark.slow
async def test_what_a_stopping_worker_leaves_undone_another_worker_takes_up_at_once(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    """A turn the grace cut off, and a message A had acknowledged as queued behind it, waited
    for someone to send the session a request, however long."""
    fake_llm.enqueue(text(SLOW_REPLY, chunks=40, chunk_delay=0.5), text("one, resumed"), text("second reply"))
    a = await start_worker_with_grace(tmp_path, fake_llm.url, pg_url, "a", grace=2)
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            session, first = await first_turn_running_on(a, http, fake_llm, "helper")
            status, queued = await call(http, "POST", f"{a.url}{session}/messages", {"content": "two"})
            assert (status, queued) == (202, {"status": "queued", "position": 1}), queued
            await stop_gracefully(a)
            status, first_reply = await first
            assert (status, first_reply) == (202, {"status": "paused", "reason": "server shutting down"})
            assert await asyncio.to_thread(a.process.wait, 30) == 0

            async def both_answered() -> bool | None:
                return ("assistant_message", "second reply") in await history(http, b, session) or None

            await eventually(both_answered, within=30)
            said = [m for m in await history(http, b, session) if m[0].startswith(("user", "assistant"))]
            assert said[2:] == [
                ("assistant_message", "one, resumed"),
                ("user_message", "two"),
                ("assistant_message", "second reply"),
            ]
            assert len(fake_llm.requests) == 3

            async def idle_on_b() -> dict[str, Any] | None:
                _, shown = await call(http, "GET", f"{b.url}{session}")
                return shown if shown["status"] == "active" and not shown["busy"] else None

            assert (await eventually(idle_on_b))["loaded"] is True  # B took it over
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()


@pytest.mark.slow
async def test_a_cancel_sent_to_another_worker_stops_the_turn_a_stopping_owner_still_runs(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    fake_llm.enqueue(text(SLOW_REPLY, chunks=40, chunk_delay=0.5))
    a = await start_worker_with_grace(tmp_path, fake_llm.url, pg_url, "a", grace=30)
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=API_HEADERS) as http:
            session, first = await first_turn_running_on(a, http, fake_llm, "helper")
            await stop_gracefully(a)

            status, cancelled = await call(http, "POST", f"{b.url}{session}/cancel")
            assert (status, cancelled["status"]) == (200, "cancelled"), cancelled
            status, first_reply = await first
            assert (status, first_reply["detail"]) == (409, "the turn was cancelled"), first_reply
            # (its grace was half a minute: the stop ended with the turn)
            assert await asyncio.to_thread(a.process.wait, 15) == 0
            said = await history(http, b, session)
            assert said[0] == ("user_message", "one")
            assert said[-1] == ("cancelled", None)
    finally:
        for worker in (a, b):
            if worker.process.poll() is None:
                worker.terminate()
