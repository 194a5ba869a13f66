"""The OpenAI-compatible API, driven by the official `openai` SDK against the server and the fake model.

The in-process server shares the test's event loop, so the sync client runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory, start_serve, write_workspace
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "oai-test-token"


def sync_client(api: Api, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.url("/v1"), api_key=token, max_retries=0, timeout=30)


def async_client(api: Api, token: str = TOKEN) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=api.url("/v1"), api_key=token, max_retries=0, timeout=30)


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def test_models_are_the_agents(api: Api) -> None:
    client = async_client(api)
    models = await client.models.list()
    assert sorted(m.id for m in models.data) == ["helper", "pauser"]
    assert all(m.object == "model" and m.owned_by == "duragent" for m in models.data)
    assert (await client.models.retrieve("helper")).id == "helper"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("nobody")
    assert caught.value.code == "model_not_found"


async def test_sync_client_gets_the_agents_reply_and_usage(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("Hello from the agent", chunks=3, usage=(12, 5)))
    completion = await asyncio.to_thread(
        sync_client(api).chat.completions.create, model="helper", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "helper"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the agent"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 5)
    assert completion.usage.total_tokens == 17


async def test_stateless_request_sends_the_clients_conversation_and_stores_nothing(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("Paris"))
    raw = await async_client(api).chat.completions.with_raw_response.create(
        model="helper",
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": "Rome"},
            {"role": "user", "content": "And of France?"},
        ],
    )
    assert raw.parse().choices[0].message.content == "Paris"
    assert "x-duragent-session" not in raw.headers
    sent = fake_llm.requests[-1].messages
    assert sent[0]["role"] == "system"
    assert "You are a test agent." in sent[0]["content"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("system", "Answer in one word."),
        ("user", "Capital of Italy?"),
        ("assistant", "Rome"),
        ("user", "And of France?"),
    ]
    status, listing = await api.call("GET", "/api/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert listing["sessions"] == []


async def test_streamed_reply_arrives_in_openai_chunks_with_usage_last(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("one two three four", chunks=4, usage=(7, 4)))
    stream = await async_client(api).chat.completions.create(
        model="helper",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 4)
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_ends_with_done_marker_on_the_wire(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("hi there", chunks=2))
    body = {"model": "helper", "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with api.http.post(api.url("/v1/chat/completions"), json=body, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        raw = (await response.read()).decode()
    frames = [f for f in raw.split("\n\n") if f.strip() and not f.startswith(":")]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    last_chunk = json.loads(frames[-2].removeprefix("data: "))
    assert "usage" not in last_chunk
    assert last_chunk["choices"][0]["finish_reason"] == "stop"


async def test_sync_streaming_client_reads_the_reply(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("streamed in sync", chunks=3))

    def read() -> str:
        stream = sync_client(api).chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "go"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert await asyncio.to_thread(read) == "streamed in sync"


async def test_named_session_keeps_history_and_is_returned_in_a_header(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    client = async_client(api)
    fake_llm.enqueue(text("Noted, your name is Ada."), text("Your name is Ada."))
    first = await client.chat.completions.with_raw_response.create(
        model="helper",
        messages=[{"role": "user", "content": "My name is Ada."}],
        extra_headers={"X-Duragent-Session": "ada-chat"},
    )
    assert first.headers["x-duragent-session"] == "ada-chat"
    second = await client.chat.completions.with_raw_response.create(
        model="helper", messages=[{"role": "user", "content": "What is my name?"}], user="ada-chat"
    )
    assert second.headers["x-duragent-session"] == "ada-chat"
    assert second.parse().choices[0].message.content == "Your name is Ada."
    sent = [(m["role"], m["content"]) for m in fake_llm.requests[-1].messages[1:]]
    assert sent == [
        ("user", "My name is Ada."),
        ("assistant", "Noted, your name is Ada."),
        ("user", "What is my name?"),
    ]
    status, session = await api.call(
        "GET", "/api/v1/sessions/ada-chat", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    assert session["agent"] == "helper"


async def test_named_session_of_another_agent_is_refused(api: Api, fake_llm: FakeLLMServer) -> None:
    client = async_client(api)
    await client.chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "hi"}], metadata={"session_id": "shared"}
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="pauser", messages=[{"role": "user", "content": "hi"}], metadata={"session_id": "shared"}
        )
    assert "talks to agent 'helper'" in caught.value.message
    assert caught.value.param == "model"


async def test_agent_tools_run_on_the_server_and_the_final_text_is_the_reply(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo from-the-tool"})], usage=(10, 3)),
        text("The tool said from-the-tool", usage=(20, 6)),
    )
    completion = await async_client(api).chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "run it"}]
    )
    assert completion.choices[0].message.content == "The tool said from-the-tool"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 9)
    tool_message = [m for m in fake_llm.requests[-1].messages if m["role"] == "tool"]
    assert "from-the-tool" in tool_message[0]["content"]


async def test_stateless_call_needing_approval_fails_clearly(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "rm -rf build"})]))
    client = async_client(api)
    with pytest.raises(openai.ConflictError) as caught:
        await client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "clean"}])
    assert caught.value.code == "approval_required"
    assert "rm -rf build" in caught.value.message
    assert "X-Duragent-Session" in caught.value.message
    assert len(fake_llm.requests) == 1  # the turn stopped there: the model was not asked again
    fake_llm.enqueue(text("fresh"))
    again = await client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "hi"}])
    assert again.choices[0].message.content == "fresh"


async def test_named_session_waits_for_an_approval_answered_elsewhere(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch approved"})]), text("done it"))
    client = async_client(api)
    reply = asyncio.create_task(
        client.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "make a file"}],
            extra_headers={"X-Duragent-Session": "needs-ok"},
            stream=True,
        )
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(200):
        status, session = await api.call("GET", "/api/v1/sessions/needs-ok", headers=auth)
        if status == 200 and session.get("pending_approvals"):
            break
        await asyncio.sleep(0.05)
    call_id = session["pending_approvals"][0]["call_id"]
    status, _ = await api.call(
        "POST",
        "/api/v1/sessions/needs-ok/approve",
        {"call_id": call_id, "decision": "allow_once"},
        headers=auth,
    )
    assert status == 200
    stream = await reply
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "done it"


async def test_errors_come_in_openai_format(api: Api) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        await async_client(api, token="wrong").models.list()
    assert caught.value.body["message"]
    client = async_client(api)
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    assert "helper" in missing.value.message
    with pytest.raises(openai.BadRequestError) as last:
        await client.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        )
    assert "last message must be a user message" in last.value.message
    with pytest.raises(openai.BadRequestError) as tools:
        await client.chat.completions.create(
            model="helper",
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )
    assert "client-side tools are not supported" in tools.value.message
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with api.http.post(api.url("/v1/chat/completions"), json={"model": "helper"}, headers=headers) as r:
        body = await r.json()
    assert r.status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "messages"


async def test_provider_failure_mid_stream_reaches_the_client_as_an_error(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    from duragent.testing.fake_llm import error

    fake_llm.enqueue(error(400, "the model refuses"))
    with pytest.raises(openai.APIStatusError) as caught:
        await async_client(api).chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 502
    assert "the model refuses" in caught.value.message


@pytest.mark.slow
async def test_sdk_talks_to_a_real_duragent_serve(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    config = write_workspace(tmp_path, fake_llm.url, api_token=TOKEN, git=False)
    server = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    try:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0, timeout=30)
        assert "helper" in [m.id for m in (await client.models.list()).data]
        reply = await client.chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "ping"}]
        )
        assert reply.choices[0].message.content == "echo: ping"
        stream = await client.chat.completions.create(
            model="helper", messages=[{"role": "user", "content": "pong"}], stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "echo: pong"
    finally:
        assert server.terminate() == 0, server.log()


async def test_failure_after_text_was_streamed_arrives_as_an_error_event(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    from duragent.testing.fake_llm import stream_error

    fake_llm.enqueue(stream_error("the model fell over", after_chunks=1))
    stream = await async_client(api).chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as caught:
        await read()
    assert "".join(received) == "fine so far"
    assert "the model fell over" in caught.value.message


async def test_a_reply_cut_off_by_the_token_limit_finishes_with_length(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("cut o", finish="length"), text("cut o", chunks=2, finish="length"))
    client = async_client(api)
    whole = await client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "x"}])
    assert whole.choices[0].finish_reason == "length"
    stream = await client.chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "x"}], stream=True
    )
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finishes[-1] == "length"


async def test_a_stateless_turn_stops_when_its_client_hangs_up(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("word " * 200, chunks=200, chunk_delay=0.05))
    body = {"model": "helper", "messages": [{"role": "user", "content": "talk"}], "stream": True}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with api.http.post(api.url("/v1/chat/completions"), json=body, headers=headers) as response:
        async for line in response.content:
            if b'"content":"word' in line:
                break
    # nobody is left to read the reply: the model's request is abandoned too
    abandoned = await fake_llm.wait_for_disconnect(within=10)
    assert abandoned.path == "/v1/chat/completions"


# --- POST /v1/responses ---------------------------------------------------------------------------


async def test_responses_api_answers_with_the_agents_reply_and_usage(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("Rome", chunks=2, usage=(9, 2)))
    response = await async_client(api).responses.create(model="helper", input="Capital of Italy?")
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "Rome"
    assert response.output[0].role == "assistant"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        9,
        2,
        11,
    )
    assert fake_llm.requests[-1].messages[-1] == {"role": "user", "content": "Capital of Italy?"}


async def test_responses_api_sends_instructions_and_the_input_conversation(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("Paris"))
    response = await asyncio.to_thread(
        sync_client(api).responses.create,
        model="helper",
        instructions="Answer in one word.",
        input=[
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Rome"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "And of France?"}]},
        ],
    )
    assert response.output_text == "Paris"
    sent = [(m["role"], m["content"]) for m in fake_llm.requests[-1].messages[1:]]
    assert sent == [
        ("system", "Answer in one word."),
        ("user", "Capital of Italy?"),
        ("assistant", "Rome"),
        ("user", "And of France?"),
    ]


async def test_responses_api_streams_typed_events_ending_with_the_completed_response(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("one two three", chunks=3, usage=(5, 3)))
    stream = await async_client(api).responses.create(model="helper", input="count", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two three"
    completed = events[-1].response
    assert completed.output_text == "one two three"
    assert completed.usage is not None
    assert completed.usage.output_tokens == 3


async def test_responses_api_continues_a_named_session(api: Api, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("first"), text("second"))
    client = async_client(api)
    headers = {"X-Duragent-Session": "resp-chat"}
    raw = await client.responses.with_raw_response.create(model="helper", input="one", extra_headers=headers)
    assert raw.headers["x-duragent-session"]
    await client.responses.create(model="helper", input="two", extra_headers=headers)
    assert [m["content"] for m in fake_llm.requests[-1].messages if m["role"] == "user"] == ["one", "two"]


async def test_responses_api_refuses_what_an_agent_cannot_do(api: Api) -> None:
    client = async_client(api)
    with pytest.raises(openai.BadRequestError) as tools:
        await client.responses.create(
            model="helper", input="hi", tools=[{"type": "function", "name": "f", "parameters": {}}]
        )
    assert "client-side tools are not supported" in tools.value.message
    with pytest.raises(openai.BadRequestError) as previous:
        await client.responses.create(model="helper", input="hi", previous_response_id="resp_x")
    assert "X-Duragent-Session" in previous.value.message
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="nobody", input="hi")


async def _approve_when_asked(api: Api, session: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def pending() -> str | None:
        status, found = await api.call("GET", f"/api/v1/sessions/{session}", headers=auth)
        asked = found.get("pending_approvals") if status == 200 else None
        return str(asked[0]["call_id"]) if asked else None

    call_id = await eventually(pending)
    decision = {"call_id": call_id, "decision": "allow_once"}
    status, _ = await api.call("POST", f"/api/v1/sessions/{session}/approve", decision, headers=auth)
    assert status == 200


async def test_a_stream_waiting_for_an_approval_before_any_text_sends_keep_alives(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    # Chat UIs and proxies give up on a connection that stays silent: the reply starts, and
    # keep-alive comments flow, while the turn waits for a person before the agent says anything.
    api = await start_api(git=False, api_token=TOKEN, keep_alive=0.1)
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch approved"})]), text("done it"))
    body = {"model": "helper", "messages": [{"role": "user", "content": "make a file"}], "stream": True}
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Duragent-Session": "quiet-wait"}
    async with asyncio.timeout(10):
        async with api.http.post(api.url("/v1/chat/completions"), json=body, headers=headers) as response:
            assert response.status == 200
            assert response.headers["X-Duragent-Session"] == "quiet-wait"
            async for line in response.content:
                if line.startswith(b": keep-alive"):
                    break
            await _approve_when_asked(api, "quiet-wait")
            rest = (await response.read()).decode()
    assert '"content":"done it"' in rest
    assert rest.endswith("data: [DONE]\n\n")


async def test_a_responses_stream_starts_while_the_turn_waits_for_an_approval(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False, api_token=TOKEN, keep_alive=0.1)
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch approved"})]), text("done it"))
    async with asyncio.timeout(10):
        stream = await async_client(api).responses.create(
            model="helper",
            input="make a file",
            stream=True,
            extra_headers={"X-Duragent-Session": "quiet-responses"},
        )
        events = aiter(stream)
        assert (await anext(events)).type == "response.created"
        await _approve_when_asked(api, "quiet-responses")
        rest = [event async for event in events]
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.output_text == "done it"


async def test_a_responses_stream_whose_turn_fails_ends_with_the_failed_response(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    # Responses clients wait for a lifecycle event that ends the response (completed, incomplete
    # or failed); after the `error` event, `response.failed` is that event.
    from duragent.testing.fake_llm import stream_error

    fake_llm.enqueue(stream_error("the model fell over", after_chunks=1))
    stream = await async_client(api).responses.create(model="helper", input="hi", stream=True)
    events = [event async for event in stream]
    assert [event.type for event in events[-2:]] == ["error", "response.failed"]
    assert "the model fell over" in events[-2].message
    failed = events[-1].response
    assert failed.id == events[0].response.id
    assert failed.status == "failed"
    assert failed.error is not None
    assert "the model fell over" in failed.error.message
    assert failed.output_text == "fine so far"
    assert [e.sequence_number for e in events] == list(range(len(events)))
