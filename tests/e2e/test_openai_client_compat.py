"""What real OpenAI clients send and expect, beyond the basics of tests/e2e/test_openai_api.py.

Chat UIs, SDKs and frameworks send OpenAI's newer fields, other servers' sampling options and
a session's name in `user`; they send back the messages they received; the SDKs retry some statuses on
their own; a browser UI sends its SDK's headers. Each test drives the official `openai` SDK (or
a browser's preflight) against the in-process server and the fake model.
"""

from __future__ import annotations

import openai
import pytest

from duragent.testing.fake_llm import FakeLLMServer, error, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory

TOKEN = "oai-compat-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client(api: Api, **options: object) -> openai.AsyncOpenAI:
    settings: dict[str, object] = {"max_retries": 0, "timeout": 30} | options
    return openai.AsyncOpenAI(base_url=api.url("/v1"), api_key=TOKEN, **settings)  # type: ignore[arg-type]


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


def conversation_sent(fake_llm: FakeLLMServer) -> list[tuple[str, str]]:
    """The last request's messages after the agent's own system prompt, as (role, content)."""
    return [(m["role"], m["content"]) for m in fake_llm.requests[-1].messages[1:]]


async def test_user_names_a_session_and_a_user_that_cannot_is_refused_naming_it(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    # `user` names the session to continue (as `metadata.session_id` does), for both APIs.
    fake_llm.enqueue(text("Hello Ada."), text("You are Ada."))
    sdk = client(api)
    await sdk.chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "I am Ada."}], user="ada-chat"
    )
    second = await sdk.responses.with_raw_response.create(model="helper", input="Who am I?", user="ada-chat")
    assert second.headers["x-duragent-session"] == "ada-chat"
    assert second.parse().output_text == "You are Ada."
    assert conversation_sent(fake_llm) == [
        ("user", "I am Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
    ]
    # An e-mail address (what some apps send as `user`) is no session name: a 400 that says so.
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "Hi"}], user="ada@example.com"
        )
    assert "ada@example.com" in refused.value.message
    assert len(fake_llm.requests) == 2


async def test_fields_of_newer_sdks_and_other_servers_are_ignored(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("first answer"), text("second answer", chunks=2))
    sdk = client(api)
    first = await sdk.chat.completions.create(
        model="helper",
        messages=[{"role": "user", "content": "one"}],
        safety_identifier="hashed-user",
        prompt_cache_key="cache-1",
        verbosity="low",
        metadata={"source": "notebook"},
        extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    # Sent back as it came (a common pattern), with a reasoning model's `reasoning_content` too.
    returned = first.choices[0].message.model_dump()
    stream = await sdk.chat.completions.create(
        model="helper",
        messages=[
            {"role": "user", "content": "one"},
            returned,
            {"role": "assistant", "content": "and more", "reasoning_content": "thinking..."},
            {"role": "user", "content": "two"},
        ],
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "second answer"
    assert chunks[-1].usage is not None
    assert conversation_sent(fake_llm) == [
        ("user", "one"),
        ("assistant", "first answer"),
        ("assistant", "and more"),
        ("user", "two"),
    ]
    response = await sdk.responses.create(
        model="helper", input="three", safety_identifier="hashed-user", extra_body={"top_k": 40}
    )
    assert response.output_text == "echo: three"


async def test_the_sdk_does_not_send_a_failed_turn_again(api: Api, fake_llm: FakeLLMServer) -> None:
    sdk = client(api, max_retries=2)  # the SDKs' default: a 409 or a 5xx is sent twice more
    fake_llm.enqueue(tool_calls([("bash", {"command": "rm -rf build"})]))
    with pytest.raises(openai.ConflictError) as approval:
        await sdk.chat.completions.create(model="helper", messages=[{"role": "user", "content": "clean"}])
    assert approval.value.code == "approval_required"
    assert approval.value.response.headers["x-should-retry"] == "false"
    assert len(fake_llm.requests) == 1
    fake_llm.enqueue(error(400, "the model refuses"))
    with pytest.raises(openai.InternalServerError) as failed:
        await sdk.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "say it once"}],
            extra_headers={"X-Duragent-Session": "once"},
        )
    assert failed.value.status_code == 502
    assert len(fake_llm.requests) == 2
    status, history = await api.call("GET", "/api/v1/sessions/once/messages", headers=AUTH)
    assert status == 200
    said = [m["content"] for m in history["messages"] if m.get("role") == "user"]
    assert said == ["say it once"]


async def test_what_an_agent_cannot_do_is_refused_naming_the_param(api: Api) -> None:
    sdk = client(api)
    with pytest.raises(openai.BadRequestError) as tools:
        await sdk.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )
    assert tools.value.param == "tools"
    assert "client-side tools are not supported" in tools.value.message
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as picture:
        await sdk.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}],
        )
    assert picture.value.param == "messages.0.content.1"
    assert "'image_url'" in picture.value.message
    with pytest.raises(openai.BadRequestError) as item:
        await sdk.responses.create(
            model="helper", input=[{"type": "function_call_output", "call_id": "c1", "output": "42"}]
        )
    assert item.value.param == "input.0"
    assert "function_call_output" in item.value.message
    with pytest.raises(openai.BadRequestError) as stored:
        await sdk.responses.create(model="helper", input="hi", conversation="conv_123")
    assert stored.value.param == "conversation"
    assert "X-Duragent-Session" in stored.value.message


async def test_a_listed_browser_origin_may_send_the_sdks_headers_and_read_the_session(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(
        git=False, api_token=TOKEN, server_extra="  allowed_origins: ['https://chat.example']"
    )
    # What a browser asks before the OpenAI JS SDK's POST (names lower-cased, as browsers send them).
    asked = [
        "authorization",
        "content-type",
        "x-duragent-session",
        "x-stainless-arch",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-package-version",
        "x-stainless-retry-count",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-timeout",
    ]
    preflight = {
        "Origin": "https://chat.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": ",".join(asked),
    }
    async with api.http.options(api.url("/v1/chat/completions"), headers=preflight) as response:
        assert response.status == 204
        allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(asked) <= allowed
    fake_llm.enqueue(text("hello browser"))
    body = {"model": "helper", "messages": [{"role": "user", "content": "hi"}]}
    headers = {**AUTH, "Origin": "https://chat.example", "X-Duragent-Session": "browser-chat"}
    async with api.http.post(api.url("/v1/chat/completions"), json=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://chat.example"
        assert "x-duragent-session" in response.headers["Access-Control-Expose-Headers"].lower()
        assert response.headers["X-Duragent-Session"] == "browser-chat"
    # Any other page is still refused, before its preflight.
    other = {**preflight, "Origin": "https://evil.example"}
    async with api.http.options(api.url("/v1/chat/completions"), headers=other) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_a_responses_input_without_a_last_user_message_is_refused_naming_the_input(api: Api) -> None:
    sdk = client(api)
    with pytest.raises(openai.BadRequestError) as assistant_last:
        await sdk.responses.create(
            model="helper",
            instructions="Be brief.",
            input=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        )
    assert assistant_last.value.param == "input.1"
    assert "messages" not in assistant_last.value.message
    with pytest.raises(openai.BadRequestError) as blank:
        await sdk.responses.create(model="helper", input="  ")
    assert blank.value.param == "input"


async def test_a_response_carries_the_metadata_it_was_asked_with(api: Api, fake_llm: FakeLLMServer) -> None:
    # As OpenAI's responses do: a client tags its requests and finds the tags on each response.
    fake_llm.enqueue(text("whole"), text("streamed"))
    sdk = client(api)
    tags = {"source": "notebook", "run": "7"}
    whole = await sdk.responses.create(model="helper", input="one", metadata=tags)
    assert whole.metadata == tags
    stream = await sdk.responses.create(model="helper", input="two", metadata=tags, stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created"
    assert events[0].response.metadata == tags
    assert events[-1].type == "response.completed"
    assert events[-1].response.metadata == tags
