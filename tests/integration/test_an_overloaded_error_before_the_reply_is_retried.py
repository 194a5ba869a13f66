"""Anthropic answers 200 and then says `overloaded_error` in the stream, where a plain request
would have got a 529: before any of the reply arrived, it is retried like the 529."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.errors import StreamError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message, Retrying, StreamChunk, TextDelta
from duragent.testing.fake_llm import FakeLLMServer, raw, stream_error, text

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("claude-test", (Message("user", "hello there"),))


@pytest.fixture
async def provider(fake_llm: FakeLLMServer) -> AsyncIterator[AnthropicProvider]:
    retry = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)
    async with AnthropicProvider("sk-ant-test", base_url=fake_llm.url, retry=retry) as p:
        yield p


async def test_overloaded_right_after_message_start_is_retried_and_the_retry_answers(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(stream_error("Overloaded", after_chunks=0), text("back again"))

    chunks: list[StreamChunk] = [chunk async for chunk in provider.stream(HELLO)]

    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "back again"
    retries = [c for c in chunks if isinstance(c, Retrying)]
    assert len(retries) == 1
    assert "overloaded_error: Overloaded" in retries[0].reason
    assert len(fake_llm.requests) == 2


async def test_an_api_error_event_before_any_content_is_retried_too(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    start = '{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}'
    failed = '{"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
    fake_llm.enqueue(
        raw(f"event: message_start\ndata: {start}\n\nevent: error\ndata: {failed}\n\n"), text("fine")
    )
    assert (await provider.complete(HELLO)).text == "fine"
    assert len(fake_llm.requests) == 2


async def test_overloaded_on_every_attempt_gives_up_saying_how_often_it_tried(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(*[stream_error("Overloaded", after_chunks=0)] * 3)
    with pytest.raises(StreamError, match=r"overloaded_error: Overloaded; tried 3 times"):
        await provider.complete(HELLO)
    assert len(fake_llm.requests) == 3


async def test_overloaded_after_text_arrived_is_not_retried(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake_llm.enqueue(stream_error("Overloaded", after_chunks=1))
    with pytest.raises(StreamError, match="overloaded_error: Overloaded"):
        await provider.complete(HELLO)
    assert len(fake_llm.requests) == 1


async def test_a_request_the_api_refuses_in_the_stream_is_not_retried(
    fake_llm: FakeLLMServer, provider: AnthropicProvider
) -> None:
    refused = '{"type":"error","error":{"type":"invalid_request_error","message":"bad tool schema"}}'
    fake_llm.enqueue(raw(f"event: error\ndata: {refused}\n\n"))
    with pytest.raises(StreamError, match="invalid_request_error: bad tool schema"):
        await provider.complete(HELLO)
    assert len(fake_llm.requests) == 1


async def test_an_openai_format_error_event_with_a_5xx_code_before_any_content_is_retried(
    fake_llm: FakeLLMServer,
) -> None:
    # LiteLLM relays an upstream's overload this way, after its own 200.
    relayed = '{"error":{"message":"Overloaded","type":"None","param":"None","code":"529"}}'
    fake_llm.enqueue(raw(f"data: {relayed}\n\n"), text("fine"))
    retry = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)
    async with OpenAICompatProvider(fake_llm.url, None, retry=retry) as provider:
        assert (await provider.complete(HELLO)).text == "fine"
    assert len(fake_llm.requests) == 2


async def test_an_openai_format_error_event_for_a_bad_request_is_not_retried(
    fake_llm: FakeLLMServer,
) -> None:
    refused = '{"error":{"message":"tools[0] is invalid","type":"invalid_request_error","code":400}}'
    fake_llm.enqueue(raw(f"data: {refused}\n\n"), text("never asked for"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=RetryPolicy(initial_delay=0.01)) as provider:
        with pytest.raises(StreamError, match="tools\\[0\\] is invalid"):
            await provider.complete(HELLO)
    assert len(fake_llm.requests) == 1
