"""Usage, stop reasons, tool errors and retry hints read as the providers mean them (issue #22).

Each test talks to the fake OpenAI / Anthropic server on 127.0.0.1 in the real wire format.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from duragent.agents.loader import Agent, load_agent
from duragent.llm import http_provider
from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.errors import ProviderRateLimited
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.retry import RetryPolicy, retry_after_from
from duragent.llm.types import Finish, LLMRequest, Message, Usage
from duragent.runtime.context import PARTIAL_NOTE
from duragent.runtime.events import TurnFailed, TurnFinished
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, broken_stream, error, held, text, tool_calls
from tests.e2e.server_harness import Api
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

HELLO = LLMRequest("model-test", (Message("user", "hello there"),))
FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: helper
spec:
  model:
    provider: {provider}
    name: model-test
    base_url: {url}
  system_prompt: test
  tools:
    builtin: [bash]
    policy:
      mode: allow
"""


def make_agent(tmp_path: Path, url: str, provider: str) -> Agent:
    directory = tmp_path / provider / "helper"
    directory.mkdir(parents=True)
    (directory / "agent.yaml").write_text(AGENT_YAML.format(url=url, provider=provider))
    loaded, _ = load_agent(directory, env={"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant"})
    return loaded


@pytest.fixture
async def providers() -> AsyncIterator[ProviderPool]:
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant"})
    yield pool
    await pool.close()


# --- 3. usage -------------------------------------------------------------------------------


async def test_anthropic_input_tokens_sent_late_in_message_delta_are_counted(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("Hi", usage=(1234, 56), late_input_usage=True))
    async with AnthropicProvider("sk-ant", base_url=fake_llm.url, retry=FAST_RETRY) as provider:
        chunks = [chunk async for chunk in provider.stream(HELLO)]
    assert chunks[-2:] == [Usage(1234, 56), Finish("stop")]


async def test_a_turns_usage_sums_all_its_model_calls_like_the_session_total(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, providers: ProviderPool
) -> None:
    agent = make_agent(tmp_path, fake_llm.url, "anthropic")
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo hi"})], usage=(1000, 20), late_input_usage=True),
        text("done", usage=(1234, 56), late_input_usage=True),
    )
    events = await drain(Runtime(provider_for=providers.for_agent).run_turn(session, agent, "go"))
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.usage == {"input_tokens": 2234, "output_tokens": 76}
    assert session.state.usage == finished.usage
    stored = [e for e in await session.store.read(session.session_id) if e.type == "assistant_message"]
    assert [e.payload["usage"] for e in stored] == [
        {"input_tokens": 1000, "output_tokens": 20},
        {"input_tokens": 1234, "output_tokens": 56},
    ]
    assert stored[-1].payload["turn_usage"] == {"input_tokens": 2234, "output_tokens": 76}


async def test_a_turn_resumed_after_a_restart_counts_the_calls_made_before_it(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, providers: ProviderPool
) -> None:
    agent = make_agent(tmp_path, fake_llm.url, "openai")
    call = {"id": "c1", "name": "bash", "arguments": {"command": "echo hi"}}
    await session.append("user_message", {"content": "go", "turn": 1})
    await session.append(
        "assistant_message",
        {
            "content": "",
            "message_id": "m1",
            "tool_calls": [call],
            "usage": {"input_tokens": 1000, "output_tokens": 20},
        },
    )
    await session.append("tool_call", {"call_id": "c1", "tool": "bash", "arguments": call["arguments"]})
    await session.append("tool_result", {"call_id": "c1", "tool": "bash", "ok": True, "content": "hi"})
    await session.snapshot()  # the restart reads the snapshot, then the events after it
    # ... the server stops here; a new one opens the log and finishes the turn
    reopened = await SessionLog.open(session.store, session.session_id)
    fake_llm.enqueue(text("done", usage=(1234, 56)))

    events = await drain(Runtime(provider_for=providers.for_agent).run_turn(reopened, agent, None))

    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.usage == {"input_tokens": 2234, "output_tokens": 76}
    assert reopened.state.usage == finished.usage


# --- 4. truncated replies ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_reply_cut_off_by_the_token_limit_is_stored_as_truncated(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, providers: ProviderPool, provider: str
) -> None:
    agent = make_agent(tmp_path, fake_llm.url, provider)
    fake_llm.enqueue(text("The list goes on and", finish="length"))
    events = await drain(Runtime(provider_for=providers.for_agent).run_turn(session, agent, "list"))
    finished = events[-1]
    assert isinstance(finished, TurnFinished)
    assert finished.truncated
    (reply,) = [e for e in await session.store.read(session.session_id) if e.type == "assistant_message"]
    assert reply.payload["truncated"] is True


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_reply_the_provider_ended_as_refused_fails_the_turn_saying_so(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, providers: ProviderPool, provider: str
) -> None:
    """OpenAI's `content_filter`, Anthropic's `refusal`: what came before is no whole answer."""
    agent = make_agent(tmp_path, fake_llm.url, provider)
    fake_llm.enqueue(text("Here is how to", finish="refused"))

    events = await drain(Runtime(provider_for=providers.for_agent).run_turn(session, agent, "how?"))

    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert failed.code == "llm_error"
    assert "ended the reply as refused" in failed.message
    (reply,) = [e for e in await session.store.read(session.session_id) if e.type == "assistant_message"]
    assert (reply.payload["content"], reply.payload["partial"]) == ("Here is how to", True)


async def test_the_api_marks_a_truncated_reply_and_its_done_event(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(text("The list goes on and", finish="length"))
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "list"})
    assert status == 200, reply
    assert (reply["content"], reply["truncated"]) == ("The list goes on and", True)
    fake_llm.enqueue(text("Short and whole."))
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "again"})
    assert reply["truncated"] is False
    status, page = await api.call("GET", f"/api/v1/sessions/{session_id}/messages?limit=10")
    replies = [m for m in page["messages"] if m["type"] == "assistant_message"]
    assert [m["payload"].get("truncated", False) for m in replies] == [True, False]


# --- 5. failed tool results in the Anthropic format -------------------------------------------


async def test_a_failed_tool_result_is_sent_to_anthropic_with_is_error(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, providers: ProviderPool
) -> None:
    agent = make_agent(tmp_path, fake_llm.url, "anthropic")
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "exit 3"}), ("bash", {"command": "echo fine"})]), text("noted")
    )
    await drain(Runtime(provider_for=providers.for_agent).run_turn(session, agent, "try"))
    results = [
        block
        for message in fake_llm.requests[1].messages
        for block in message["content"]
        if block["type"] == "tool_result"
    ]
    assert [block.get("is_error", False) for block in results] == [True, False]


async def test_a_reply_cut_off_after_only_white_space_does_not_break_the_anthropic_session(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, providers: ProviderPool
) -> None:
    """The API refuses a text block of only white space; a stream cut after "\n\n" keeps that
    partial reply in the log, and every later request would carry it: it goes as the note alone."""
    agent = make_agent(tmp_path, fake_llm.url, "anthropic")
    runtime = Runtime(provider_for=providers.for_agent)
    fake_llm.enqueue(broken_stream(after_chunks=1, content="\n\n\n\n", chunks=2))
    await drain(runtime.run_turn(session, agent, "hello"))
    assert session.state.conversation[-1] == {"role": "assistant", "content": "\n\n", "partial": True}
    fake_llm.enqueue(text("hi again"))

    events = await drain(runtime.run_turn(session, agent, "are you there?"))

    assert isinstance(events[-1], TurnFinished)
    sent = fake_llm.requests[-1].messages
    texts = [block["text"] for message in sent for block in message["content"] if block["type"] == "text"]
    assert texts == ["hello", PARTIAL_NOTE, "are you there?"]
    assert [message["role"] for message in sent] == ["user", "assistant", "user"]


# --- 6. retry hints ---------------------------------------------------------------------------


def test_retry_hints_are_read_from_milliseconds_seconds_and_the_proxy_headers() -> None:
    assert retry_after_from({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_from({"retry-after": "2"}) == 2.0
    assert retry_after_from({"llm_provider-retry-after": "2"}) == 2.0
    assert retry_after_from({"llm_provider-retry-after-ms": "250"}) == 0.25
    assert retry_after_from({"x-other": "1"}) is None


@pytest.mark.parametrize(
    "headers", [{"retry-after-ms": "600"}, {"llm_provider-retry-after": "0.6"}], ids=["ms", "proxy"]
)
async def test_a_rate_limit_waits_as_long_as_the_retry_hint_says(
    fake_llm: FakeLLMServer, headers: dict[str, str]
) -> None:
    fake_llm.enqueue(error(429, "slow down", headers=headers), text("finally"))
    async with OpenAICompatProvider(fake_llm.url, "sk-test", retry=FAST_RETRY) as provider:
        started = time.monotonic()
        completion = await provider.complete(HELLO)
    # without the hint the backoff would wait at most 0.05 s
    assert time.monotonic() - started >= 0.6
    assert completion.text == "finally"


async def test_a_proxy_retry_hint_beyond_the_limit_fails_at_once(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(429, "rate limited for a minute", headers={"llm_provider-retry-after": "120"}))
    async with OpenAICompatProvider(fake_llm.url, "sk-test", retry=FAST_RETRY) as provider:
        with pytest.raises(ProviderRateLimited):
            await provider.complete(HELLO)
    assert len(fake_llm.requests) == 1


async def test_a_reply_whose_body_ends_a_read_after_done_leaves_its_connection_for_the_next(
    fake_llm: FakeLLMServer,
) -> None:
    # The body's end comes a while after `[DONE]`: the reply is complete without it, and its
    # connection goes back to the pool when the end arrives instead of being closed.
    # (1 s: long enough that a loaded machine does not deliver the end in the same read)
    fake_llm.enqueue(text("first", end_delay=1.0), text("second"))
    async with OpenAICompatProvider(fake_llm.url, "sk-test") as provider:
        first = await provider.complete(HELLO)
        assert provider.draining == 1  # complete, its body's end still to come
        await until(lambda: provider.draining == 0)
        second = await provider.complete(HELLO)
    assert (first.text, second.text) == ("first", "second")
    first_peer, second_peer = (request.peer for request in fake_llm.requests)
    assert first_peer
    assert first_peer == second_peer


async def test_a_body_whose_end_never_comes_closes_its_connection_and_the_next_reply_gets_a_new_one(
    fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_provider, "_DRAIN_SECONDS", 0.2)
    fake_llm.enqueue(text("first", end_delay=3.0), text("second"))
    async with OpenAICompatProvider(fake_llm.url, "sk-test") as provider:
        first = await provider.complete(HELLO)
        assert provider.draining == 1
        await until(lambda: provider.draining == 0)
        second = await provider.complete(HELLO)
    assert (first.text, second.text) == ("first", "second")
    first_peer, second_peer = (request.peer for request in fake_llm.requests)
    assert first_peer != second_peer


async def test_closing_the_provider_closes_a_reply_still_waiting_for_its_end(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("first", end_delay=3.0))
    provider = OpenAICompatProvider(fake_llm.url, "sk-test")
    assert (await provider.complete(HELLO)).text == "first"
    assert provider.draining == 1
    await provider.close()
    assert provider.draining == 0


# --- 7. the fake OpenAI server's parallel tool calls ------------------------------------------


async def openai_call_indexes(fake_llm: FakeLLMServer) -> list[int]:
    """The `index` of every tool-call delta of one streamed reply, in the order sent."""
    async with aiohttp.ClientSession() as http:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        async with http.post(f"{fake_llm.url}/chat/completions", json=body) as response:
            raw = await response.text()
    indexes = []
    for line in raw.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                indexes += [call["index"] for call in choice["delta"].get("tool_calls", [])]
    return indexes


async def test_the_fake_openai_server_sends_parallel_calls_one_after_another_unless_asked(
    fake_llm: FakeLLMServer,
) -> None:
    calls = [("bash", {"command": "echo a"}), ("bash", {"command": "echo b"})]
    fake_llm.enqueue(tool_calls(calls, argument_chunks=2))
    assert await openai_call_indexes(fake_llm) == [0, 0, 0, 1, 1, 1]
    fake_llm.enqueue(tool_calls(calls, argument_chunks=2, interleave=True))
    assert await openai_call_indexes(fake_llm) == [0, 1, 0, 1, 0, 1]


# --- 8. the fake server's held reply ------------------------------------------------------------


async def test_a_held_reply_of_the_fake_server_answers_only_once_the_test_releases_it(
    fake_llm: FakeLLMServer,
) -> None:
    release = threading.Event()
    fake_llm.enqueue(held(release, text("at last")), text("meanwhile"))
    async with OpenAICompatProvider(fake_llm.url, "sk-test") as provider:
        answer = asyncio.create_task(provider.complete(HELLO))
        await until(lambda: fake_llm.requests, within=10)
        # a reply not held, asked for after it, arrives while the held one still waits
        assert (await asyncio.wait_for(provider.complete(HELLO), 10)).text == "meanwhile"
        assert not answer.done()
        release.set()
        assert (await asyncio.wait_for(answer, 10)).text == "at last"
