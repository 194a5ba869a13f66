"""OpenAI answers 429 `insufficient_quota` when the account has no credit left: waiting does not
help, so it is not retried, and the error says to add credit instead of "wait a minute"."""

from __future__ import annotations

import pytest

from duragent.llm.errors import ProviderError, ProviderRateLimited
from duragent.llm.registry import create_provider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, error

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("gpt-test", (Message("user", "hello there"),))
NO_CREDIT = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}


async def test_no_credit_left_fails_at_once_saying_what_to_do(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(*[error(429, NO_CREDIT)] * 4)
    env = {"OPENAI_API_KEY": "sk-proj-quota0000000000000"}
    retry = RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with create_provider(
        "openai", base_url=fake_llm.url, api_key_env="OPENAI_API_KEY", env=env, retry=retry
    ) as p:
        with pytest.raises(ProviderError) as caught:
            await p.complete(HELLO)
    assert not isinstance(caught.value, ProviderRateLimited)
    message = str(caught.value)
    assert "You exceeded your current quota" in message
    assert "the account of the API key in OPENAI_API_KEY has no credit left" in message
    assert "wait a minute" not in message
    assert len(fake_llm.requests) == 1


async def test_a_plain_rate_limit_is_still_waited_out(fake_llm: FakeLLMServer) -> None:
    limited = {
        "error": {
            "message": "Rate limit reached for gpt-test",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    fake_llm.enqueue(*[error(429, limited)] * 2)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)
    async with create_provider(
        "openai", base_url=fake_llm.url, env={"OPENAI_API_KEY": "sk-x"}, retry=retry
    ) as p:
        with pytest.raises(ProviderRateLimited, match="wait a minute"):
            await p.complete(HELLO)
    assert len(fake_llm.requests) == 2
