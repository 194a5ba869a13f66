"""`read_body`: the JSON of a request as its model, or a 400 problem naming what is wrong."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from aiohttp import web

from duragent.server.bodies import MAX_JSON_DEPTH, CreateSession, SendMessage, json_depth, read_body
from duragent.server.problems import HttpProblem


class _Posted:
    """A request whose body is `raw` (all `read_body` asks of a request)."""

    def __init__(self, raw: bytes):
        self.raw = raw

    async def read(self) -> bytes:
        return self.raw


async def _read(raw: bytes, model: Any = CreateSession) -> Any:
    return await read_body(cast(web.Request, _Posted(raw)), model)


async def test_a_small_body_is_its_model() -> None:
    body = await _read(b'{"content": "question number 1"}', SendMessage)
    assert body.content == "question number 1"


async def test_a_body_nested_to_the_limit_is_accepted() -> None:
    metadata: Any = "leaf"
    while json_depth({"metadata": metadata}) < MAX_JSON_DEPTH:
        metadata = [metadata]
    body = await _read(json.dumps({"agent": "a", "metadata": {"x": metadata[0]}}).encode())
    assert body.agent == "a"


async def test_a_body_nested_past_the_limit_is_a_400() -> None:
    raw = ('{"agent": "a", "metadata": {"x": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}}").encode()
    with pytest.raises(HttpProblem) as refused:
        await _read(raw)
    assert refused.value.status == 400
    assert "nested more than" in refused.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"agent": "a", "metadata": {"k": "x\\ud800"}}',  # an escape
        '{"agent": "a", "metadata": {"k": "x\\ud800"}}'.encode("utf-16"),  # an escape, UTF-16
        b'{"agent": "a", "metadata": {"k": "x\xed\xa0\x80"}}',  # an encoded surrogate
    ],
    ids=["escape", "utf-16 escape", "utf-8 bytes"],
)
async def test_a_lone_surrogate_is_a_400_naming_the_field(raw: bytes) -> None:
    with pytest.raises(HttpProblem) as refused:
        await _read(raw)
    assert refused.value.status == 400
    assert [e.field for e in refused.value.errors] == ["body.metadata.k"]


async def test_a_surrogate_pair_is_text() -> None:
    body = await _read(b'{"agent": "a", "metadata": {"k": "\\ud83d\\ude00"}}')
    assert body.metadata == {"k": "\U0001f600"}
