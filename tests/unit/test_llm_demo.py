"""The demo provider: offline, deterministic, honest, and able to drive the memory tool."""

from __future__ import annotations

import sys

from duragent.llm.demo import CONFIGURE_HINT, DemoProvider
from duragent.llm.registry import create_provider
from duragent.llm.types import (
    Finish,
    LLMRequest,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolDefinition,
)

MEMORY = ToolDefinition("memory", "Remember and recall.", {"type": "object", "properties": {}})


def ask(text: str, *, tools: tuple[ToolDefinition, ...] = (MEMORY,)) -> LLMRequest:
    return LLMRequest("demo", (Message("system", "You are helpful."), Message("user", text)), tools=tools)


async def chunks_for(request: LLMRequest) -> list[StreamChunk]:
    return [chunk async for chunk in DemoProvider().stream(request)]


async def test_every_reply_says_it_is_the_demo_and_how_to_configure_a_real_model() -> None:
    completion = await DemoProvider().complete(ask("tell me a story"))
    assert "demo provider" in completion.text
    assert "not a language model" in completion.text
    assert "OPENAI_API_KEY" in completion.text
    assert "agent.yaml" in completion.text
    assert completion.text.endswith(CONFIGURE_HINT)


async def test_plain_messages_are_quoted_back_with_a_word_count() -> None:
    completion = await DemoProvider().complete(ask("the quick brown fox"))
    assert completion.text.startswith('You wrote 4 words: "the quick brown fox".')
    assert completion.finish == "stop"
    assert completion.tool_calls == ()


async def test_the_same_request_always_gets_the_same_reply() -> None:
    assert await chunks_for(ask("same again")) == await chunks_for(ask("same again"))


async def test_text_streams_in_several_deltas() -> None:
    chunks = await chunks_for(ask("hi"))
    assert len([c for c in chunks if isinstance(c, TextDelta)]) > 3
    assert chunks[-1] == Finish("stop")


async def test_remember_calls_the_memory_tool_with_a_fact() -> None:
    chunks = await chunks_for(ask("remember I take my tea without sugar"))
    calls = [c.tool_call for c in chunks if isinstance(c, ToolCallComplete)]
    assert [(c.name, c.arguments) for c in calls] == [
        ("memory", {"action": "remember", "section": "fact", "content": "I take my tea without sugar"}),
    ]
    assert chunks[-1] == Finish("tool_calls")
    assert not any(isinstance(c, TextDelta) for c in chunks)


async def test_after_the_tool_result_the_reply_quotes_it() -> None:
    provider = DemoProvider()
    first = ask("remember the deploy is on Friday")
    call = (await provider.complete(first)).tool_calls[0]
    follow_up = LLMRequest(
        "demo",
        (
            *first.messages,
            Message("assistant", None, tool_calls=(call,)),
            Message("tool", "Saved to Facts Stored in 2026-01-02.md", tool_call_id=call.id),
        ),
        tools=(MEMORY,),
    )
    completion = await provider.complete(follow_up)
    assert completion.text.startswith('The memory tool replied: "Saved to Facts Stored in 2026-01-02.md".')
    assert completion.tool_calls == ()


async def test_recall_and_what_do_you_remember_ask_the_memory_tool() -> None:
    provider = DemoProvider()
    recall = (await provider.complete(ask("recall tea"))).tool_calls
    what = (await provider.complete(ask("So, what do you remember about me?"))).tool_calls
    assert [c.arguments for c in recall] == [{"action": "recall", "query": "tea"}]
    assert [c.arguments for c in what] == [{"action": "recall"}]


async def test_without_a_memory_tool_it_explains_instead_of_calling_one() -> None:
    completion = await DemoProvider().complete(ask("remember my name is Ada", tools=()))
    assert completion.tool_calls == ()
    assert "add `memory` to spec.tools" in completion.text


async def test_demo_provider_needs_no_key_and_no_http_client() -> None:
    already_loaded = "aiohttp" in sys.modules
    async with create_provider("demo", env={}) as provider:
        assert provider.name == "demo"
        assert (await provider.complete(ask("hi"))).finish == "stop"
    if not already_loaded:
        assert "aiohttp" not in sys.modules


async def test_a_recall_reply_shows_the_remembered_facts_not_the_memory_file_preamble() -> None:
    tool_result = (
        "## MEMORY.md\n\n# Long-term memory of assistant\n\nWhat should stay true across "
        "conversations: who the user is, how they like to work, and decisions that are settled. "
        "Duragent gives this file to the agent at the start of every conversation.\n\n"
        "## Entries matching 'tea'\n\n- 2026-11-26 [fact] that my favourite tea is genmaicha"
    )
    call = ToolCall("demo_call_1", "memory", {"action": "recall", "query": "tea"})
    request = LLMRequest(
        "demo",
        (
            Message("user", "what do you recall about tea?"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", tool_result, tool_call_id=call.id, name="memory"),
        ),
        tools=(MEMORY,),
    )
    completion = await DemoProvider().complete(request)
    assert completion.text.startswith('I remember: "that my favourite tea is genmaicha".')
    asked = (await DemoProvider().complete(ask("what do you recall about tea?"))).tool_calls
    assert [c.arguments for c in asked] == [{"action": "recall", "query": "tea"}]
