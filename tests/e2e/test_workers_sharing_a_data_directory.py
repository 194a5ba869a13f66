"""Workers on one machine may share a data directory when sessions are in PostgreSQL
(docs/scaling-out.md): a second `duragent serve` there is a second worker, not refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import start_serve
from tests.e2e.test_workers_failover import API_HEADERS, worker_config

pytest_plugins = ["duragent.testing.pytest_plugin"]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def test_a_second_worker_in_the_same_data_directory_starts_and_serves(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    config = worker_config(tmp_path / "shared", fake_llm.url, pg_url)
    a = await asyncio.to_thread(start_serve, config, tmp_path / "a.log")
    try:
        b = await asyncio.to_thread(start_serve, config, tmp_path / "b.log")
        try:
            fake_llm.enqueue(text("hello from b"))
            async with aiohttp.ClientSession(headers=API_HEADERS) as http:
                async with http.post(f"{b.url}/api/v1/sessions", json={"agent": "helper"}) as made:
                    assert made.status == 201, await made.text()
                    session_id = (await made.json())["session_id"]
                async with http.post(
                    f"{a.url}/api/v1/sessions/{session_id}/messages", json={"content": "hi"}
                ) as sent:
                    assert sent.status == 200, await sent.text()
                    assert (await sent.json())["content"] == "hello from b"
        finally:
            b.terminate()
    finally:
        a.terminate()
