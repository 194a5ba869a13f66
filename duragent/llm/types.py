"""What goes into a model call and what comes back, independent of any provider's wire format.

A stream is a sequence of chunks in this order: any number of `TextDelta` and `ToolCallDelta`
(interleaved as the model produces them), one `ToolCallComplete` per tool call once its arguments
are whole, at most one `Usage`, and always exactly one `Finish`, last. Before any of them, a
`Retrying` for each failed attempt the provider is about to try again (consumers that do not
tell the user may ignore it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from duragent import json_text

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "tool_calls", "length", "error"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for.

    `arguments` is the parsed JSON object. When the model produced text that is not a JSON
    object, `arguments` is empty and `unparsed_arguments` holds that text, so the loop can tell
    the model its call was malformed instead of crashing.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    unparsed_arguments: str | None = None

    @classmethod
    def from_json_arguments(cls, id: str, name: str, text: str) -> ToolCall:
        """A call whose arguments arrived as JSON text; empty text means no arguments."""
        if not text.strip():
            return cls(id, name)
        try:
            value = json_text.loads(text)
        except ValueError:
            return cls(id, name, {}, text)
        return cls(id, name, value) if isinstance(value, dict) else cls(id, name, {}, text)


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation sent to the model.

    `tool_calls` is set on assistant messages that called tools; `tool_call_id` (and optionally
    `name`, the tool's name) on `tool` messages carrying a tool's result, `is_error` when the
    tool failed (Anthropic's `tool_result` says so to the model).
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool offered to the model: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ForceTool:
    """Tool choice that makes the model call this one tool."""

    name: str


ToolChoice: TypeAlias = Literal["auto", "none", "required"] | ForceTool


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call to a model. Unset optional fields are not sent, so the provider's defaults apply."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    temperature: float | None = None
    max_output_tokens: int | None = None
    tool_choice: ToolChoice | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it streams; `id` and `name` arrive with the call's first piece."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments_fragment: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallComplete:
    """A tool call whose arguments have fully arrived and been parsed."""

    tool_call: ToolCall


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the provider counted for this call."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of the reply and why it ended."""

    reason: FinishReason


@dataclass(frozen=True, slots=True)
class Retrying:
    """An attempt failed before the reply began; attempt `attempt` of `attempts` starts in `delay` s."""

    attempt: int
    attempts: int
    delay: float
    reason: str


StreamChunk: TypeAlias = TextDelta | ToolCallDelta | ToolCallComplete | Usage | Finish | Retrying


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole reply, gathered from a stream."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None
    finish: FinishReason
