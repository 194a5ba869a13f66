"""The Anthropic Messages API: `POST {base}/v1/messages` with its SSE events."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from duragent import json_text
from duragent.llm.encoded import EncodedConversations, leading_system
from duragent.llm.errors import StreamError, TransientStreamError
from duragent.llm.http_provider import HttpProvider, StreamDecoder, Timeouts
from duragent.llm.retry import RetryPolicy
from duragent.llm.sse import SseEvent
from duragent.llm.tool_format import tool_to_anthropic
from duragent.llm.types import (
    Finish,
    FinishReason,
    ForceTool,
    LLMRequest,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
#: The Messages API requires max_tokens; used when the agent does not set one.
DEFAULT_MAX_OUTPUT_TOKENS = 4096

#: As json.dumps with compact separators (non-ASCII escaped), built once: every request carries
#: the whole history, and the spaces after "," and ":" were ~5% of a long session's body.
_ENCODER = json.JSONEncoder(separators=(",", ":"))

#: Usage keys whose counts together are the tokens the model read.
_INPUT_TOKEN_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "error",
}


#: Error events for what a plain request would get as a 5xx (`overloaded_error` is the 529):
#: sent after the 200 of a stream, often before any content, where a retry usually succeeds.
_TRANSIENT_ERRORS = frozenset({"overloaded_error", "api_error"})


class AnthropicProvider(HttpProvider):
    """Streams Messages API replies, with tool_use and tool_result blocks."""

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        provider_name: str = "anthropic",
        api_key_env: str | None = "ANTHROPIC_API_KEY",
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ):
        super().__init__(
            provider_name=provider_name,
            api_key=api_key,
            api_key_env=api_key_env,
            headers=headers,
            retry=retry,
            timeouts=timeouts,
        )
        self.base_url = base_url.rstrip("/")
        self._conversations = EncodedConversations(_AnthropicMessages())

    @property
    def endpoint(self) -> str:
        """`{base}/v1/messages`; a base URL that already ends in `/v1` is not doubled."""
        if self.base_url.endswith("/v1"):
            return f"{self.base_url}/messages"
        return f"{self.base_url}/v1/messages"

    def auth_headers(self) -> dict[str, str]:
        """`x-api-key` and the API version header."""
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def build_payload(self, request: LLMRequest) -> dict[str, Any]:
        """The Messages body: the leading system messages as the top-level system prompt, the
        rest as messages, consecutive messages of one role merged."""
        lead = leading_system(request.messages)
        messages = messages_to_anthropic(request.messages[lead:])
        return {"messages": messages} | self._options(request, request.messages[:lead])

    def encode_body(self, request: LLMRequest) -> bytes:
        """`build_payload` as JSON; the history's messages are encoded once per conversation
        (`duragent.llm.encoded`)."""
        lead = leading_system(request.messages)
        options = _ENCODER.encode(self._options(request, request.messages[:lead]))
        return self._conversations.body(
            request.messages[lead:], b'{"messages":[', ("]," + options[1:]).encode()
        )

    def _options(self, request: LLMRequest, system_messages: Sequence[Message]) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in system_messages if m.content)
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
            "stream": True,
        }
        if system:
            payload["system"] = system
        if request.tools:
            payload["tools"] = [tool_to_anthropic(tool) for tool in request.tools]
            if request.tool_choice is not None:
                payload["tool_choice"] = tool_choice_to_anthropic(request.tool_choice)
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        return payload

    def new_decoder(self) -> StreamDecoder:
        """A decoder for one Messages SSE stream."""
        return AnthropicStreamDecoder(self.name)


class _AnthropicMessages:
    """Content blocks, consecutive messages of one role merged into one (`EncodedConversations`)."""

    def opening(self, message: Message) -> str:
        blocks = _blocks_json(message)
        return f'{{"role":"{_role(message)}","content":[{blocks}' if blocks else ""

    def following(self, message: Message, previous: Message) -> str:
        blocks = _blocks_json(message)
        if not blocks:
            return ""
        if _role(message) == _role(previous):
            return "," + blocks
        return f']}},{{"role":"{_role(message)}","content":[{blocks}'

    def closing(self) -> str:
        return "]}"


def _role(message: Message) -> str:
    return "assistant" if message.role == "assistant" else "user"


def _blocks_json(message: Message) -> str:
    """The message's content blocks as comma-separated JSON ("" for none, or a system message)."""
    if message.role == "system":
        return ""
    return ",".join(_ENCODER.encode(block) for block in _content_blocks(message))


def messages_to_anthropic(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """User and assistant turns as content blocks; tool results become user `tool_result` blocks.

    The API wants roles to alternate, so consecutive messages of the same role (several tool
    results, or a tool result followed by the user's next words) are merged into one.
    """
    merged: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _content_blocks(message)
        if not blocks:
            continue  # the API refuses empty content
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": role, "content": blocks})
    return merged


def _content_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content or "",
        }
        if message.is_error:
            result["is_error"] = True
        return [result]
    blocks: list[dict[str, Any]] = []
    if message.content and not message.content.isspace():
        # (the API refuses a text block of only white space: a reply cut off after "\n\n" would
        # leave every later request of the session refused)
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def tool_choice_to_anthropic(choice: ToolChoice) -> dict[str, Any]:
    """`auto` -> auto, `required` -> any, `none` -> none, a forced tool -> tool."""
    if isinstance(choice, ForceTool):
        return {"type": "tool", "name": choice.name}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}


@dataclass
class _ToolBlock:
    ordinal: int
    id: str
    name: str
    json: str = ""


class AnthropicStreamDecoder:
    """Decodes message_start, content_block_*, message_delta, message_stop, ping and error events."""

    def __init__(self, provider: str):
        self.provider = provider
        self._tool_blocks: dict[int, _ToolBlock] = {}
        #: Input token counts by kind (input, cache creation, cache read) and the output count,
        #: each as the latest event that carried it said (`message_delta` may correct
        #: `message_start`, as the official SDK reads it).
        self._usage: dict[str, int] = {}
        self._finish: FinishReason | None = None
        self._done = False

    def feed(self, event: SseEvent) -> list[StreamChunk]:
        """Chunks for one event; `message_stop` ends the reply."""
        if self._done or not event.data.strip():
            return []
        try:
            data = json_text.loads(event.data)
            return self._event(str(data.get("type") or event.event), data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StreamError(
                f"malformed chunk from {self.provider}: {event.data[:200]}", provider=self.provider
            ) from exc

    @property
    def answered(self) -> bool:
        """`message_delta` has brought the stop reason (and the final usage)."""
        return self._finish is not None

    def end(self) -> list[StreamChunk]:
        """The body ended before `message_stop`: fine after the stop reason, cut short otherwise."""
        if self._done:
            return []
        if self._finish is None:
            raise TransientStreamError(
                f"the stream from {self.provider} ended before the reply was complete", provider=self.provider
            )
        return self._final()

    def _event(self, kind: str, data: dict[str, Any]) -> list[StreamChunk]:
        if kind == "message_start":
            self._read_usage(data["message"].get("usage"))
            return []
        if kind == "content_block_start":
            return self._block_start(int(data["index"]), data["content_block"])
        if kind == "content_block_delta":
            return self._block_delta(int(data["index"]), data["delta"])
        if kind == "content_block_stop":
            return self._block_stop(int(data["index"]))
        if kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish = _STOP_REASONS.get(reason, "stop")
            self._read_usage(data.get("usage"))
            return []
        if kind == "message_stop":
            return self._final()
        if kind == "error":
            error = data.get("error") or {}
            error_type = str(error.get("type", "error"))
            failure = TransientStreamError if error_type in _TRANSIENT_ERRORS else StreamError
            raise failure(
                f"{self.provider} reported an error mid-stream: {error_type}: {error.get('message', '')}",
                provider=self.provider,
            )
        return []  # ping, and event types newer than this code

    def _final(self) -> list[StreamChunk]:
        self._done = True
        usage = self._usage
        input_tokens = sum(usage.get(key, 0) for key in _INPUT_TOKEN_KEYS)
        return [Usage(input_tokens, usage.get("output_tokens", 0)), Finish(self._finish or "stop")]

    def _read_usage(self, usage: Any) -> None:
        # Proxies and some models send `input_tokens: 0` at message_start and the real count in
        # message_delta: a count that is present (not null) replaces the earlier one.
        if not isinstance(usage, dict):
            return
        for key in (*_INPUT_TOKEN_KEYS, "output_tokens"):
            if usage.get(key) is not None:
                self._usage[key] = int(usage[key])

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamChunk]:
        if block["type"] == "text":
            return [TextDelta(block["text"])] if block.get("text") else []
        if block["type"] != "tool_use":
            return []  # thinking and other block types are not part of the reply we pass on
        tool = _ToolBlock(len(self._tool_blocks), str(block["id"]), str(block["name"]))
        if block.get("input"):
            tool.json = json.dumps(block["input"])
        self._tool_blocks[index] = tool
        return [ToolCallDelta(tool.ordinal, tool.id, tool.name, tool.json)]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        if delta["type"] == "text_delta":
            return [TextDelta(str(delta["text"]))] if delta["text"] else []
        if delta["type"] == "input_json_delta":
            tool = self._tool_blocks[index]
            fragment = str(delta["partial_json"])
            tool.json += fragment
            return [ToolCallDelta(tool.ordinal, None, None, fragment)]
        return []

    def _block_stop(self, index: int) -> list[StreamChunk]:
        tool = self._tool_blocks.get(index)
        if tool is None:
            return []
        return [ToolCallComplete(ToolCall.from_json_arguments(tool.id, tool.name, tool.json))]
