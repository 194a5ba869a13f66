"""Some OpenAI-compatible services refuse `stream_options` (Mistral's API answers 422 "Extra
inputs are not permitted"; Azure and Bedrock behind proxies 400). Every turn failed, with nothing
in agent.yaml to change it: now the request is sent again without the option, and later requests
leave it out (their replies carry no token counts)."""

from __future__ import annotations

import pytest

from duragent.llm.errors import ProviderError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, error, text

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("mistral-small-latest", (Message("user", "hello there"),))
MISTRAL_422 = {
    "object": "error",
    "message": {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options", "include_usage"],
                "msg": "Extra inputs are not permitted",
                "input": True,
            }
        ]
    },
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}


async def test_a_refused_stream_options_is_dropped_and_the_reply_comes(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(422, MISTRAL_422), text("Bonjour"), text("encore"))
    async with OpenAICompatProvider(fake_llm.url, "key-for-mistral", retry=RetryPolicy(max_attempts=1)) as p:
        assert (await p.complete(HELLO)).text == "Bonjour"
        assert (await p.complete(HELLO)).text == "encore"
    sent = [request.body for request in fake_llm.requests]
    assert len(sent) == 3
    assert "stream_options" in sent[0]
    assert "stream_options" not in sent[1]
    assert "stream_options" not in sent[2]


async def test_a_bedrock_style_refusal_naming_include_usage_is_dropped_too(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(400, "extraneous key [include_usage] is not permitted"), text("ok"))
    async with OpenAICompatProvider(fake_llm.url, None) as p:
        assert (await p.complete(HELLO)).text == "ok"
    assert "stream_options" not in fake_llm.requests[1].body


async def test_another_bad_request_is_not_sent_again(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(400, "Invalid value for 'temperature'"), text("never asked for"))
    async with OpenAICompatProvider(fake_llm.url, None) as p:
        with pytest.raises(ProviderError, match="Invalid value for 'temperature'"):
            await p.complete(HELLO)
    assert len(fake_llm.requests) == 1


async def test_a_validation_error_reads_as_where_and_what(fake_llm: FakeLLMServer) -> None:
    # FastAPI-style servers (and Mistral's API, inside `message`) list what they refused.
    refused = {
        "object": "error",
        "message": {
            "detail": [
                {"type": "missing", "loc": ["body", "messages", 0, "content"], "msg": "Field required"},
                {"type": "less_than_equal", "loc": ["body", "temperature"], "msg": "Input should be <= 1.5"},
            ]
        },
        "type": "invalid_request_error",
    }
    fake_llm.enqueue(error(422, refused))
    async with OpenAICompatProvider(fake_llm.url, None) as p:
        with pytest.raises(ProviderError) as caught:
            await p.complete(HELLO)
    assert str(caught.value).endswith(
        ": body.messages.0.content: Field required; body.temperature: Input should be <= 1.5"
    )
