"""A base_url that reaches something other than the model API (a web page, a server's "unknown
endpoint" JSON answered with 200, a proxy's HTML error page) gets an error saying what came back
and what to check, not "the stream ended before the reply was complete" or a page of HTML."""

from __future__ import annotations

import pytest

from duragent.llm.errors import ProviderError, ProviderUnavailable
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy
from duragent.llm.types import LLMRequest, Message
from duragent.testing.fake_llm import FakeLLMServer, raw

pytest_plugins = ["duragent.testing.pytest_plugin"]

HELLO = LLMRequest("local-model", (Message("user", "hello there"),))
FAST_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    "</body>\r\n</html>\r\n"
)
WEB_APP = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Open WebUI</title>\n'
    '<link rel="icon" href="data:image/png;base64,iVBORw0KGgo=">\n</head>\n'
    '<body><div id="app"></div></body>\n</html>\n'
)


async def test_an_unknown_endpoint_answered_with_200_json_says_what_the_server_said(
    fake_llm: FakeLLMServer,
) -> None:
    # LM Studio answers a path it does not serve this way (base_url without /v1).
    fake_llm.enqueue(
        raw(
            '{"error":"Unexpected endpoint or method. (POST /chat/completions)"}',
            content_type="application/json",
        )
    )
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    message = str(caught.value)
    assert "Unexpected endpoint or method. (POST /chat/completions)" in message
    assert "application/json" in message
    assert "not a stream" in message
    assert "spec.model.base_url" in message
    assert "ended before the reply was complete" not in message
    assert len(fake_llm.requests) == 1


async def test_a_web_page_answered_with_200_is_named_by_its_title(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(raw(WEB_APP, content_type="text/html"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    message = str(caught.value)
    assert "an HTML page titled 'Open WebUI'" in message
    assert "<" not in message.split("at ", 1)[1].split(": ", 1)[1]
    assert "spec.model.base_url" in message


async def test_a_proxy_error_page_is_summed_up_by_its_title(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(*[raw(NGINX_502, status=502, content_type="text/html")] * 2)
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.complete(HELLO)
    first_line = str(caught.value)
    assert first_line.startswith(
        f"502 from openai at {fake_llm.url}/chat/completions: an HTML page titled '502 Bad Gateway'"
    )
    assert "<" not in first_line
    assert "\n" not in first_line
    assert len(fake_llm.requests) == 2  # a proxy's 502 is still worth another attempt


async def test_a_stream_labelled_with_another_content_type_is_still_read(fake_llm: FakeLLMServer) -> None:
    chunk = '{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}'
    fake_llm.enqueue(raw(f"data: {chunk}\n\n", "data: [DONE]\n\n", content_type="text/plain"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        assert (await provider.complete(HELLO)).text == "hi"


async def test_a_page_opening_with_a_comment_and_without_a_title_is_summed_up_in_words(
    fake_llm: FakeLLMServer,
) -> None:
    page = (
        "<!-- error page -->\n<html><head><style>h1 {color: red}</style></head>"
        "<body><h1>Service Unavailable</h1><p>The upstream is &quot;down&quot;.</p></body></html>"
    )
    fake_llm.enqueue(raw(page, status=418, content_type="text/html"))
    async with OpenAICompatProvider(fake_llm.url, None, retry=FAST_RETRY) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(HELLO)
    assert str(caught.value).endswith(': an HTML page: Service Unavailable The upstream is "down".')
