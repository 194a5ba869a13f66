"""The OpenAI-compatible API with conversations and mistakes real clients send, beyond the basics.

A RAG app sends its documents and the question as two user messages; a chat UI keeps a refused
message (an image) in its chat and sends it again with every later one; an app names a session
that has ended, or names it with a number; a client shows the error's message as it comes. Each
test drives the official `openai` SDK against the in-process server and the fake model, and
asserts what the model was sent and what the client got.
"""

from __future__ import annotations

import openai
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "oai-edge-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client(api: Api) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=api.url("/v1"), api_key=TOKEN, max_retries=0, timeout=30)


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


def conversation_sent(fake_llm: FakeLLMServer) -> list[tuple[str, str]]:
    """The last request's messages after the agent's own system prompt, as (role, content)."""
    return [(m["role"], m["content"]) for m in fake_llm.requests[-1].messages[1:]]


async def test_consecutive_user_messages_are_answered_with_one_model_call(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("It is about cats."))
    messages = [
        {"role": "user", "content": "Document: cats purr."},
        {"role": "user", "content": "What is the document about?"},
    ]
    reply = await client(api).chat.completions.create(model="helper", messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "It is about cats."
    # The model saw both messages and answered them once: no turn of its own for the first one.
    assert len(fake_llm.requests) == 1
    assert conversation_sent(fake_llm) == [
        ("user", "Document: cats purr."),
        ("user", "What is the document about?"),
    ]
    # The same for the Responses API, whose input becomes the same conversation.
    fake_llm.enqueue(text("Still cats."))
    response = await client(api).responses.create(model="helper", input=messages)  # type: ignore[arg-type]
    assert response.output_text == "Still cats."
    assert len(fake_llm.requests) == 2


async def test_a_validation_error_says_what_is_wrong_once(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client(api).chat.completions.create(model="helper", messages=[])
    assert caught.value.param == "messages"
    message = caught.value.message
    assert message.count("List should have at least 1 item") == 1, message
    # A body that is not JSON: what the parser said, once.
    headers = {**AUTH, "Content-Type": "application/json"}
    async with api.http.post(api.url("/v1/chat/completions"), data=b"{oops", headers=headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["message"].count("Expecting property name") == 1, error


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"stream": "yes"}, "stream"),
        (
            "/v1/chat/completions",
            {"stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        ("/v1/responses", {"stream": "false"}, "stream"),
    ],
)
async def test_a_flag_that_is_not_true_or_false_is_refused_naming_it(
    api: Api, fake_llm: FakeLLMServer, path: str, body: dict[str, object], param: str
) -> None:
    # "false" read as true (or "yes" as a wish to stream) would answer in a shape the client
    # did not ask for; OpenAI refuses anything but a JSON boolean
    chat = {"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"input": "hi"}
    async with api.http.post(
        api.url(path), json={"model": "helper", **chat, **body}, headers=AUTH
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == param
    assert "boolean" in error["message"], error
    assert fake_llm.requests == []


async def test_a_message_to_an_ended_session_is_refused_naming_where_the_name_came_from(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    sdk = client(api)
    await sdk.chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "Hi"}], user="done-chat"
    )
    status, _ = await api.call("POST", "/api/v1/sessions/done-chat/end", {}, headers=AUTH)
    assert status == 200
    with pytest.raises(openai.ConflictError) as caught:
        await sdk.chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "Still there?"}], user="done-chat"
        )
    # The client learns which of its fields named the session, and the SDK does not send it again.
    assert caught.value.param == "user"
    assert "done-chat" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert caught.value.response.headers["x-duragent-session"] == "done-chat"
    assert len(fake_llm.requests) == 1


async def test_a_session_id_that_is_not_a_string_is_refused_not_ignored(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    # Ignored, it would leave the request stateless: a conversation the client thinks is kept.
    with pytest.raises(openai.BadRequestError) as caught:
        await client(api).chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "Hi"}],
            metadata={"session_id": 42},  # type: ignore[dict-item]
        )
    assert caught.value.param == "metadata.session_id"
    assert fake_llm.requests == []


async def test_an_image_earlier_in_the_chat_does_not_block_a_named_session(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    # A chat UI keeps the refused image message in its chat and sends it with every later one.
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        {"role": "user", "content": "Then just say hello."},
    ]
    sdk = client(api)
    reply = await sdk.chat.completions.create(
        model="helper",
        messages=messages,  # type: ignore[arg-type]
        extra_headers={"X-Duragent-Session": "pictures"},
    )
    # Only the last message reaches a named session: the image it never gets is no reason to refuse.
    assert reply.choices[0].message.content == "echo: Then just say hello."
    # Stateless, the whole conversation is the model's: the image is still refused, by its place.
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="helper", messages=messages)  # type: ignore[arg-type]
    assert caught.value.param == "messages.0.content.1"
    # The message being answered is refused in a named session too.
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="helper",
            messages=messages[:1],  # type: ignore[arg-type]
            extra_headers={"X-Duragent-Session": "pictures"},
        )
    assert caught.value.param == "messages.0.content.1"
    assert len(fake_llm.requests) == 1


async def test_a_history_ending_in_a_tool_result_is_answered_with_one_model_call(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    """A client's history whose last step was a tool's result made the agent first answer that
    result in a turn of its own (a model call nobody asked for, its reply stored), then the new
    message."""
    fake_llm.enqueue(text("It was 12 degrees."))
    messages = [
        {"role": "user", "content": "What is the weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"},
        {"role": "user", "content": "And what did it say?"},
    ]
    reply = await client(api).chat.completions.create(model="helper", messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "It was 12 degrees."
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize(
    ("content", "param", "said"),
    [
        (5, "messages.0.content", "must be a string or a list of content parts"),
        (["hi"], "messages.0.content", "part 0: a content part must be an object, not str"),
        (
            [{"type": "text", "text": "a"}, {"text": "b"}],
            "messages.0.content",
            "part 1: `type` must be a string",
        ),
        ([{"type": "text", "text": 7}], "messages.0.content", "part 0: `text` must be a string"),
    ],
)
async def test_a_message_content_of_the_wrong_type_is_refused_naming_the_content(
    api: Api, fake_llm: FakeLLMServer, content: object, param: str, said: str
) -> None:
    # One error at the content itself, not one per shape it could have had (`content.str`,
    # `content.list[TextPart]`): those are names of this server's parser, not fields of the body.
    with pytest.raises(openai.BadRequestError) as caught:
        await client(api).chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        )
    assert caught.value.param == param
    message = caught.value.message
    assert said in message, message
    assert "list[TextPart]" not in message, message
    assert ".str" not in message, message
    assert fake_llm.requests == []


@pytest.mark.parametrize(
    ("given", "param", "said"),
    [
        (5, "input", "must be a string or a list of messages"),
        ([{"role": "user", "content": 5}], "input.0.content", "must be a string or a list of content parts"),
        (["hi"], "input.0", "valid dictionary"),
        ([{"role": "wizard", "content": "hi"}], "input.0.role", "'user'"),
    ],
)
async def test_a_responses_input_of_the_wrong_type_is_refused_naming_the_item(
    api: Api, fake_llm: FakeLLMServer, given: object, param: str, said: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client(api).responses.create(model="helper", input=given)  # type: ignore[arg-type]
    assert caught.value.param == param
    message = caught.value.message
    assert said in message, message
    assert "list[Input" not in message, message
    assert ".str" not in message, message
    assert fake_llm.requests == []
