"""Failed model calls as a user meets them: what the server answers, what the log keeps, and that
the session's next message works (a real fake model on 127.0.0.1, the app in-process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from duragent.server.state import STATE
from duragent.sessions.state import replay
from duragent.stores.base import SessionEvent
from duragent.testing.fake_llm import (
    FakeLLMServer,
    RecordedRequest,
    ScriptedCall,
    ScriptedResponse,
    broken_stream,
    echo,
    error,
    malformed,
    text,
    tool_calls,
)
from tests.e2e.server_harness import AGENT_YAML, Api, ApiFactory, collect_until
from tests.waiting import until


def stored_events(root: Path, session_id: str) -> list[dict[str, Any]]:
    """The session's events.jsonl as parsed lines (workspace `ws0` of `start_api`)."""
    log = root / "ws0" / "data" / "sessions" / session_id / "events.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def assert_well_formed(messages: list[dict[str, Any]]) -> None:
    """What every provider accepts: no assistant message without text or calls, and every tool
    call answered by a tool result before the next user message."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            assert message.get("content") or message.get("tool_calls"), messages
            open_calls |= {call["id"] for call in message.get("tool_calls") or ()}
        elif message["role"] == "tool":
            open_calls.discard(message["tool_call_id"])
        elif message["role"] == "user":
            assert not open_calls, messages


def anthropic_agent(root: Path, fake_llm: FakeLLMServer) -> str:
    """Add agent `claude` to workspace `ws0`, the fake model spoken to in Anthropic's format."""
    folder = root / "ws0" / "data" / "agents" / "claude"
    folder.mkdir()
    text = AGENT_YAML.format(name="claude", url=fake_llm.url, on_disconnect="continue", max_background="30m")
    (folder / "agent.yaml").write_text(text.replace("provider: openai", "provider: anthropic"))
    return "claude"


async def send(api: Api, session_id: str, content: str) -> tuple[int, Any]:
    return await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": content})


#: A reply that breaks off while the model writes a tool call's arguments, before any text.
CUT_IN_A_TOOL_CALL = ScriptedResponse(
    "broken_stream",
    calls=(ScriptedCall("bash", {"command": "echo hello world"}),),
    argument_chunks=4,
    after_chunks=2,
    finish="tool_calls",
)

FAILURES = {
    "rate limited on every attempt": (
        [error(429, "slow down")] * 4,
        ["429 from openai", "slow down", "tried 4 times", "wait a minute, then retry the turn"],
    ),
    "rate limited with a Retry-After of an hour": (
        [error(429, "slow down", retry_after=3600)],
        [
            "asks to wait 3600 s",
            "longer than Duragent waits within a turn (60 s)",
            "retry the turn after that",
        ],
    ),
    "overloaded on every attempt": (
        [error(529, "Overloaded")] * 4,
        ["529 from openai", "tried 4 times", "retry the turn later"],
    ),
    "unknown model": (
        [error(404, "The model `gpt-test` does not exist")],
        ["does not exist", "check spec.model.name and spec.model.base_url in agent.yaml"],
    ),
    "stream cut mid-reply": (
        [broken_stream(2, "one two three four", chunks=4)],
        ["broke mid-stream", "the reply so far is kept (marked partial)"],
    ),
    "rejected API key": (
        [error(401, "Incorrect API key provided")],
        [
            "the API key in FAKE_LLM_KEY was rejected",
            "Incorrect API key provided",
            "set FAKE_LLM_KEY to a key the provider accepts and restart the server",
        ],
    ),
    "stream cut in a tool call's arguments on every attempt": (
        [CUT_IN_A_TOOL_CALL] * 4,
        ["broke mid-stream", "tried 4 times", "retry the turn later"],
    ),
    "malformed chunk before any text": (
        [malformed(0)],
        ["malformed chunk from openai", "nothing of the reply was kept: retry the turn"],
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_model_call_tells_the_user_what_to_do_and_the_next_message_works(
    failure: str, start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    script, said = FAILURES[failure]
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.enqueue(*script)

    status, problem = await send(api, session_id, "hello")

    assert status == 502, problem
    assert problem["type"] == "urn:duragent:problem:turn-llm_error"
    for words in said:
        assert words in problem["detail"], problem["detail"]
    stored = stored_events(tmp_path, session_id)
    assert [e["payload"]["content"] for e in stored if e["type"] == "user_message"] == ["hello"]
    assert stored[-1]["type"] == "error"
    # (`/retry` runs the turn again, a reply so far kept or not: the 502 says so, as the event does,
    # so that a client runs it again instead of sending the message a second time)
    assert stored[-1]["payload"] == {"code": "llm_error", "message": problem["detail"], "retryable": True}
    assert problem["retryable"] is True
    _, session = await api.call("GET", f"/api/v1/sessions/{session_id}")
    assert session["status"] == "active"

    status, reply = await send(api, session_id, "again")
    assert (status, reply["content"]) == (200, "echo: again")
    assert_well_formed(fake_llm.requests[-1].messages)


async def test_an_unreachable_model_server_names_the_setting_to_check(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    await fake_llm.stop()

    status, problem = await send(api, session_id, "hello")

    assert status == 502, problem
    assert "could not reach openai" in problem["detail"]
    assert "tried 4 times" in problem["detail"]
    assert "is the model server running, and is spec.model.base_url in agent.yaml right?" in problem["detail"]


def _long_context_refused(limit_chars: int) -> Any:
    """A model whose window holds `limit_chars` characters of messages: larger requests get
    OpenAI's context-length 400, the others an echo."""

    def answer(request: RecordedRequest) -> ScriptedResponse:
        size = sum(len(str(m.get("content") or "")) for m in request.messages)
        if size > limit_chars:
            return error(
                400,
                {
                    "error": {
                        "message": "This model's maximum context length is 1000 tokens. However, "
                        f"your messages resulted in {size // 3} tokens. Please reduce the length "
                        "of the messages.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            )
        return echo()

    return answer


async def test_a_context_the_model_refuses_as_too_long_is_sent_again_without_older_messages(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.responder = _long_context_refused(3000)
    first, second, third = ("a" * 1400, "b" * 1400, "c" * 1400)
    assert (await send(api, session_id, first))[0] == 200

    status, reply = await send(api, session_id, second)

    # (before: a 502 for this message and every later one, the context never getting smaller)
    assert (status, reply.get("content")) == (200, f"echo: {second}"), reply
    answered = fake_llm.requests[-1].messages
    assert [m["content"] for m in answered if m["role"] == "user"] == [second]
    assert "error" not in [e["type"] for e in stored_events(tmp_path, session_id)]

    asked = len(fake_llm.requests)
    status, reply = await send(api, session_id, third)
    assert (status, reply.get("content")) == (200, f"echo: {third}")
    assert len(fake_llm.requests) == asked + 1  # the window the model named is kept: no refusal first


async def test_a_context_anthropic_refuses_with_its_output_room_counted_is_sent_again_smaller(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    # Anthropic's words when input and max_tokens together exceed the window (no "context length"
    # in them): taken for an ordinary 400, the turn failed, and so did every later one.
    def answer(request: RecordedRequest) -> ScriptedResponse:
        size = sum(len(json.dumps(m.get("content"))) for m in request.messages)
        if size > 3000:
            message = (
                f"input length and `max_tokens` exceed context limit: {size // 3} + 200 > 1000, "
                "decrease input length or `max_tokens` and try again"
            )
            return error(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
            )
        return echo()

    api = await start_api(git=False)
    session_id = await api.new_session(anthropic_agent(tmp_path, fake_llm))
    fake_llm.responder = answer
    assert (await send(api, session_id, "a" * 1400))[0] == 200

    status, reply = await send(api, session_id, "b" * 1400)

    assert (status, reply.get("content")) == (200, f"echo: {'b' * 1400}"), reply
    assert "error" not in [e["type"] for e in stored_events(tmp_path, session_id)]


async def test_a_context_that_never_fits_fails_after_a_bounded_number_of_tries_naming_the_setting(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.responder = _long_context_refused(100)

    status, problem = await send(api, session_id, "hello")

    assert status == 502, problem
    assert problem["type"] == "urn:duragent:problem:turn-context_too_long"
    assert "maximum context length is 1000 tokens" in problem["detail"]
    assert "send a shorter message or start a new session" in problem["detail"]
    assert "spec.context.max_tokens" in problem["detail"]
    assert len(fake_llm.requests) == 3
    assert stored_events(tmp_path, session_id)[-1]["payload"]["code"] == "context_too_long"


async def test_a_turn_out_of_steps_says_on_the_stream_how_to_let_the_agent_go_on(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.responder = lambda _request: tool_calls([("bash", {"command": "echo again"})])

    async with api.http.post(
        api.url(f"/api/v1/sessions/{session_id}/stream"), json={"content": "loop"}
    ) as response:
        events = await collect_until(response, "error")

    assert events[-1].data["code"] == "max_steps"
    assert "send another message" in events[-1].data["message"]
    fake_llm.responder = None
    status, reply = await send(api, session_id, "continue")
    assert (status, reply["content"]) == (200, "echo: continue")
    assert_well_formed(fake_llm.requests[-1].messages)


async def test_a_client_following_the_session_is_told_when_the_model_is_tried_again_and_why(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.enqueue(error(429, "slow down", retry_after=0.3), text("made it"))

    async with api.http.get(api.url(f"/api/v1/sessions/{session_id}/events")) as following:
        status, reply = await send(api, session_id, "hello")
        events = await collect_until(following, "done")

    assert (status, reply["content"]) == (200, "made it")
    retrying = [e for e in events if e.event == "retrying"]
    assert [e.data | {"reason": ""} for e in retrying] == [
        {"attempt": 2, "attempts": 4, "in_seconds": 0.3, "reason": ""}
    ]
    assert retrying[0].data["reason"].startswith("429 from openai at ")
    assert "slow down" in retrying[0].data["reason"]
    assert retrying[0].id == "2.1"  # after the stored message, before the reply's tokens
    names = [e.event for e in events]
    assert names.index("start") < names.index("retrying") < names.index("token")
    assert "retrying" not in {e["type"] for e in stored_events(tmp_path, session_id)}


async def test_tool_calls_with_arguments_not_json_or_an_unknown_tool_get_failed_results_and_the_turn_goes_on(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.enqueue(
        tool_calls(
            [
                ScriptedCall("bash", {}, raw_arguments='{"command": "echo hi'),
                ScriptedCall("launch_rockets", {"count": 3}),
            ]
        ),
        text("sorry, let me try that again later"),
    )

    status, reply = await send(api, session_id, "do it")

    assert (status, reply["content"]) == (200, "sorry, let me try that again later")
    results = [e["payload"] for e in stored_events(tmp_path, session_id) if e["type"] == "tool_result"]
    assert [r["ok"] for r in results] == [False, False]
    assert results[0]["content"] == 'invalid arguments for bash: not a JSON object: {"command": "echo hi'
    assert results[1]["content"].startswith("unknown tool 'launch_rockets'; available: bash")
    assert_well_formed(fake_llm.requests[-1].messages)
    assert (await send(api, session_id, "next"))[0] == 200


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (text(""), "openai ended its reply without any text or tool call: retry the turn"),
        (
            text("", finish="length"),
            "openai ended its reply at its length limit before any text (a reasoning model may have "
            "spent it thinking): raise spec.model.max_output_tokens in agent.yaml",
        ),
    ],
    ids=["empty", "empty at the length limit"],
)
async def test_an_empty_reply_is_a_failed_turn_that_retry_runs_again(
    reply: ScriptedResponse, said: str, start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    # Stored as a reply, it showed as nothing (a chat gateway cannot even send empty text) and
    # went to the model as an assistant message with neither text nor calls.
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.enqueue(reply)

    status, problem = await send(api, session_id, "hello")

    assert status == 502, problem
    assert said in problem["detail"], problem["detail"]
    stored = stored_events(tmp_path, session_id)
    assert [e["type"] for e in stored if e["type"] != "session_start"] == ["user_message", "error"]
    failed = {**stored[-1]["payload"], "usage": None, "turn_usage": None}
    expected = {"code": "llm_error", "message": problem["detail"], "retryable": True}
    assert failed == {**expected, "usage": None, "turn_usage": None}

    fake_llm.enqueue(text("hello to you"))
    events = api.http.get(api.url(f"/api/v1/sessions/{session_id}/events"))
    async with events as stream:
        status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
        assert status == 202, body
        seen = await collect_until(stream, "done")
    assert seen[-1].data["content"] == "hello to you"
    assert (await send(api, session_id, "next"))[0] == 200
    assert_well_formed(fake_llm.requests[-1].messages)


@pytest.mark.parametrize("finish", ["stop", "refused"], ids=["empty", "refused before any text"])
async def test_the_tokens_an_empty_reply_used_count_in_the_sessions_usage(
    finish: Any, start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    # The model was paid for the call: leaving its usage out made the session's total too low.
    api = await start_api(git=False)
    session_id = await api.new_session()
    fake_llm.enqueue(text("", usage=(7, 5), finish=finish), text("hello to you", usage=(9, 3)))

    assert (await send(api, session_id, "hello"))[0] == 502
    status, reply = await send(api, session_id, "hello again")

    assert status == 200, reply
    assert reply["usage"] == {"input_tokens": 9, "output_tokens": 3}
    (failed,) = [e for e in stored_events(tmp_path, session_id) if e["type"] == "error"]
    assert failed["payload"]["usage"] == {"input_tokens": 7, "output_tokens": 5}
    assert failed["payload"]["turn_usage"] == {"input_tokens": 7, "output_tokens": 5}
    log = [SessionEvent.from_record(e) for e in stored_events(tmp_path, session_id)]
    assert replay(session_id, log).usage == {"input_tokens": 16, "output_tokens": 8}


@pytest.mark.parametrize("api_format", ["openai", "anthropic"])
async def test_a_stream_cut_in_a_tool_calls_arguments_before_any_text_is_asked_again(
    api_format: str, start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    # Nothing of such a reply reached the user or the log (a call is kept only once whole), so
    # it is as safe to ask again as a connection that broke before the reply began.
    api = await start_api(git=False)
    session_id = await api.new_session(
        anthropic_agent(tmp_path, fake_llm) if api_format == "anthropic" else "helper"
    )
    fake_llm.enqueue(CUT_IN_A_TOOL_CALL, tool_calls([("bash", {"command": "echo hi"})]), text("it said hi"))

    status, reply = await send(api, session_id, "say hi")

    assert (status, reply["content"]) == (200, "it said hi"), reply
    assert len(fake_llm.requests) == 3
    stored = stored_events(tmp_path, session_id)
    assert [e["payload"]["content"] for e in stored if e["type"] == "tool_result"] == ["hi"]
    assert "error" not in {e["type"] for e in stored}
    assert_well_formed(fake_llm.requests[-1].messages)


async def test_a_model_slower_than_its_agents_timeout_fails_the_turn_naming_the_setting(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """`spec.model.timeout` bounds the wait for the model's next bytes (the first token too): a
    person shortens it to fail fast, or lengthens it for a slow local model."""
    api = await start_api(git=False)
    agent_yaml = tmp_path / "ws0" / "data" / "agents" / "pauser" / "agent.yaml"
    agent_yaml.write_text(
        agent_yaml.read_text().replace("    api_key_env:", "    timeout: 500ms\n    api_key_env:")
    )
    agents = api.server.app[STATE].agents
    await until(lambda: (agent := agents.cached("pauser")) is not None and agent.spec.model.timeout)
    session_id = await api.new_session("pauser")
    fake_llm.enqueue(text("too late", delay=2))

    status, problem = await send(api, session_id, "hello")

    assert status == 502, problem
    assert "no data from openai for 0.5 s" in problem["detail"]
    assert "spec.model.timeout" in problem["detail"]
    fake_llm.enqueue(text("in time"))
    status, reply = await send(api, session_id, "again")
    assert (status, reply["content"]) == (200, "in time")
