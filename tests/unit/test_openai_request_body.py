"""The chat-completions body as sent: the same JSON as `build_payload`, turn after turn.

`encode_body` reuses what it encoded for earlier turns of a conversation; these tests hold it to
the plain encoding as the conversation grows, slides out of the context window, or is another.
"""

from __future__ import annotations

import json

from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.types import LLMRequest, Message, ToolCall

PROVIDER = OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")


def request(*messages: Message) -> LLMRequest:
    return LLMRequest(model="m", messages=messages, max_output_tokens=64)


def sent(provider: OpenAICompatProvider, req: LLMRequest) -> dict[str, object]:
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


def test_a_growing_conversation_is_sent_whole_every_turn() -> None:
    provider = OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")
    history = conversation(6)
    for end in range(1, len(history) + 1):
        system = Message(role="system", content=f"You are a test. Turn {end}.")
        body = sent(provider, request(system, *history[:end]))
        assert len(body["messages"]) == end + 1  # type: ignore[arg-type]


def test_a_window_that_drops_the_oldest_messages_sends_only_what_is_left() -> None:
    provider = OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")
    history = conversation(8)
    system = Message(role="system", content="You are a test.")
    sent(provider, request(system, *history))
    for start in (4, 8, 9, 20):
        body = sent(provider, request(system, *history[start:]))
        assert body["messages"][1]["content"] == history[start].content  # type: ignore[index]


def test_two_conversations_through_one_provider_do_not_mix() -> None:
    provider = OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")
    first, second = conversation(3), conversation(3)
    second[0] = Message(role="user", content="another session")
    system = Message(role="system", content="You are a test.")
    for end in range(1, 13):
        sent(provider, request(system, *first[:end]))
        sent(provider, request(system, *second[:end]))


def test_a_conversation_that_changes_its_past_is_encoded_again() -> None:
    provider = OpenAICompatProvider("http://127.0.0.1:1/v1", "sk-test")
    history = conversation(2)
    system = Message(role="system", content="You are a test.")
    sent(provider, request(system, *history))
    edited = [history[0], Message(role="assistant", content="a different reply"), *history[2:]]
    body = sent(provider, request(system, *edited))
    assert body["messages"][2]["content"] == "a different reply"  # type: ignore[index]


def test_a_request_without_history_has_only_the_system_prompt() -> None:
    body = sent(PROVIDER, request(Message(role="system", content="Only this.")))
    assert body["messages"] == [{"role": "system", "content": "Only this."}]
