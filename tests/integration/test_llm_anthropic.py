"""The Anthropic Messages provider against a real fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.errors import ProviderAuthError, StreamError
from duragent.llm.registry import create_provider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import (
    Finish,
    LLMRequest,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallDelta,
    ToolDefinition,
    Usage,
)
from duragent.testing.fake_llm import FakeLLMServer, error, malformed, raw, stream_error, text, tool_calls

pytest_plugins = ["duragent.testing.pytest_plugin"]

MEMORY_TOOL = ToolDefinition("memory", "Remember and recall facts.", {"type": "object", "properties": {}})
HELLO = LLMRequest("claude-test", (Message("system", "Be brief."), Message("user", "hello there")))


@pytest.fixture
async def provider(fake_llm: FakeLLMServer) -> AsyncIterator[AnthropicProvider]:
    retry = RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with AnthropicProvider("sk-ant-test", base_url=fake_llm.url, retry=retry) as p:
        yield p


async def collect(provider: AnthropicProvider, request: LLMRequest = HELLO) -> list[StreamChunk]:
    return [chunk async for chunk in provider.stream(request)]


async def test_text_deltas_stream_and_usage_comes_from_start_and_delta_events(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(text("Hi from Claude", chunks=3, usage=(31, 4), chunk_delay=0.25))
    chunks = await collect(provider)
    deltas = [c.text for c in chunks if isinstance(c, TextDelta)]
    # pieces that reach the client together are relayed as one (a busy machine may delay a read)
    # so only the first piece (alone on the wire for 0.25 s) and the whole text are certain
    assert deltas[0] == "Hi fr"
    assert "".join(deltas) == "Hi from Claude"
    assert chunks[-2:] == [Usage(input_tokens=31, output_tokens=4), Finish("stop")]


async def test_request_puts_the_system_prompt_at_top_level_and_sends_version_and_key(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    await collect(provider)
    sent = fake_llm.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == "Be brief."
    assert sent.body["max_tokens"] == 4096
    assert sent.messages == [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]


async def test_tool_use_flow_assembles_input_json_and_shapes_tool_results(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(
        tool_calls(
            [("memory", {"action": "remember", "content": "likes tea"}), ("memory", {"action": "recall"})],
            text="Noting that.",
            argument_chunks=3,
        ),
        text("Done: I will remember that you like tea."),
    )
    first = LLMRequest("claude-test", HELLO.messages, tools=(MEMORY_TOOL,), tool_choice="required")
    chunks = await collect(provider, first)
    fragments = [c.arguments_fragment for c in chunks if isinstance(c, ToolCallDelta) and c.index == 0]
    assert len([f for f in fragments if f]) == 3  # input_json_delta pieces of the first call
    calls = [c.tool_call for c in chunks if isinstance(c, ToolCallComplete)]
    assert [c.arguments for c in calls] == [
        {"action": "remember", "content": "likes tea"},
        {"action": "recall"},
    ]
    assert chunks[-1] == Finish("tool_calls")
    assert fake_llm.requests[0].body["tool_choice"] == {"type": "any"}
    assert fake_llm.requests[0].body["tools"][0]["input_schema"] == {"type": "object", "properties": {}}

    follow_up = LLMRequest(
        "claude-test",
        (
            *HELLO.messages,
            Message("assistant", "Noting that.", tool_calls=tuple(calls)),
            Message("tool", "saved", tool_call_id=calls[0].id, name="memory"),
            Message("tool", "likes tea", tool_call_id=calls[1].id, name="memory"),
        ),
        tools=(MEMORY_TOOL,),
    )
    completion = await provider.complete(follow_up)
    assert completion.text == "Done: I will remember that you like tea."
    sent = fake_llm.requests[1].messages
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [
        {"type": "text", "text": "Noting that."},
        {"type": "tool_use", "id": calls[0].id, "name": "memory", "input": calls[0].arguments},
        {"type": "tool_use", "id": calls[1].id, "name": "memory", "input": {"action": "recall"}},
    ]
    assert sent[2]["content"] == [  # consecutive tool results merged into one user message
        {"type": "tool_result", "tool_use_id": calls[0].id, "content": "saved"},
        {"type": "tool_result", "tool_use_id": calls[1].id, "content": "likes tea"},
    ]


async def test_user_words_after_tool_results_join_the_same_user_message(provider: AnthropicProvider) -> None:
    call = ToolCall("toolu_1", "memory", {})
    request = LLMRequest(
        "claude-test",
        (
            Message("user", "hi"),
            Message("assistant", None, tool_calls=(call,)),
            Message("tool", "nothing stored", tool_call_id="toolu_1"),
            Message("user", "ok, go on"),
        ),
    )
    messages = provider.build_payload(request)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "text"]


async def test_error_event_inside_the_stream_raises_stream_error(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(stream_error("Overloaded", after_chunks=1))
    with pytest.raises(
        StreamError, match="anthropic reported an error mid-stream: overloaded_error: Overloaded"
    ):
        await provider.complete(HELLO)


async def test_malformed_event_raises_stream_error_and_the_provider_stays_usable(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(malformed(after_chunks=2))
    with pytest.raises(StreamError, match="malformed chunk from anthropic"):
        await provider.complete(HELLO)
    assert (await provider.complete(HELLO)).text == "echo: hello there"


async def test_rejected_key_error_names_the_variable(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(401, "invalid x-api-key"))
    env = {"ANTHROPIC_API_KEY": "sk-ant-wrong"}
    async with create_provider(
        "anthropic", base_url=fake_llm.url, api_key_env="ANTHROPIC_API_KEY", env=env
    ) as p:
        with pytest.raises(ProviderAuthError) as caught:
            await p.complete(HELLO)
    assert str(caught.value).startswith(
        f"401 from anthropic at {fake_llm.url}/messages: the API key in ANTHROPIC_API_KEY was rejected"
    )


async def test_overloaded_529_is_retried(fake_llm: FakeLLMServer, provider: AnthropicProvider) -> None:
    fake_llm.enqueue(error(529, "Overloaded"), text("back"))
    assert (await provider.complete(HELLO)).text == "back"
    assert len(fake_llm.requests) == 2


async def test_base_url_with_or_without_v1_reaches_the_messages_endpoint(fake_llm: FakeLLMServer) -> None:
    root = fake_llm.url.removesuffix("/v1")
    for base_url in (root, fake_llm.url, fake_llm.url + "/"):
        async with AnthropicProvider("k", base_url=base_url) as provider:
            await provider.complete(HELLO)
    assert [r.path for r in fake_llm.requests] == ["/v1/messages"] * 3


async def test_cancelling_the_consumer_closes_the_connection_on_the_server(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(text("a slow and long reply", chunks=10, chunk_delay=0.5))
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for chunk in provider.stream(HELLO):
            if isinstance(chunk, TextDelta):
                first_chunk.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_chunk.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fake_llm.wait_for_disconnect(within=2) is fake_llm.requests[0]


async def test_a_lone_surrogate_in_the_reply_becomes_a_replacement_character(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(text("half an emoji \ud83d here"))
    chunks = await collect(provider)
    reply = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert reply == "half an emoji \ufffd here"
    reply.encode("utf-8")  # storable


async def test_a_reply_stopped_by_the_context_window_finishes_as_cut_off(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    # Newer models stop with `model_context_window_exceeded` when the window, not max_tokens,
    # ends the reply: it is as cut off as `max_tokens` (and marked truncated, not complete).
    events = [
        (
            "message_start",
            {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}},
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "The list goes on"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "model_context_window_exceeded"},
                "usage": {"output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    fake_llm.enqueue(raw(*(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)))
    completion = await provider.complete(HELLO)
    assert completion.text == "The list goes on"
    assert completion.finish == "length"
