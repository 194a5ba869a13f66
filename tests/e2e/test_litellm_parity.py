"""Optional: LiteLLM, a third-party client of the same wire formats, reads the fake model's
answers as Duragent's providers do (text, tool calls and ids, usage, stop reasons).

Skipped unless `litellm` is installed (`pip install litellm`); it is not a dependency.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from duragent.llm.anthropic import AnthropicProvider
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.types import Completion, LLMRequest, Message, ToolDefinition
from duragent.testing.fake_llm import FakeLLMServer, ScriptedCall, ScriptedResponse, text, tool_calls

litellm = pytest.importorskip("litellm")

pytest_plugins = ["duragent.testing.pytest_plugin"]

pytestmark = pytest.mark.slow

BASH = ToolDefinition(
    "bash", "Run a command.", {"type": "object", "properties": {"command": {"type": "string"}}}
)
REQUEST = LLMRequest("fake-model", (Message("user", "hello there"),), tools=(BASH,))
SCRIPTS: dict[str, ScriptedResponse] = {
    "text": text("Hello through a third-party client", chunks=4, usage=(1234, 56), late_input_usage=True),
    "truncated": text("The list goes on and", finish="length", usage=(10, 5)),
    "parallel tool calls": tool_calls(
        [
            ScriptedCall("bash", {"command": "echo a"}, "call_a"),
            ScriptedCall("bash", {"command": "echo b"}, "call_b"),
        ],
        usage=(20, 8),
    ),
}


async def duragent_reads(fake_llm: FakeLLMServer, api: str, response: ScriptedResponse) -> Completion:
    fake_llm.enqueue(response)
    provider: Any = (
        OpenAICompatProvider(fake_llm.url, "sk-test")
        if api == "openai"
        else AnthropicProvider("sk-test", base_url=fake_llm.url)
    )
    async with provider:
        completion: Completion = await provider.complete(REQUEST)
        return completion


async def litellm_reads(fake_llm: FakeLLMServer, api: str, response: ScriptedResponse) -> dict[str, Any]:
    fake_llm.enqueue(response)
    tools = [
        {
            "type": "function",
            "function": {"name": BASH.name, "description": BASH.description, "parameters": BASH.parameters},
        }
    ]
    stream = await litellm.acompletion(
        model=f"{api}/fake-model",
        # LiteLLM adds /v1/messages to an Anthropic base, /chat/completions to an OpenAI one.
        api_base=fake_llm.url if api == "openai" else fake_llm.url.removesuffix("/v1"),
        api_key="sk-test",
        messages=[{"role": "user", "content": "hello there"}],
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    whole = litellm.stream_chunk_builder(chunks)
    choice = whole.choices[0]
    calls = [
        (call.id, call.function.name, json.loads(call.function.arguments))
        for call in (choice.message.tool_calls or [])
    ]
    return {
        "text": choice.message.content or "",
        "calls": calls,
        "usage": (whole.usage.prompt_tokens, whole.usage.completion_tokens),
        "finish": choice.finish_reason,
    }


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("case", list(SCRIPTS))
async def test_litellm_and_duragent_read_the_same_answer_alike(
    fake_llm: FakeLLMServer, api: str, case: str
) -> None:
    ours = await duragent_reads(fake_llm, api, SCRIPTS[case])
    theirs = await litellm_reads(fake_llm, api, SCRIPTS[case])
    assert ours.text == theirs["text"]
    assert [(c.id, c.name, c.arguments) for c in ours.tool_calls] == theirs["calls"]
    assert ours.usage is not None
    assert (ours.usage.input_tokens, ours.usage.output_tokens) == theirs["usage"]
    assert {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}[ours.finish] == theirs["finish"]
