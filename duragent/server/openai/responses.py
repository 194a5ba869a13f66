"""POST /v1/responses: OpenAI's Responses API over the same turns as /v1/chat/completions.

A request's `input` (a string, or a list of messages) and `instructions` become the messages of
a chat completion request, so sessions work the same way: a named session
(`X-Duragent-Session`, `metadata.session_id`, `user`) gets the last user message; otherwise the
request is stateless. The answer is a `response` object with one assistant `message` output
item, or, with `stream: true`, the Responses API's typed events (`response.created` ...
`response.output_text.delta` ... `response.completed`). Client-side tools, function-call items,
`previous_response_id` and `conversation` are refused: the agent's own tools run on the server,
and a named session is how a conversation continues.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from duragent.ids import ulid
from duragent.server import sse
from duragent.server.bodies import read_body
from duragent.server.openai.bodies import ChatCompletionRequest, ChatMessage, refused, text_or_parts
from duragent.server.openai.completions import FinalReply, TurnProblem, reply_pieces
from duragent.server.openai.errors import error_body
from duragent.server.openai.routes import AgentTurn, agent_turn, open_event_stream
from duragent.server.problems import FieldError, HttpProblem, invalid, validation_errors
from duragent.server.state import STATE


class InputPart(BaseModel):
    """One part of an input message's content; text parts only."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    """One item of `input`: a message (the only item type an agent's conversation takes in)."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    #: Other item types (`function_call`, `reasoning`...) are refused by the request.
    type: str = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputPart] = ""

    @field_validator("content", mode="before")
    @classmethod
    def _text_or_parts(cls, content: Any) -> Any:
        return "" if content is None else text_or_parts(content)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


#: Requests that would need what responses do not keep (stored responses, conversations, prompts).
_NOT_STORED = {
    "previous_response_id": "responses are not stored",
    "conversation": "conversations are not stored",
    "prompt": "stored prompts are not supported",
}


class ResponseRequest(BaseModel):
    """POST /v1/responses (fields it does not know are ignored, as for chat completions)."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    model: str = Field(min_length=1, max_length=200, description="The agent to talk to.")
    input: str | list[InputMessage] = Field(description="A user message, or the conversation.")
    instructions: str | None = Field(None, description="A system message put first.")
    stream: StrictBool | None = False
    user: str | None = Field(None, max_length=256, description="Names the session to continue.")
    metadata: dict[str, Any] | None = Field(None, description="`session_id` names the session to continue.")
    tools: list[dict[str, Any]] | None = Field(None, description="Refused: the agent's own tools run.")
    background: StrictBool | None = Field(None, description="Refused: a response is answered while you wait.")
    previous_response_id: str | None = None
    conversation: Any = None
    prompt: Any = None
    # Everything else is ignored: sampling options (`temperature`, `max_output_tokens`...) because
    # the agent's `model` settings decide them.

    @model_validator(mode="before")
    @classmethod
    def _input_read_item_by_item(cls, data: Any) -> Any:
        # Left to the union `str | list[InputMessage]`, a wrong input would get one error per
        # shape it could have had, named after this parser's types (`input.str`,
        # `input.list[InputMessage].0`), which are no fields of the body: each item is read here,
        # its errors named `input.<n>...`.
        given = data.get("input") if isinstance(data, dict) else None
        if given is None or isinstance(given, str):
            return data
        if not isinstance(given, list):
            errors = [
                FieldError(
                    "body.input", f"must be a string or a list of messages, not {type(given).__name__}"
                )
            ]
            raise HttpProblem(400, invalid("the request", errors), errors, type_name="validation")
        items = []
        for index, item in enumerate(given):
            try:
                items.append(InputMessage.model_validate(item))
            except ValidationError as wrong:
                errors = validation_errors(wrong, f"body.input.{index}")
                raise HttpProblem(
                    400, invalid("the request", errors), errors, type_name="validation"
                ) from None
        return {**data, "input": items}

    @model_validator(mode="after")
    def _only_what_an_agent_can_do(self) -> ResponseRequest:
        if self.tools:
            raise refused(
                "body.tools",
                "client-side tools are not supported: the agent's own tools (agent.yaml) run on the server",
            )
        for name, why in _NOT_STORED.items():
            if getattr(self, name):
                raise refused(
                    f"body.{name}",
                    f"{name} is not supported: {why}; name a session (header X-Duragent-Session, or "
                    "metadata.session_id) to continue a conversation",
                )
        if self.background:
            raise refused("body.background", "background responses are not supported")
        for index, item in enumerate(self.input if isinstance(self.input, list) else ()):
            if item.type != "message" or item.role is None:
                raise refused(
                    f"body.input.{index}",
                    f"input items of type {item.type!r} are not supported: only messages (role and "
                    "content) make an agent's conversation",
                )
            for number, part in enumerate(item.content if isinstance(item.content, list) else ()):
                if part.type not in ("input_text", "output_text", "text"):
                    raise refused(
                        f"body.input.{index}.content.{number}",
                        f"content parts of type {part.type!r} are not supported: agents take text only",
                    )
        return self

    def as_chat_request(self) -> ChatCompletionRequest:
        """The same request in chat completion terms (instructions first, then the input)."""
        self._check_last_input()
        messages: list[ChatMessage] = []
        if self.instructions:
            messages.append(ChatMessage(role="system", content=self.instructions))
        if isinstance(self.input, str):
            messages.append(ChatMessage(role="user", content=self.input))
        else:
            messages += [ChatMessage(role=item.role or "user", content=item.text()) for item in self.input]
        return ChatCompletionRequest(
            model=self.model, messages=messages, stream=self.stream, user=self.user, metadata=self.metadata
        )

    def _check_last_input(self) -> None:
        """400 naming the item unless `input` ends with a user message with text (what is answered).

        Checked here, in the request's own terms: the chat completion request it becomes would
        name its `messages`, which this request does not have.
        """
        if not self.input:
            raise HttpProblem(400, "input is empty", [FieldError("body.input", "no message")])
        if isinstance(self.input, str):
            field, role, said = "body.input", "user", self.input
        else:
            last = self.input[-1]
            field, role, said = f"body.input.{len(self.input) - 1}", last.role or "user", last.text()
        if role != "user" or not said.strip():
            raise HttpProblem(
                400,
                "the input must end with a user message with text: it is what the agent answers",
                [FieldError(field, f"role is {role!r}" if role != "user" else "it has no text")],
            )


@dataclass
class ResponseObject:
    """One response's identity; builds the `response` object and its stream events."""

    model: str
    instructions: str | None = None
    #: The request's, sent back as OpenAI does.
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: f"resp_{ulid()}")
    message_id: str = field(default_factory=lambda: f"msg_{ulid()}")
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence: int = 0

    def body(self, reply: FinalReply | None) -> dict[str, Any]:
        """The `response` object: in progress (no reply yet), completed, or incomplete (cut off)."""
        status = "in_progress" if reply is None else ("incomplete" if reply.truncated else "completed")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": [] if reply is None else [self.message(reply.content, "completed")],
            "usage": None if reply is None else _usage(reply),
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if reply and reply.truncated else None,
            "instructions": self.instructions,
            "metadata": self.metadata,
            "parallel_tool_calls": True,
            "temperature": None,
            "top_p": None,
            "tool_choice": "auto",
            "tools": [],
        }

    def failed(self, said: str, code: str, message: str) -> dict[str, Any]:
        """The `response` object of a turn that failed after saying `said` (kept as incomplete)."""
        return self.body(None) | {
            "status": "failed",
            "output": [self.message(said, "incomplete")] if said else [],
            "error": {"code": code, "message": message},
        }

    def message(self, text: str | None, status: str) -> dict[str, Any]:
        """The assistant `message` output item (no content part before the text starts)."""
        content = [] if text is None else [_text_part(text)]
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def event(self, kind: str, **fields: Any) -> bytes:
        """One SSE event of the stream, numbered in order."""
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def text_position(self) -> dict[str, Any]:
        return {"item_id": self.message_id, "output_index": 0, "content_index": 0}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(reply: FinalReply) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


async def create_response(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses, streamed (`stream: true`) or not."""
    body = await read_body(request, ResponseRequest)
    chat = body.as_chat_request()
    response = ResponseObject(body.model, instructions=body.instructions, metadata=body.metadata or {})
    try:
        async with agent_turn(request, chat) as turn:
            if body.stream:
                return await _stream(request, response, turn)
            return await _whole(request, response, turn)
    except sse.ClientGone:
        return web.Response(status=499, reason="Client Closed Request")


async def _whole(request: web.Request, response: ResponseObject, turn: AgentTurn) -> web.Response:
    try:
        async for piece in reply_pieces(
            sse.while_connected(request, turn.events), turn.live, stateless=turn.stateless
        ):
            if isinstance(piece, FinalReply):
                return web.json_response(response.body(piece), headers=turn.headers)
    except TurnProblem as problem:
        raise problem.as_http(turn.headers) from None
    raise AssertionError("reply_pieces ends with a FinalReply or raises")


async def _stream(request: web.Request, response: ResponseObject, turn: AgentTurn) -> web.StreamResponse:
    """The Responses API's events; the HTTP response starts with the first piece of the reply,
    or with the first keep-alive when the turn is quiet longer (see the chat completions' stream)."""
    stream: web.StreamResponse | None = None
    said: list[str] = []

    async def keep_alive() -> None:
        nonlocal stream
        stream = stream or await start()
        await stream.write(b": keep-alive\n\n")

    async def start() -> web.StreamResponse:
        opened = await open_event_stream(request, turn.headers)
        await opened.write(
            response.event("response.created", response=response.body(None))
            + response.event("response.in_progress", response=response.body(None))
            + response.event(
                "response.output_item.added", output_index=0, item=response.message(None, "in_progress")
            )
            + response.event("response.content_part.added", **response.text_position(), part=_text_part(""))
        )
        return opened

    try:
        every = request.app[STATE].keep_alive
        pieces = reply_pieces(
            sse.while_connected(request, turn.events, on_idle=keep_alive, idle_every=every),
            turn.live,
            stateless=turn.stateless,
        )
        async for piece in pieces:
            stream = stream or await start()
            if isinstance(piece, FinalReply):
                text = "".join(said)
                await stream.write(
                    response.event(
                        "response.output_text.done", **response.text_position(), text=text, logprobs=[]
                    )
                    + response.event(
                        "response.content_part.done", **response.text_position(), part=_text_part(text)
                    )
                    + response.event(
                        "response.output_item.done", output_index=0, item=response.message(text, "completed")
                    )
                    + response.event(
                        "response.incomplete" if piece.truncated else "response.completed",
                        response=response.body(
                            FinalReply(text, piece.prompt_tokens, piece.completion_tokens, piece.truncated)
                        ),
                    )
                )
                break
            said.append(piece)
            await stream.write(
                response.event(
                    "response.output_text.delta", **response.text_position(), delta=piece, logprobs=[]
                )
            )
    except TurnProblem as problem:
        if stream is None:
            raise problem.as_http(turn.headers) from None
        # The `error` event, then the lifecycle event that ends the response, as OpenAI sends them.
        failure = error_body(problem.status, problem.message, code=problem.code)
        await stream.write(
            response.event("error", code=problem.code, message=problem.message, param=failure.get("param"))
            + response.event(
                "response.failed", response=response.failed("".join(said), problem.code, problem.message)
            )
        )
    except (ConnectionResetError, sse.ClientGone):
        if stream is None:
            raise sse.ClientGone() from None
        return stream
    assert stream is not None
    await stream.write_eof()
    return stream
