"""A base_url answered with a 301 or 302 (a reverse proxy sending http:// to https://) makes the
HTTP client follow it as a GET, and the model server then says "405 Method Not Allowed": the
error now says the URL was redirected, where to, and to set base_url to it."""

from __future__ import annotations

import pytest

from duragent.llm.errors import ProviderError
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, raw, text

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("model-test", (Message("user", "hello there"),))


@pytest.mark.parametrize("status", [301, 302])
async def test_a_moved_url_names_where_it_moved_to(fake_llm: FakeLLMServer, status: int) -> None:
    moved_to = f"{fake_llm.url}/chat/completions"
    fake_llm.enqueue(raw("Moved", status=status, content_type="text/plain", headers={"Location": moved_to}))
    async with OpenAICompatProvider(fake_llm.url, None, retry=RetryPolicy(max_attempts=1)) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    message = str(caught.value)
    assert message.startswith(f"405 from openai at {fake_llm.url}/chat/completions: ")
    assert f"the request was redirected ({status}) to {moved_to}" in message
    assert "set spec.model.base_url in agent.yaml to the address it moved to" in message


async def test_a_redirect_that_keeps_the_request_still_gets_the_reply(fake_llm: FakeLLMServer) -> None:
    moved_to = f"{fake_llm.url}/chat/completions"
    fake_llm.enqueue(
        raw("", status=308, content_type="text/plain", headers={"Location": moved_to}), text("hi")
    )
    async with OpenAICompatProvider(fake_llm.url, None, retry=RetryPolicy(max_attempts=1)) as provider:
        assert (await provider.complete(HELLO)).text == "hi"
