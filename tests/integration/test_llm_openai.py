"""The OpenAI-compatible provider against a real fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from duragent.llm.errors import (
    MissingApiKey,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    StreamError,
    StreamTimeout,
)
from duragent.llm.http_provider import Timeouts
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.registry import create_provider
from duragent.llm.retry import RetryPolicy, parse_retry_after
from duragent.llm.types import (
    Finish,
    ForceTool,
    LLMRequest,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallDelta,
    ToolDefinition,
    Usage,
)
from duragent.testing.fake_llm import (
    FakeLLMServer,
    broken_stream,
    error,
    malformed,
    stream_error,
    text,
    tool_calls,
)

pytest_plugins = ["duragent.testing.pytest_plugin"]

FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)
MEMORY_TOOL = ToolDefinition(
    "memory",
    "Remember and recall facts.",
    {"type": "object", "properties": {"action": {"type": "string"}}, "required": ["action"]},
)
HELLO = LLMRequest("gpt-test", (Message("user", "hello there"),))


@pytest.fixture
async def provider(fake_llm: FakeLLMServer) -> AsyncIterator[OpenAICompatProvider]:
    async with OpenAICompatProvider(
        fake_llm.url, "sk-test", api_key_env="OPENAI_API_KEY", retry=FAST_RETRY
    ) as p:
        yield p


async def collect(provider: OpenAICompatProvider, request: LLMRequest = HELLO) -> list[StreamChunk]:
    return [chunk async for chunk in provider.stream(request)]


async def collect_into(received: list[StreamChunk], stream: AsyncIterator[StreamChunk]) -> None:
    async for chunk in stream:
        received.append(chunk)


async def test_reply_text_arrives_piece_by_piece_as_the_server_sends_it(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(text("Hello, world!", chunks=3, chunk_delay=0.25))
    chunks = await collect(provider)
    deltas = [c.text for c in chunks if isinstance(c, TextDelta)]
    # pieces that reach the client together are relayed as one (a busy machine may delay a read)
    # so only the first piece (alone on the wire for 0.25 s) and the whole text are certain
    assert deltas[0] == "Hello"
    assert "".join(deltas) == "Hello, world!"
    assert chunks[-1] == Finish("stop")


async def test_pieces_that_arrive_together_are_relayed_as_one(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    # An instant model packs many events into each write: relaying them one by one would cost a
    # trip through the runtime per event for text that is already all here.
    fake_llm.enqueue(text(" ".join(f"w{i}" for i in range(40)), chunks=40))
    chunks = await collect(provider)
    deltas = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert "".join(deltas) == " ".join(f"w{i}" for i in range(40))
    assert len(deltas) < 40
    assert chunks[-1] == Finish("stop")


async def test_usage_from_the_final_chunk_is_reported_before_finish(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(text("two words", usage=(42, 7)))
    chunks = await collect(provider)
    assert chunks[-2:] == [Usage(input_tokens=42, output_tokens=7), Finish("stop")]


async def test_parallel_tool_calls_are_assembled_from_interleaved_deltas(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(
        tool_calls(
            [
                ("memory", {"action": "recall", "query": "tea"}),
                ("memory", {"action": "remember", "content": "x"}),
            ],
            argument_chunks=4,
            interleave=True,
        )
    )
    chunks = await collect(provider, LLMRequest("gpt-test", HELLO.messages, tools=(MEMORY_TOOL,)))
    deltas = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert {d.index for d in deltas} == {0, 1}
    assert [d.index for d in deltas[:4]] == [0, 1, 0, 1]  # the server really interleaved them
    completed = [c.tool_call for c in chunks if isinstance(c, ToolCallComplete)]
    assert [(c.name, c.arguments) for c in completed] == [
        ("memory", {"action": "recall", "query": "tea"}),
        ("memory", {"action": "remember", "content": "x"}),
    ]
    assert completed[0].id != completed[1].id
    assert chunks[-1] == Finish("tool_calls")


async def test_request_body_carries_messages_tools_and_streaming_options(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    call = ToolCall("call_1", "memory", {"action": "recall"})
    request = LLMRequest(
        "gpt-test",
        (
            Message("system", "Be brief."),
            Message("user", "what do you know?"),
            Message("assistant", None, tool_calls=(call,)),
            Message("tool", "You like tea.", tool_call_id="call_1", name="memory"),
        ),
        tools=(MEMORY_TOOL,),
        temperature=0.2,
        max_output_tokens=300,
        tool_choice=ForceTool("memory"),
    )
    await collect(provider, request)
    sent = fake_llm.requests[0]
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.2
    assert sent.body["max_tokens"] == 300
    assert sent.body["tool_choice"] == {"type": "function", "function": {"name": "memory"}}
    assert sent.body["tools"][0]["function"]["parameters"]["required"] == ["action"]
    assert sent.messages[2]["tool_calls"][0]["function"] == {
        "name": "memory",
        "arguments": '{"action": "recall"}',
    }
    assert sent.messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "You like tea."}


async def test_complete_gathers_the_whole_reply(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(tool_calls([("memory", {"action": "recall"})], text="Let me look.", usage=(5, 3)))
    completion = await provider.complete(LLMRequest("gpt-test", HELLO.messages, tools=(MEMORY_TOOL,)))
    assert completion.text == "Let me look."
    assert [c.arguments for c in completion.tool_calls] == [{"action": "recall"}]
    assert completion.usage == Usage(5, 3)
    assert completion.finish == "tool_calls"


async def test_rate_limit_waits_the_advertised_retry_after_then_succeeds(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(error(429, "slow down", retry_after=1), text("finally"))
    started = time.monotonic()
    completion = await provider.complete(HELLO)
    assert time.monotonic() - started >= 1.0
    assert completion.text == "finally"
    assert len(fake_llm.requests) == 2


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("Fri, 02 Jan 2026 03:04:15 GMT", now) == 10.0
    assert parse_retry_after("Fri, 02 Jan 2026 03:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None


async def test_rejected_key_error_names_the_provider_url_and_variable(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(401, "Incorrect API key provided"))
    env = {"OPENAI_API_KEY": "sk-wrong"}
    async with create_provider(
        "openai", base_url=fake_llm.url, api_key_env="OPENAI_API_KEY", env=env
    ) as provider:
        with pytest.raises(ProviderAuthError) as caught:
            await provider.complete(HELLO)
    assert str(caught.value).startswith(
        f"401 from openai at {fake_llm.url}/chat/completions: the API key in OPENAI_API_KEY was rejected"
    )
    assert "Incorrect API key provided" in str(caught.value)
    assert len(fake_llm.requests) == 1  # a bad key is not worth retrying


async def test_server_errors_are_retried_until_the_server_recovers(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(error(500), error(503), text("recovered"))
    assert (await provider.complete(HELLO)).text == "recovered"
    assert len(fake_llm.requests) == 3


async def test_server_errors_give_up_after_the_configured_attempts(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(*[error(502, "bad gateway")] * 5)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01)
    async with OpenAICompatProvider(fake_llm.url, "sk-test", retry=retry) as provider:
        with pytest.raises(ProviderUnavailable, match=r"502 from openai at .*: bad gateway"):
            await provider.complete(HELLO)
    assert len(fake_llm.requests) == 2


async def test_client_errors_carry_the_server_message_and_are_not_retried(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(error(404, "The model `gpt-nope` does not exist"))
    with pytest.raises(ProviderError, match=r"404 from openai at .*: The model `gpt-nope` does not exist"):
        await provider.complete(HELLO)
    assert len(fake_llm.requests) == 1


async def test_stream_broken_midway_raises_stream_error_without_retrying(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(broken_stream(after_chunks=2))
    received: list[StreamChunk] = []
    with pytest.raises(StreamError, match="broke mid-stream"):
        await collect_into(received, provider.stream(HELLO))
    # The two pieces sent before the break, delivered (joined when they arrived together).
    assert "".join(c.text for c in received if isinstance(c, TextDelta)) == "this reply bre"
    assert len(fake_llm.requests) == 1
    assert fake_llm.disconnects == []  # the server hung up, not the client


async def test_connection_dropped_before_the_first_chunk_is_retried(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(broken_stream(after_chunks=0), text("second try"))
    assert (await provider.complete(HELLO)).text == "second try"


async def test_text_before_a_malformed_chunk_is_delivered_before_the_error(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    # The pieces and the bad chunk may arrive in one read: the pieces still reach the runtime,
    # which keeps them as the partial reply.
    fake_llm.enqueue(malformed(after_chunks=2))
    received: list[StreamChunk] = []
    with pytest.raises(StreamError, match="malformed chunk"):
        await collect_into(received, provider.stream(HELLO))
    assert "".join(c.text for c in received if isinstance(c, TextDelta)) == "fine so far"


async def test_malformed_chunk_raises_stream_error_and_the_provider_stays_usable(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(malformed(after_chunks=1), text("all good"))
    with pytest.raises(StreamError, match="malformed chunk from openai: "):
        await provider.complete(HELLO)
    assert (await provider.complete(HELLO)).text == "all good"


async def test_error_event_inside_the_stream_raises_stream_error(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(stream_error("upstream model crashed", after_chunks=1))
    with pytest.raises(StreamError, match="openai reported an error mid-stream: upstream model crashed"):
        await provider.complete(HELLO)


async def test_cancelling_the_consumer_closes_the_connection_on_the_server(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    fake_llm.enqueue(text("a slow and long reply", chunks=10, chunk_delay=0.5))
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for chunk in provider.stream(HELLO):
            if isinstance(chunk, TextDelta):
                first_chunk.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_chunk.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closed = await fake_llm.wait_for_disconnect(within=2)
    assert closed is fake_llm.requests[0]


async def test_silent_stream_fails_after_the_idle_timeout(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("late", chunks=2, chunk_delay=2))
    async with OpenAICompatProvider(fake_llm.url, "k", timeouts=Timeouts(connect=1, idle=0.2)) as provider:
        with pytest.raises(StreamTimeout, match=r"no data from openai for 0.2 s"):
            await provider.complete(HELLO)


async def test_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01)
    async with OpenAICompatProvider(url, "k", retry=retry) as provider:
        with pytest.raises(
            ProviderUnavailable, match=re.escape(f"could not reach openai at {url}/chat/completions")
        ):
            await provider.complete(HELLO)


async def test_sent_is_called_once_the_request_is_written_before_the_model_answers(
    fake_llm: FakeLLMServer, provider: OpenAICompatProvider
) -> None:
    # The runtime lets the next turn start once its request is out, not once the model answers
    # (which takes as long as the model takes to start).
    fake_llm.enqueue(text("late", delay=30))
    sent = asyncio.Event()
    received: list[StreamChunk] = []
    reading = asyncio.create_task(collect_into(received, provider.stream(HELLO, sent=sent.set)))
    try:
        await asyncio.wait_for(sent.wait(), 10)
        assert not received
        assert not reading.done()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def test_sent_is_called_before_waiting_to_retry_an_unreachable_server() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls: list[float] = []
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01)
    async with OpenAICompatProvider(f"http://127.0.0.1:{port}/v1", "k", retry=retry) as provider:
        with pytest.raises(ProviderUnavailable):
            async for _ in provider.stream(HELLO, sent=lambda: calls.append(time.monotonic())):
                pass
    # Nothing was ever written, but the caller is told before the wait between the two attempts.
    assert len(calls) == 1


def test_missing_api_key_names_the_variable_to_set() -> None:
    with pytest.raises(MissingApiKey, match="set the environment variable OPENAI_API_KEY"):
        create_provider("openai", env={})


async def test_openrouter_preset_sends_its_key_and_attribution_headers(fake_llm: FakeLLMServer) -> None:
    env = {"OPENROUTER_API_KEY": "or-key"}
    async with create_provider("openrouter", base_url=fake_llm.url, env=env) as provider:
        await provider.complete(HELLO)
    headers = fake_llm.requests[0].headers
    assert headers["Authorization"] == "Bearer or-key"
    assert headers["X-Title"] == "Duragent"
    assert "HTTP-Referer" in headers


async def test_ollama_preset_needs_no_key_and_sends_none(fake_llm: FakeLLMServer) -> None:
    async with create_provider("ollama", base_url=fake_llm.url, env={}) as provider:
        assert (await provider.complete(HELLO)).text == "echo: hello there"
    assert "Authorization" not in fake_llm.requests[0].headers
