"""Request and response bodies of the OpenAI-compatible API, in OpenAI's own field names.

Requests are parsed in one place (`ChatCompletionRequest`). Fields this API does not know are
ignored, as OpenAI-compatible servers ignore them: clients send OpenAI's newer parameters
(`safety_identifier`, `verbosity`...), other servers' sampling options (`top_k`, `min_p`...) and
the fields of messages they got back (`annotations`, `audio`, `reasoning_content`), and none of
them changes what an agent does. Sampling options (`temperature`, `max_tokens`...) are ignored
too: the agent's `model` settings decide them. What an agent cannot do and a client would miss
(its own tools, several choices, images) is refused, naming the field.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from duragent.errors import InvalidName
from duragent.ids import check_name
from duragent.server.openai.errors import SESSION_HEADER
from duragent.server.problems import FieldError, HttpProblem


def text_or_parts(content: Any) -> Any:
    """`content` unchanged when it is a string, None or a list of part objects with a string
    `type`; else the one error that says so.

    Checked before the model so that a wrong content gets one error naming it: left to the
    union, it would get one per shape it could have had, named after this parser's types
    (`content.str`, `content.list[TextPart]`), which are no fields of the body.
    """
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(
            'must be a string or a list of content parts ({"type": "text", "text": "..."}), '
            f"not {type(content).__name__}"
        )
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise ValueError(f"part {index}: a content part must be an object, not {type(part).__name__}")
        if not isinstance(part.get("type"), str):
            raise ValueError(f'part {index}: `type` must be a string, such as "text"')
        if part.get("text") is not None and not isinstance(part["text"], str):
            raise ValueError(f"part {index}: `text` must be a string")
    return content


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
    """One message of `messages` (other fields, such as a returned message's `annotations`, ignored)."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_or_parts(cls, content: Any) -> Any:
        return text_or_parts(content)

    def text(self) -> str:
        """The content as plain text (text parts joined); other parts are refused by the request."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    """`stream_options` (`include_obfuscation` and the like ignored)."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions (fields it does not know are ignored)."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    model: str = Field(min_length=1, max_length=200, description="The agent to talk to.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Names the session to continue.")
    metadata: dict[str, Any] | None = Field(None, description="`session_id` names the session to continue.")
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is produced.")
    tools: list[dict[str, Any]] | None = Field(None, description="Refused: the agent's own tools run.")
    functions: list[dict[str, Any]] | None = Field(None, description="Refused: the agent's own tools run.")
    # Everything else is ignored: sampling options (`temperature`, `max_tokens`, `stop`...) because
    # the agent's `model` settings decide them, `tool_choice` because only the agent's tools exist.

    @model_validator(mode="after")
    def _only_what_an_agent_can_do(self) -> ChatCompletionRequest:
        for name in ("tools", "functions"):
            if getattr(self, name):
                raise refused(
                    f"body.{name}",
                    "client-side tools are not supported: the agent's own tools (agent.yaml) run on the "
                    f"server; send the conversation without `{name}`",
                )
        # Only the message answered: the others reach the model in a stateless request alone
        # (`history`), and a chat UI sends an image refused once with every later message.
        _text_only(self.messages[-1], len(self.messages) - 1)
        return self

    def include_usage(self) -> bool:
        """Whether a streamed reply ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def named_session(self, header: str | None) -> str | None:
        """The session this request continues: the header, else `metadata.session_id`, else `user`.

        A name that cannot be a session's is refused (400) naming where it came from, so a client
        that sends an e-mail address as `user` learns which of its fields to change.
        """
        naming = self.session_naming(header)
        return None if naming is None else _session_name(*naming)

    def session_naming(self, header: str | None) -> tuple[str, str] | None:
        """The name of the session this request continues, unchecked, and where it came from
        (`X-Duragent-Session`, `body.metadata.session_id` or `body.user`); None for none."""
        from_metadata = (self.metadata or {}).get("session_id")
        if from_metadata is not None and not isinstance(from_metadata, str):
            # Ignored, it would leave the request stateless: a conversation the client thinks is kept.
            raise HttpProblem(
                400,
                "metadata.session_id names the session to continue",
                [FieldError("body.metadata.session_id", "must be a string")],
                type_name="validation",
            )
        sources = (
            (SESSION_HEADER, header),
            ("body.metadata.session_id", from_metadata),
            ("body.user", self.user),
        )
        for source, candidate in sources:
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip(), source
        return None

    def new_user_message(self) -> str:
        """The message this request adds: the last one, which must come from the user."""
        last = self.messages[-1]
        if last.role != "user" or not last.text().strip():
            raise HttpProblem(
                400,
                "the last message must be a user message with text: it is what the agent answers",
                [
                    FieldError(
                        f"body.messages.{len(self.messages) - 1}",
                        f"role is {last.role!r}" if last.role != "user" else "it has no text",
                    )
                ],
            )
        return last.text()

    def history(self) -> list[dict[str, Any]]:
        """Every message before the last as a stored conversation (system messages first)."""
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for index, message in enumerate(self.messages[:-1]):
            _text_only(message, index)
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
        _owe_no_reply(turns)
        return system + turns


def _text_only(message: ChatMessage, index: int) -> None:
    """Refuse `message` (the `index`th) unless its content is text, naming the first other part."""
    for number, part in enumerate(message.content if isinstance(message.content, list) else ()):
        if part.type != "text":
            raise refused(
                f"body.messages.{index}.content.{number}",
                f"content parts of type {part.type!r} are not supported: agents take text only",
            )


def _owe_no_reply(turns: list[dict[str, Any]]) -> None:
    """Mark the user messages that end the history `silent`: context for the new message.

    A history ending in user messages (a RAG app's documents before its question, a message
    whose request failed sent again with the next one) is one conversation the model answers
    once, as OpenAI's would. Unmarked, the session would owe them a reply and run a turn of its
    own for them first: one more model call, its tools run, and its answer sent as the reply.
    """
    for entry in reversed(turns):
        if entry["role"] != "user":
            return
        entry["silent"] = True


def _session_name(name: str, source: str) -> str:
    try:
        return check_name(name, "session name")
    except InvalidName:
        where = source.removeprefix("body.")
        raise HttpProblem(
            400,
            f"{where} names the session to continue, but {name!r} cannot be a session's name; leave "
            f"{where} out for a stateless request",
            [FieldError(source, "use 1-64 letters, digits, '-' or '_'")],
            type_name="validation",
        ) from None


def refused(field: str, detail: str) -> HttpProblem:
    """The 400 for a request asking what an agent cannot do; `field` becomes OpenAI's `param`."""
    return HttpProblem(400, detail, [FieldError(field, "not supported")], type_name="unsupported")


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
