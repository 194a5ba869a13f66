"""A proxy or server that echoes the API key in its error body (or in an error event) does not
get it into the error a user reads, the retry notice, or the log: the key's variable is named."""

from __future__ import annotations

import logging

import pytest

from duragent.llm.base import Provider
from duragent.llm.errors import ProviderAuthError, StreamError
from duragent.llm.registry import create_provider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message, Retrying
from duragent.testing.fake_llm import FakeLLMServer, error, raw, stream_error, text

pytest_plugins = ["duragent.testing.pytest_plugin"]

KEY = "sk-proj-Zq81mWxT0pLkey-NEVER-SHOWN"
HELLO = LLMRequest("gpt-test", (Message("user", "hello there"),))
FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)


def openai(fake_llm: FakeLLMServer) -> Provider:
    return create_provider(
        "openai",
        base_url=fake_llm.url,
        api_key_env="MY_PROXY_KEY",
        env={"MY_PROXY_KEY": KEY},
        retry=FAST_RETRY,
    )


async def test_a_rejected_key_echoed_by_the_proxy_is_named_not_shown(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(401, f"Authentication Error: invalid key {KEY} (not found)"))
    async with openai(fake_llm) as provider:
        with pytest.raises(ProviderAuthError) as caught:
            await provider.complete(HELLO)
    message = str(caught.value)
    assert KEY not in message
    assert "the API key in MY_PROXY_KEY was rejected" in message
    assert "invalid key [the key in MY_PROXY_KEY] (not found)" in message


async def test_a_retried_failure_echoing_the_key_keeps_it_out_of_the_notice_and_the_log(
    fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.enqueue(error(503, f"upstream refused Bearer {KEY}"), text("fine"))
    with caplog.at_level(logging.DEBUG):
        async with openai(fake_llm) as provider:
            chunks = [chunk async for chunk in provider.stream(HELLO)]
    notices = [chunk.reason for chunk in chunks if isinstance(chunk, Retrying)]
    assert len(notices) == 1
    assert "upstream refused Bearer [the key in MY_PROXY_KEY]" in notices[0]
    assert KEY not in notices[0]
    assert "upstream refused" in caplog.text
    assert KEY not in caplog.text


async def test_an_error_event_echoing_the_key_does_not_show_it(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(stream_error(f"quota exceeded for {KEY}", after_chunks=1))
    async with openai(fake_llm) as provider:
        with pytest.raises(StreamError) as caught:
            await provider.complete(HELLO)
    assert "quota exceeded for [the key in MY_PROXY_KEY]" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_a_malformed_chunk_holding_the_key_does_not_show_it(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(raw(f'data: {{"debug": "auth={KEY}", \n\n'))
    async with openai(fake_llm) as provider:
        with pytest.raises(StreamError, match="malformed chunk from openai") as caught:
            await provider.complete(HELLO)
    assert KEY not in str(caught.value)


async def test_the_anthropic_key_is_kept_out_the_same_way(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(403, f"key {KEY} lacks access"))
    env = {"ANTHROPIC_API_KEY": KEY}
    async with create_provider("anthropic", base_url=fake_llm.url, env=env, retry=FAST_RETRY) as provider:
        with pytest.raises(ProviderAuthError) as caught:
            await provider.complete(LLMRequest("claude-test", (Message("user", "hi"),)))
    assert KEY not in str(caught.value)
    assert "key [the key in ANTHROPIC_API_KEY] lacks access" in str(caught.value)
