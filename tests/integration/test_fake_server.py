"""The base every fake peer is built on, through the example subclass docs/testing.md shows."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_server import Failure, FakeServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _documented_fake() -> type[FakeServer]:
    """`FakeChat` exactly as docs/testing.md writes it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    source = next(block for block in blocks if "class FakeChat(FakeServer)" in block)
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOCS), "exec"), namespace)
    fake: type[FakeServer] = namespace["FakeChat"]
    return fake


async def test_the_documented_fake_listens_records_and_wakes_a_waiting_test() -> None:
    chat: Any
    async with _documented_fake()() as chat:
        assert chat.port > 0
        assert chat.root_url == f"http://127.0.0.1:{chat.port}"
        waiting = asyncio.create_task(chat.wait_until(lambda: chat.calls[0] if chat.calls else None))
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{chat.root_url}/api/send", json={"text": "hi"}) as response,
        ):
            assert await response.json() == {"ok": True}
        call = await waiting
        assert (call.method, call.params) == ("send", {"text": "hi"})
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.post(f"{chat.root_url}/api/send", json={})


async def test_wait_until_gives_up_after_within_seconds() -> None:
    async with _documented_fake()() as chat:
        with pytest.raises(TimeoutError):
            await chat.wait_until(lambda: None, within=0.1)


def test_queued_failures_are_taken_in_order_per_key() -> None:
    fake = FakeServer()
    fake._queue_failure("send", Failure(429, retry_after=2), times=2)
    fake._queue_failure("send", Failure(500))
    taken = [fake._next_failure("send") for _ in range(4)]
    assert [f.status if f else None for f in taken] == [429, 429, 500, None]
    assert fake._next_failure("edit") is None
