"""Request and response bodies of the OpenAI-compatible API, in OpenAI's own field names.

Requests are parsed in one place (`ChatCompletionRequest`); unknown fields are refused, as
OpenAI refuses them. Sampling options a client may send out of habit (`temperature`,
`max_tokens`...) are accepted and ignored: the agent's `model` settings decide them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from duragent.server.problems import FieldError, HttpProblem

#: Header naming the session a request continues (also sent back with the session used).
SESSION_HEADER = "X-Duragent-Session"


class TextPart(BaseModel):
    """One part of a message's content list; only text parts are understood."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    """`tool_calls[].function` of an assistant message."""

    model_config = ConfigDict(defer_build=True)

    name: str
    arguments: str = ""


class ToolCallIn(BaseModel):
    """`tool_calls[]` of an assistant message (calls the agent made in an earlier turn)."""

    model_config = ConfigDict(defer_build=True)

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of `messages`."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    def text(self) -> str:
        """The content as plain text (text parts joined); other parts are refused by the request."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    """`stream_options`."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    model: str = Field(min_length=1, max_length=200, description="The agent to talk to.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Names the session to continue.")
    metadata: dict[str, str] | None = Field(None, description="`session_id` names the session to continue.")
    n: int = Field(1, ge=1, le=1, description="Only one choice is produced.")
    # Accepted and ignored (clients send them out of habit): the agent's `model` settings apply.
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _only_what_an_agent_can_do(self) -> ChatCompletionRequest:
        if self.tools or self.functions:
            raise ValueError(
                "client-side tools are not supported: the agent's own tools (agent.yaml) run on the "
                "server; send the conversation without `tools`/`functions`"
            )
        for index, message in enumerate(self.messages):
            if isinstance(message.content, list):
                for part in message.content:
                    if part.type != "text":
                        raise ValueError(
                            f"messages[{index}]: content part of type {part.type!r} is not supported "
                            "(only text)"
                        )
        return self

    def include_usage(self) -> bool:
        """Whether a streamed reply ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def named_session(self, header: str | None) -> str | None:
        """The session this request continues: the header, else `metadata.session_id`, else `user`."""
        for candidate in (header, (self.metadata or {}).get("session_id"), self.user):
            if candidate and candidate.strip():
                return candidate.strip()
        return None

    def new_user_message(self) -> str:
        """The message this request adds: the last one, which must come from the user."""
        last = self.messages[-1]
        if last.role != "user" or not last.text().strip():
            raise HttpProblem(
                400,
                "the last message must be a user message with text: it is what the agent answers",
                [FieldError(f"body.messages.{len(self.messages) - 1}", f"role is {last.role!r}")],
            )
        return last.text()

    def history(self) -> list[dict[str, Any]]:
        """Every message before the last as a stored conversation (system messages first)."""
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for index, message in enumerate(self.messages[:-1]):
            if message.role in ("system", "developer"):
                system.append({"role": "system", "content": message.text()})
            elif message.role == "user":
                turns.append({"role": "user", "content": message.text()})
            elif message.role == "assistant":
                turns.append(_assistant_entry(message, index))
            else:
                if not message.tool_call_id:
                    raise HttpProblem(
                        400,
                        "a tool message needs the tool_call_id it answers",
                        [FieldError(f"body.messages.{index}.tool_call_id", "missing")],
                    )
                turns.append(
                    {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text()}
                )
        return system + turns


def _assistant_entry(message: ChatMessage, index: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "assistant", "content": message.text()}
    calls = []
    for number, call in enumerate(message.tool_calls or ()):
        try:
            arguments = json.loads(call.function.arguments) if call.function.arguments.strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise HttpProblem(
                400,
                "tool call arguments must be a JSON object",
                [
                    FieldError(
                        f"body.messages.{index}.tool_calls.{number}.function.arguments", "not a JSON object"
                    )
                ],
            )
        calls.append({"id": call.id, "name": call.function.name, "arguments": arguments})
    if calls:
        entry["tool_calls"] = calls
    return entry
