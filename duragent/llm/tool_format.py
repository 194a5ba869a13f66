"""Tool definitions in each provider's request format (without its HTTP code, so the runtime can
count what the tools cost without importing a provider)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duragent.llm.types import ToolDefinition


def tool_to_openai(tool: ToolDefinition) -> dict[str, Any]:
    """A tool definition as a chat completions `function` tool."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def tool_to_anthropic(tool: ToolDefinition) -> dict[str, Any]:
    """A tool definition as an Anthropic Messages tool."""
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def tools_as_sent(provider: str, tools: Sequence[ToolDefinition]) -> list[dict[str, Any]]:
    """The `tools` array a request to `provider` (an agent.yaml provider name) carries."""
    shape = tool_to_anthropic if provider == "anthropic" else tool_to_openai
    return [shape(tool) for tool in tools]
