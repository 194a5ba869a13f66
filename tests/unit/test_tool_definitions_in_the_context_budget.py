"""Tool definitions are counted as each provider is sent them, and come off the context budget
before memory's share and the conversation."""

from __future__ import annotations

import json

from duragent.llm.tool_format import tools_as_sent
from duragent.llm.types import ToolDefinition
from duragent.runtime.context import ToolTokens, estimate_tokens

TOOLS = (
    ToolDefinition(
        "read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}}
    ),
    ToolDefinition("time__now", "The time now. " * 50),
)


def test_tools_are_counted_in_the_format_the_provider_is_sent() -> None:
    counter = ToolTokens()
    for provider, key in (("openai", "function"), ("anthropic", "input_schema")):
        sent = tools_as_sent(provider, TOOLS)
        assert key in json.dumps(sent)
        assert counter.count(provider, TOOLS) == estimate_tokens(json.dumps(sent, separators=(",", ":")))
    assert counter.count("openai", TOOLS) > counter.count("anthropic", TOOLS), "OpenAI's wrapper costs more"
    assert counter.count("openai", ()) == 0


def test_a_schema_changed_in_place_is_counted_again() -> None:
    counter = ToolTokens()
    schema: dict[str, object] = {"type": "object", "properties": {}}
    tools = (ToolDefinition("grow", "Grows.", schema),)
    before = counter.count("openai", tools)
    schema["description"] = "much longer now " * 100
    assert counter.count("openai", tools) > before
