"""What the server says about requests it will not serve and a repository it cannot commit to."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from duragent.server.state import ACCEPTING_AT_ONCE
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_a_request_line_over_8_kb_is_a_414_problem(api: Api) -> None:
    async with api.http.get(api.url("/api/v1/sessions?agent=" + "a" * 9000)) as response:
        assert response.status == 414
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem["status"] == 414
    assert "8190" in problem["detail"]
    status, _ = await api.call("GET", "/api/v1/sessions")
    assert status == 200  # the server goes on serving


async def test_a_header_over_8_kb_is_a_431_problem(api: Api) -> None:
    async with api.http.get(api.url("/api/v1/sessions"), headers={"X-Big": "b" * 9000}) as response:
        assert response.status == 431
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert "X-Big" in problem["detail"]


async def test_readyz_reports_a_stale_index_lock_as_degraded(start_api: ApiFactory, tmp_path: Path) -> None:
    api: Api = await start_api(git=True)
    status, ready = await api.call("GET", "/readyz")
    assert (status, ready["status"]) == (200, "ok")
    lock = tmp_path / "ws0" / "data" / ".git" / "index.lock"
    lock.touch()  # a git process crashed while it held the index
    old = time.time() - 600
    os.utime(lock, (old, old))
    status, ready = await api.call("GET", "/readyz")
    assert status == 200
    assert ready["status"] == "degraded"
    assert any("index.lock is 10 min old and blocks every commit" in line for line in ready["warnings"])
    lock.unlink()


async def test_four_slow_uploads_do_not_hold_up_other_messages(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    host, port = api.server.host, api.server.port
    auth = "".join(f"{name}: {value}\r\n" for name, value in api.http.headers.items())
    stalled = []
    for _ in range(ACCEPTING_AT_ONCE):
        _, writer = await asyncio.open_connection(host, port)
        head = (
            f"POST /api/v1/sessions/{session_id}/messages HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"content": "slo')  # and then nothing more
        await writer.drain()
        stalled.append(writer)
    try:
        assert (await api.call("GET", f"/api/v1/sessions/{session_id}"))[0] == 200  # they have arrived
        fake_llm.enqueue(text("not held up"))
        status, reply = await asyncio.wait_for(
            api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"}), 20
        )
        assert (status, reply["content"]) == (200, "not held up")
    finally:
        for writer in stalled:
            writer.close()
