"""What the server says about requests it will not serve and a repository it cannot commit to."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
