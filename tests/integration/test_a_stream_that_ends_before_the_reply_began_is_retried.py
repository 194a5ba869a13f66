"""A server that answers 200 and then ends the body cleanly before any of the reply (a crashed
model worker behind a proxy) is tried again, as a dropped connection is; once part of the reply
has arrived it is not, and the error says the reply was cut short."""

from __future__ import annotations

import json

import pytest

from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.errors import StreamError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, raw, text

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("model-test", (Message("user", "hello there"),))
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


def openai_chunk(delta: dict[str, str]) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}) + "\n\n"


async def test_openai_body_ending_after_only_the_role_is_tried_again(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(raw(openai_chunk({"role": "assistant", "content": ""})), text("second try"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        assert (await provider.complete(HELLO)).text == "second try"
    assert len(fake_llm.requests) == 2


async def test_anthropic_body_ending_after_message_start_is_tried_again(fake_llm: FakeLLMServer) -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}
    fake_llm.enqueue(raw(f"event: message_start\ndata: {json.dumps(start)}\n\n"), text("second try"))
    async with AnthropicProvider("sk-ant-test", base_url=fake_llm.url, retry=FAST_RETRY) as provider:
        assert (await provider.complete(HELLO)).text == "second try"
    assert len(fake_llm.requests) == 2


async def test_a_body_ending_after_some_text_is_not_tried_again(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(raw(openai_chunk({"content": "Half a"})), text("never asked for"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        with pytest.raises(StreamError, match="ended before the reply was complete"):
            await provider.complete(HELLO)
    assert len(fake_llm.requests) == 1
