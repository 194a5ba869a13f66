"""A reply whose finish reason has arrived is whole: a proxy resetting the connection before the
usage chunk and `[DONE]` (OpenAI) or before `message_stop` (Anthropic) lost only the end marker,
yet the reply was thrown away as "the connection broke mid-stream" and the turn failed. A reset
before the finish reason still fails as a reply cut short."""

from __future__ import annotations

import json

import pytest

from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.errors import StreamError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, raw

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("model-test", (Message("user", "hello there"),))
ONCE = RetryPolicy(max_attempts=1)


def openai_chunk(delta: dict[str, str], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"choices": [choice]}) + "\n\n"


def anthropic_event(kind: str, **fields: object) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"


ANTHROPIC_REPLY = (
    anthropic_event("message_start", message={"usage": {"input_tokens": 3, "output_tokens": 1}}),
    anthropic_event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    anthropic_event("content_block_delta", index=0, delta={"type": "text_delta", "text": "All done."}),
    anthropic_event("content_block_stop", index=0),
)


async def test_openai_reply_reset_after_its_finish_reason_is_kept(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(raw(openai_chunk({"content": "All done."}), openai_chunk({}, finish="stop"), reset=True))
    async with OpenAICompatProvider(fake_llm.url, None, retry=ONCE) as provider:
        completion = await provider.complete(HELLO)
    assert completion.text == "All done."
    assert completion.finish == "stop"


async def test_anthropic_reply_reset_after_its_stop_reason_is_kept(fake_llm: FakeLLMServer) -> None:
    stop = anthropic_event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 4})
    fake_llm.enqueue(raw(*ANTHROPIC_REPLY, stop, reset=True))
    async with AnthropicProvider("sk-ant-test", base_url=fake_llm.url, retry=ONCE) as provider:
        completion = await provider.complete(HELLO)
    assert completion.text == "All done."
    assert completion.usage is not None
    assert completion.usage.output_tokens == 4


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_reset_before_the_finish_reason_still_fails(fake_llm: FakeLLMServer, api: str) -> None:
    if api == "openai":
        fake_llm.enqueue(raw(openai_chunk({"content": "All done."}), reset=True))
        provider: OpenAICompatProvider | AnthropicProvider
        provider = OpenAICompatProvider(fake_llm.url, None, retry=ONCE)
    else:
        fake_llm.enqueue(raw(*ANTHROPIC_REPLY, reset=True))
        provider = AnthropicProvider("sk-ant-test", base_url=fake_llm.url, retry=ONCE)
    async with provider:
        with pytest.raises(StreamError, match="broke mid-stream"):
            await provider.complete(HELLO)
