"""A base_url with a user and password (`http://user:pass@nas:11434/v1`, a model server behind
a proxy's basic auth) works without an API key, never shows its password in an error, and with
an API key as well says to keep one: the HTTP client refused the pair with a bare ValueError, and
every error naming the URL printed the password into the log and the session's events."""

from __future__ import annotations

import base64
import socket

import pytest

from duragent.llm.errors import ProviderError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, raw, text

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("model-test", (Message("user", "hello there"),))
PASSWORD = "s3cret-proxy-pass"


def with_password(url: str) -> str:
    return url.replace("http://", f"http://bob:{PASSWORD}@", 1)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_without_an_api_key_the_user_and_password_are_sent_as_basic_auth(
    fake_llm: FakeLLMServer,
) -> None:
    fake_llm.enqueue(text("hi"))
    async with OpenAICompatProvider(with_password(fake_llm.url), None) as provider:
        assert (await provider.complete(HELLO)).text == "hi"
    expected = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    assert fake_llm.requests[0].headers["Authorization"] == f"Basic {expected}"


async def test_an_error_naming_the_url_hides_the_password(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(raw('{"error": {"message": "no such model"}}', status=404))
    async with OpenAICompatProvider(
        with_password(fake_llm.url), None, retry=RetryPolicy(max_attempts=1)
    ) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in (caught.value.url or "")
    assert "http://***@127.0.0.1" in str(caught.value)


async def test_an_unreachable_server_retried_hides_the_password(caplog: pytest.LogCaptureFixture) -> None:
    url = with_password(f"http://127.0.0.1:{closed_port()}/v1")
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.01)
    async with OpenAICompatProvider(url, None, retry=retry) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    assert "could not reach openai at http://***@127.0.0.1" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caplog.text


async def test_a_password_in_the_url_and_an_api_key_are_refused_together(fake_llm: FakeLLMServer) -> None:
    async with OpenAICompatProvider(
        with_password(fake_llm.url), "sk-test-key-0123456789", retry=RetryPolicy(max_attempts=1)
    ) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    assert "holds a user name and password, and its API key is sent too" in str(caught.value)
    assert fake_llm.requests == []
