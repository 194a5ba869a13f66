"""Ollama (its OpenAI-compatible API) numbers every tool call of a reply `index: 0`, each arriving
whole with its own id: they are still separate calls, not one call with their arguments glued."""

from __future__ import annotations

import json
from typing import Any

from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message, ToolCall, ToolCallComplete, ToolCallDelta
from duragent.testing.fake_llm import FakeLLMServer, raw

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("qwen2.5-coder:7b", (Message("user", "write hello.py and world.py"),))


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "qwen2.5-coder:7b",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def whole_call(call_id: str, arguments: dict[str, str], index: int = 0) -> dict[str, Any]:
    function = {"name": "file_write", "arguments": json.dumps(arguments)}
    return {"id": call_id, "index": index, "type": "function", "function": function}


HELLO_ARGS = {"filePath": "hello.py", "content": 'print("hello")'}
WORLD_ARGS = {"filePath": "world.py", "content": 'print("world")'}


async def test_two_whole_calls_both_at_index_0_are_two_calls(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(
        raw(
            chunk({"role": "assistant", "content": "", "tool_calls": [whole_call("call_a", HELLO_ARGS)]}),
            chunk({"role": "assistant", "content": "", "tool_calls": [whole_call("call_b", WORLD_ARGS)]}),
            chunk({"role": "assistant", "content": ""}, "tool_calls"),
            "data: [DONE]\n\n",
        )
    )
    async with OpenAICompatProvider(fake_llm.url, None, provider_name="ollama") as provider:
        chunks = [c async for c in provider.stream(HELLO)]
    calls = [c.tool_call for c in chunks if isinstance(c, ToolCallComplete)]
    assert calls == [
        ToolCall("call_a", "file_write", HELLO_ARGS),
        ToolCall("call_b", "file_write", WORLD_ARGS),
    ]
    deltas = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert [d.index for d in deltas] == [0, 1]


async def test_a_reused_index_followed_by_argument_pieces_feeds_the_newest_call(
    fake_llm: FakeLLMServer,
) -> None:
    second = whole_call("call_b", {}) | {"function": {"name": "file_write", "arguments": ""}}
    fake_llm.enqueue(
        raw(
            chunk({"tool_calls": [whole_call("call_a", HELLO_ARGS)]}),
            chunk({"tool_calls": [second]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"filePath": "world.py", '}}]}),
            chunk(
                {"tool_calls": [{"index": 0, "function": {"arguments": '"content": "print(\\"world\\")"}'}}]}
            ),
            chunk({}, "tool_calls"),
            "data: [DONE]\n\n",
        )
    )
    async with OpenAICompatProvider(fake_llm.url, None, provider_name="ollama") as provider:
        completion = await provider.complete(HELLO)
    assert completion.tool_calls == (
        ToolCall("call_a", "file_write", HELLO_ARGS),
        ToolCall("call_b", "file_write", WORLD_ARGS),
    )


async def test_a_server_that_repeats_the_id_in_every_piece_still_makes_one_call(
    fake_llm: FakeLLMServer,
) -> None:
    first = whole_call("call_a", {}) | {"function": {"name": "file_write", "arguments": '{"filePath": '}}
    rest = {"id": "call_a", "index": 0, "function": {"arguments": '"hello.py"}'}}
    fake_llm.enqueue(
        raw(
            chunk({"tool_calls": [first]}),
            chunk({"tool_calls": [rest]}),
            chunk({}, "tool_calls"),
            "data: [DONE]\n\n",
        )
    )
    retry = RetryPolicy(max_attempts=1)
    async with OpenAICompatProvider(fake_llm.url, None, retry=retry) as provider:
        completion = await provider.complete(HELLO)
    assert completion.tool_calls == (ToolCall("call_a", "file_write", {"filePath": "hello.py"}),)
