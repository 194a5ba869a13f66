"""Request bodies as sent: the same JSON as `build_payload`, turn after turn, for OpenAI and Anthropic.

`encode_body` reuses what it encoded for earlier turns of a conversation; these tests hold it to
the plain encoding as the conversation grows, slides out of the context window, or is another.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.encoded import EncodedConversations
from duragent.llm.http_provider import HttpProvider
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.types import LLMRequest, Message, ToolCall, ToolDefinition


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> HttpProvider:
    if request.param == "openai":
        return OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")
    return AnthropicProvider("sk-ant-test", base_url="http://127.0.0.1:1")


def request(*messages: Message) -> LLMRequest:
    return LLMRequest(model="m", messages=messages, max_output_tokens=64)


def sent(provider: HttpProvider, req: LLMRequest) -> dict[str, Any]:
    body = json.loads(provider.encode_body(req))
    assert body == provider.build_payload(req)
    return body


def conversation(turns: int) -> list[Message]:
    messages: list[Message] = []
    for turn in range(turns):
        messages.append(Message(role="user", content=f"question {turn} — ünïcode"))
        call = ToolCall(id=f"call_{turn}", name="bash", arguments={"command": f"echo {turn}"})
        messages.append(Message(role="assistant", content=None, tool_calls=(call,)))
        messages.append(Message(role="tool", content=f"{turn}\n", tool_call_id=f"call_{turn}"))
        messages.append(Message(role="assistant", content=f"answer {turn}"))
    return messages


def test_a_growing_conversation_is_sent_whole_every_turn(provider: HttpProvider) -> None:
    history = conversation(6)
    for end in range(1, len(history) + 1):
        system = Message(role="system", content=f"You are a test. Turn {end}.")
        body = sent(provider, request(system, *history[:end]))
        assert json.dumps(body).count("question") == (end + 3) // 4


def test_a_window_that_drops_the_oldest_messages_sends_only_what_is_left(provider: HttpProvider) -> None:
    history = conversation(8)
    system = Message(role="system", content="You are a test.")
    sent(provider, request(system, *history))
    for start in (1, 2, 3, 4, 8, 9, 20, 31):
        body = sent(provider, request(system, *history[start:]))
        assert f"answer {start // 4}" in json.dumps(body)
        assert f"question {start // 4 - 1}" not in json.dumps(body)


def test_two_conversations_through_one_provider_do_not_mix(provider: HttpProvider) -> None:
    first, second = conversation(3), conversation(3)
    second[0] = Message(role="user", content="another session")
    system = Message(role="system", content="You are a test.")
    for end in range(1, 13):
        sent(provider, request(system, *first[:end]))
        sent(provider, request(system, *second[:end]))


def test_a_conversation_that_changes_its_past_is_encoded_again(provider: HttpProvider) -> None:
    history = conversation(2)
    system = Message(role="system", content="You are a test.")
    sent(provider, request(system, *history))
    edited = [history[0], Message(role="assistant", content="a different reply"), *history[2:]]
    body = sent(provider, request(system, *edited))
    assert "a different reply" in json.dumps(body)


def test_messages_without_content_and_late_system_messages_are_handled_alike(
    provider: HttpProvider,
) -> None:
    system = Message(role="system", content="You are a test.")
    history = [
        Message(role="assistant", content=""),
        Message(role="user", content="first"),
        Message(role="user", content="second, same role"),
        Message(role="assistant", content=""),
        Message(role="assistant", content="reply"),
    ]
    for start in range(len(history)):
        sent(provider, request(system, *history[start:]))


def test_a_window_sliding_past_the_remembered_start_still_sends_the_exact_body(
    provider: HttpProvider,
) -> None:
    history = conversation(60)  # the window (10 turns) moves far enough to forget the front
    for turn in range(10, 61):
        system = Message(role="system", content=f"You are a test. Turn {turn}.")
        body = sent(provider, request(system, *history[(turn - 10) * 4 : turn * 4]))
        assert f"question {turn - 10} " in json.dumps(body, ensure_ascii=False)
        assert f"question {turn - 11} " not in json.dumps(body, ensure_ascii=False)


def test_a_request_without_a_system_prompt_sends_the_history_alone(provider: HttpProvider) -> None:
    history = conversation(3)
    for end in range(1, len(history) + 1):
        sent(provider, request(*history[:end]))


def test_a_request_without_history_sends_only_the_system_prompt(provider: HttpProvider) -> None:
    body = sent(provider, request(Message(role="system", content="Only this.")))
    assert "Only this." in json.dumps(body)


class CountingEncoding:
    """Writes each message as its content, counting the messages it encoded after another (a
    request's first message is written afresh each time)."""

    def __init__(self) -> None:
        self.encoded = 0

    def opening(self, message: Message) -> str:
        return message.content or ""

    def following(self, message: Message, previous: Message) -> str:
        self.encoded += 1
        return "," + message.content if message.content else ""

    def closing(self) -> str:
        return ""


def test_a_window_sliding_to_a_later_user_message_encodes_only_the_new_messages() -> None:
    encoding = CountingEncoding()
    conversations = EncodedConversations(encoding)
    history = conversation(10)
    conversations.array_text(history[:20])
    assert encoding.encoded == 19
    for start in (4, 8, 16):  # each a user message: the window the context sends opens there
        text = conversations.array_text(history[start:])
        assert text == ",".join(m.content or "" for m in history[start:] if m.content)
    assert encoding.encoded == 39  # the 20 messages added, each once
    # A history opening at a message no window opens at (a tool result) is still right.
    assert conversations.array_text(history[6:]) == ",".join(
        m.content or "" for m in history[6:] if m.content
    )


def test_a_conversation_longer_than_the_window_is_forgotten_behind_it_and_still_sent_right() -> None:
    encoding = CountingEncoding()
    conversations = EncodedConversations(encoding)
    history = conversation(100)  # 400 messages; the window: the last 10 turns (40 messages)
    for turn in range(10, 101):
        window = history[(turn - 10) * 4 : turn * 4]
        expected = ",".join(m.content or "" for m in window if m.content)
        assert conversations.array_text(window) == expected
    assert encoding.encoded == 399  # every message once, as the window moved
    # What the window moved past long ago is no longer kept: a history opening there is
    # encoded again (and right).
    assert conversations.array_text(history[:40]) == ",".join(
        m.content or "" for m in history[:40] if m.content
    )
    assert encoding.encoded == 399 + 39


def test_conversations_beyond_the_byte_budget_are_forgotten_and_still_sent_right() -> None:
    """A server meets sessions without end: what it remembers of them stays within a budget."""
    encoding = CountingEncoding()
    conversations = EncodedConversations(encoding, budget=4_000)
    sessions = [conversation(5) for _ in range(20)]  # 20 messages each
    for history in sessions:
        conversations.array_text(history)
    assert encoding.encoded == 20 * 19
    for history in sessions:  # forgotten or not, each is sent as it is
        assert conversations.array_text(history) == ",".join(m.content or "" for m in history if m.content)
    assert encoding.encoded > 20 * 19  # the early sessions were forgotten: encoded again


def test_the_tools_offered_are_sent_as_they_are_now_turn_after_turn() -> None:
    provider = OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")
    schema: dict[str, Any] = {"type": "object", "properties": {"command": {"type": "string"}}}
    bash = ToolDefinition("bash", "Run a command.", schema)
    system = Message(role="system", content="You are a test.")

    def tools_sent(*tools: ToolDefinition) -> list[Any]:
        req = LLMRequest(model="m", messages=(system, Message(role="user", content="hi")), tools=tools)
        return list(sent(provider, req)["tools"])

    assert tools_sent(bash) == tools_sent(bash)
    edited = ToolDefinition("bash", "Run one shell command.", schema)
    assert tools_sent(edited)[0]["function"]["description"] == "Run one shell command."
    shout = ToolDefinition("shout", "Shout.", {"type": "object", "properties": {}})
    assert [tool["function"]["name"] for tool in tools_sent(edited, shout)] == ["bash", "shout"]
    schema["properties"]["timeout"] = {"type": "integer"}  # the same dict, changed in place
    assert (
        "timeout"
        in tools_sent(ToolDefinition("bash", "Run one shell command.", schema))[0]["function"]["parameters"][
            "properties"
        ]
    )


def test_the_system_prompt_is_sent_as_it_is_now_turn_after_turn(provider: HttpProvider) -> None:
    # a prompt changes with the day and the agent's memory; several agents share one provider
    history = conversation(2)
    prompts = [f"You are agent {n}. Today is 2026-12-0{n % 7 + 1}. Remember: ünïcode {n}." for n in range(9)]
    for turn in range(1, len(history) + 1):
        for prompt in (prompts[0], prompts[turn], prompts[0], prompts[8 - turn]):
            named = Message(role="system", content=prompt, name="ops" if turn % 2 else None)
            second = Message(role="system", content=f"turn {turn}")
            body = sent(provider, request(named, second, *history[:turn]))
            assert prompt in json.dumps(body, ensure_ascii=False)
