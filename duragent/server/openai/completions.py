"""A session's turn as an OpenAI chat completion: the reply's pieces, then the wire format.

`reply_pieces` reads one turn's stream events (the same ones `/api/v1/.../stream` sends) and
yields the text clients see, ending with the final reply and the turn's usage, or raises
`TurnProblem`. `Completion` writes those pieces as `chat.completion` / `chat.completion.chunk`
objects exactly as OpenAI does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from duragent.ids import ulid
from duragent.server.openai.errors import SHOULD_RETRY
from duragent.server.problems import HttpProblem, turn_error_status
from duragent.sessions.live import LiveSession
from duragent.sessions.stream import StreamEvent, ends_turn_unless_asking


@dataclass(frozen=True)
class FinalReply:
    """How the turn ended well: the agent's final text and the tokens of all its model calls."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    #: The model stopped at its token limit: OpenAI's `finish_reason: "length"`.
    truncated: bool = False

    @property
    def finish_reason(self) -> str:
        """`stop`, or `length` for a reply cut off by the token limit."""
        return "length" if self.truncated else "stop"


class TurnProblem(Exception):
    """The turn did not produce a reply: status, message and OpenAI error code for the client."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def as_http(self, headers: Mapping[str, str]) -> HttpProblem:
        """The problem to answer with while no part of the reply was sent (its code kept), with
        the reply's `headers` (the session it ran in).

        It tells OpenAI's SDKs not to retry (they retry a 409 or 5xx twice by default): the turn
        ran, with its tool calls, and the runtime already retried the model; sent again, the
        message would run again, and be stored again in a named session.
        """
        return HttpProblem(
            self.status,
            self.message,
            type_name=self.code.replace("_", "-"),
            headers={**headers, SHOULD_RETRY: "false"},
        )


def approval_problem(event: StreamEvent) -> TurnProblem:
    """What a stateless caller hears when the agent wants to run a tool a person must approve."""
    tool = str(event.data.get("tool") or "")
    command = str(event.data.get("command") or tool or "a tool")
    # (a tool other than bash shows its arguments: its name says what they are for)
    if tool in ("", "bash"):
        asked = f"to run `{command}`"
    else:
        asked = f"to call the tool `{tool}`" + (f" with `{command}`" if command != tool else "")
    return TurnProblem(
        409,
        f"the agent asked {asked}, which its policy says a person must approve, and a "
        "stateless request cannot wait for that; the turn was stopped. Name a session (header "
        "X-Duragent-Session) so the request waits while you answer with `duragent attach`, the "
        "dashboard or POST /api/v1/sessions/{id}/approve, or allow the command in the agent's policy.yaml",
        "approval_required",
    )


def _how_to_retry(session_id: str) -> str:
    """What runs a named session's failed turn again: its message is stored in the session, and
    sent again it would be there twice (and the model would read it twice)."""
    return (
        f"; the message is kept in session {session_id!r}: POST /api/v1/sessions/{session_id}/retry "
        "(or /retry in `duragent attach`) runs the turn again without sending it twice"
    )


@dataclass
class _Usage:
    prompt: int = 0
    completion: int = 0

    def add(self, data: dict[str, Any]) -> None:
        usage = data.get("usage") or {}
        self.prompt += int(usage.get("input_tokens") or 0)
        self.completion += int(usage.get("output_tokens") or 0)


async def reply_pieces(
    events: AsyncIterator[StreamEvent], live: LiveSession, *, stateless: bool
) -> AsyncIterator[str | FinalReply]:
    """Text as the agent says it, then one `FinalReply`; TurnProblem when the turn fails.

    Text the agent says before using tools is part of the stream (a blank line separates it
    from what follows). A stateless turn that needs an approval is cancelled (`approval_problem`);
    a named session's turn waits, like any session, for one of its clients to answer.
    """
    usage = _Usage()
    step_spoke = False
    separate = False
    async for event in events:
        name = event.event
        if name == "token":
            text = str(event.data.get("content") or "")
            if text:
                if separate:
                    text, separate = "\n\n" + text, False
                step_spoke = True
                yield text
        elif name == "message":
            usage.add(event.data)
            separate, step_spoke = separate or step_spoke, False
        elif name == "approval_required" and stateless:
            await live.cancel()
            raise approval_problem(event)
        elif name == "done":
            usage.add(event.data)
            yield FinalReply(
                str(event.data.get("content") or ""),
                usage.prompt,
                usage.completion,
                truncated=bool(event.data.get("truncated")),
            )
            return
        elif name == "error":
            code = str(event.data.get("code") or "turn_failed")
            message = str(event.data.get("message") or "the turn failed")
            if not stateless and event.data.get("retryable"):
                message += _how_to_retry(live.session_id)
            raise TurnProblem(turn_error_status(code), message, code)
        elif name == "cancelled":
            raise TurnProblem(409, "the turn was cancelled", "cancelled")
        elif name == "status" and ends_turn_unless_asking(event):
            reason = event.data.get("reason") or "paused"
            raise TurnProblem(
                503, f"the session paused before the reply ({reason}); resume it to finish the turn", "paused"
            )
    raise TurnProblem(503, "the session closed before the turn finished (server stopping?)", "closed")


@dataclass
class Completion:
    """One completion's identity; builds its response objects in OpenAI's exact shapes."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{ulid()}")
    created: int = field(default_factory=lambda: int(time.time()))

    def whole(self, reply: FinalReply) -> dict[str, Any]:
        """The `chat.completion` object of a non-streamed request."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": usage_of(reply),
        }

    def chunk(
        self, delta: dict[str, Any], finish: str | None = None, *, with_usage: bool = False
    ) -> dict[str, Any]:
        """A `chat.completion.chunk` with one choice (`usage: null` when usage is asked for)."""
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if with_usage:
            chunk["usage"] = None
        return chunk

    def usage_chunk(self, reply: FinalReply) -> dict[str, Any]:
        """The last chunk of a stream with `stream_options.include_usage`: no choices, the usage."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage_of(reply),
        }


def usage_of(reply: FinalReply) -> dict[str, int]:
    """OpenAI's usage object for the turn (every model call of it added up)."""
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
