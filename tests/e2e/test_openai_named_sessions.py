"""Sessions named by OpenAI-style requests (`X-Duragent-Session`, `metadata.session_id`, `user`),
driven by the official `openai` SDK against the in-process server and the fake model."""

from __future__ import annotations

import asyncio

import openai
import pytest

from duragent.testing.fake_llm import FakeLLMServer, error, text
from tests.e2e.server_harness import Api, ApiFactory

TOKEN = "oai-sessions-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client(api: Api) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=api.url("/v1"), api_key=TOKEN, max_retries=0, timeout=30)


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def test_two_first_requests_to_a_new_session_both_get_answered_in_it(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    # A chat UI sends its first message and, at the same moment, asks for the chat's title.
    fake_llm.enqueue(text("first reply"), text("second reply"))
    sdk = client(api)
    asked = [
        sdk.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": said}],
            extra_headers={"X-Duragent-Session": "new-chat"},
        )
        for said in ("hello", "give this chat a title")
    ]
    replies = await asyncio.gather(*asked)
    assert sorted(r.choices[0].message.content for r in replies) == ["first reply", "second reply"]
    status, history = await api.call("GET", "/api/v1/sessions/new-chat/messages", headers=AUTH)
    assert status == 200
    said = [m["content"] for m in history["messages"] if m.get("role") == "user"]
    assert sorted(said) == ["give this chat a title", "hello"]


@pytest.mark.parametrize(
    ("where", "param"),
    [
        ({"user": "ada@example.com"}, "user"),
        ({"metadata": {"session_id": "chats/ada"}}, "metadata.session_id"),
        ({"extra_headers": {"X-Duragent-Session": "ada chat"}}, "X-Duragent-Session"),
    ],
)
async def test_a_session_name_that_is_not_one_is_refused_naming_where_it_came_from(
    api: Api, fake_llm: FakeLLMServer, where: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client(api).chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "Hi"}],
            **where,  # type: ignore[arg-type]
        )
    assert refused.value.param == param
    assert param in refused.value.message
    assert refused.value.code == "validation"
    assert fake_llm.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_turn_of_a_named_session_still_names_the_session(
    api: Api, fake_llm: FakeLLMServer, stream: bool
) -> None:
    fake_llm.enqueue(error(400, "the model refuses"))
    with pytest.raises(openai.InternalServerError) as failed:
        await client(api).chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "hi"}],
            user="failing-chat",
            stream=stream,
        )
    assert failed.value.status_code == 502
    assert failed.value.response.headers["x-duragent-session"] == "failing-chat"
    assert failed.value.response.headers["x-should-retry"] == "false"


async def test_a_failed_response_of_a_named_session_still_names_the_session(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(error(400, "the model refuses"))
    with pytest.raises(openai.InternalServerError) as failed:
        await client(api).responses.create(model="helper", input="hi", metadata={"session_id": "failing"})
    assert failed.value.response.headers["x-duragent-session"] == "failing"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_turn_of_a_named_session_says_how_to_run_it_again_without_sending_it_twice(
    api: Api, fake_llm: FakeLLMServer, stream: bool
) -> None:
    # The message is stored in the session before the model fails: sent again, it would be in
    # the conversation twice. The error says what runs the turn again instead.
    fake_llm.enqueue(error(401, "invalid api key"))
    with pytest.raises(openai.InternalServerError) as failed:
        await client(api).chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "hi"}], user="keyless", stream=stream
        )
    assert "POST /api/v1/sessions/keyless/retry" in failed.value.message, failed.value.message
    # ... and that runs it (the key fixed meanwhile), the message once in the conversation.
    fake_llm.enqueue(text("Hello."))
    status, _ = await api.call("POST", "/api/v1/sessions/keyless/retry", {}, headers=AUTH)
    assert status == 202
    retried = await fake_llm.wait_until(lambda: fake_llm.requests[1:] or None)
    assert [m["content"] for m in retried[0].messages if m["role"] == "user"] == ["hi"]


async def test_a_failed_stateless_turn_does_not_point_to_a_session(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(401, "invalid api key"))
    with pytest.raises(openai.InternalServerError) as failed:
        await client(api).chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "hi"}]
        )
    assert "/retry" not in failed.value.message, failed.value.message
