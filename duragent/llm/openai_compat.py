"""The OpenAI Chat Completions wire format, spoken by OpenAI, OpenRouter, Ollama, vLLM, LM Studio..."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from duragent import json_text
from duragent.ids import new_id
from duragent.llm.encoded import EncodedConversations, EncodedTools, leading_system
from duragent.llm.errors import ProviderError, StreamError, TransientStreamError
from duragent.llm.http_provider import HttpProvider, StreamDecoder, Timeouts
from duragent.llm.retry import RetryPolicy, is_retryable_status
from duragent.llm.sse import SseEvent
from duragent.llm.tool_format import tool_to_openai
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

logger = logging.getLogger(__name__)

#: As json.dumps with compact separators (non-ASCII escaped), built once: every request carries
#: the whole history, and the spaces after "," and ":" were ~5% of a long session's body.
_ENCODER = json.JSONEncoder(separators=(",", ":"))

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "error",
}


#: System prompts whose encoded text a provider keeps (roughly the agents it serves; a prompt
#: changes with the day and the agent's memory, not between most turns).
_SYSTEM_TEXTS = 4

#: What a server refusing `stream_options` names in its error.
_NAMES_USAGE_OPTION = re.compile(r"stream_options|include_usage")


class OpenAICompatProvider(HttpProvider):
    """Streams `POST {base_url}/chat/completions` replies."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        provider_name: str = "openai",
        api_key_env: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        max_tokens_field: str = "max_tokens",
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
        # OpenAI itself wants `max_completion_tokens` (reasoning models refuse `max_tokens`);
        # most compatible servers only know `max_tokens`.
        self.max_tokens_field = max_tokens_field
        #: Whether requests ask for usage at the end of the stream (`stream_options`); cleared
        #: when the server refuses the option (`drop_refused_option`).
        self.usage_in_stream = True
        self._conversations = EncodedConversations(_OpenAIMessages())
        self._tools = EncodedTools(lambda tools: _ENCODER.encode([tool_to_openai(tool) for tool in tools]))
        self._system_texts: dict[tuple[Message, ...], str] = {}

    @property
    def endpoint(self) -> str:
        """`{base_url}/chat/completions`."""
        return f"{self.base_url}/chat/completions"

    def auth_headers(self) -> dict[str, str]:
        """A Bearer token when there is a key."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def build_payload(self, request: LLMRequest) -> dict[str, Any]:
        """The chat completions body: streaming, with usage in the last chunk."""
        payload = {"messages": [message_to_openai(message) for message in request.messages]}
        return payload | self._options(request)

    def encode_body(self, request: LLMRequest) -> bytes:
        """`build_payload` as JSON; the history's messages are encoded once per conversation
        (`duragent.llm.encoded`), the system prompt (date, memory) when it changed."""
        messages = request.messages
        lead = leading_system(messages)
        system = self._system_text(tuple(messages[:lead]))
        options = self._options(request, with_tools=False)
        tools = f'"tools":{self._tools.text(request.tools)},' if request.tools else ""
        return self._conversations.body(
            messages[lead:],
            ('{"messages":[' + system).encode(),
            ("]," + tools + _ENCODER.encode(options)[1:]).encode(),
            separator=b"," if lead else b"",
        )

    def _system_text(self, system: tuple[Message, ...]) -> str:
        """The leading system messages as they read in the messages array; the last few prompts'
        text is kept (found by equality: a prompt is a few KB, encoded ten times slower)."""
        text = self._system_texts.get(system)
        if text is None:
            if len(self._system_texts) >= _SYSTEM_TEXTS:
                self._system_texts.clear()
            text = ",".join(_ENCODER.encode(message_to_openai(message)) for message in system)
            self._system_texts[system] = text
        return text

    def _options(self, request: LLMRequest, *, with_tools: bool = True) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": request.model, "stream": True}
        if self.usage_in_stream:
            payload["stream_options"] = {"include_usage": True}
        if request.tools:
            if with_tools:
                payload["tools"] = [tool_to_openai(tool) for tool in request.tools]
            if request.tool_choice is not None:
                payload["tool_choice"] = tool_choice_to_openai(request.tool_choice)
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            payload[self.max_tokens_field] = request.max_output_tokens
        return payload

    def new_decoder(self) -> StreamDecoder:
        """A decoder for one chat completions SSE stream."""
        return OpenAIStreamDecoder(self.name)

    def drop_refused_option(self, error: ProviderError) -> bool:
        """Stop asking for usage in the stream when the server refuses `stream_options` (Mistral's
        API, Azure or Bedrock behind some proxies): its replies then carry no token counts."""
        refused = error.status in (400, 422) and _NAMES_USAGE_OPTION.search(str(error)) is not None
        if not (refused and self.usage_in_stream):
            return False
        self.usage_in_stream = False
        logger.warning(
            "%s; asking %s again without stream_options (replies will carry no token counts)",
            error,
            self.name,
        )
        return True


class _OpenAIMessages:
    """One JSON object per message, comma-separated (`EncodedConversations`)."""

    def opening(self, message: Message) -> str:
        return _ENCODER.encode(message_to_openai(message))

    def following(self, message: Message, previous: Message) -> str:
        return "," + _ENCODER.encode(message_to_openai(message))

    def closing(self) -> str:
        return ""


def message_to_openai(message: Message) -> dict[str, Any]:
    """One message in chat completions form."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content or ""}
    result: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.role == "assistant" and message.tool_calls:
        result["content"] = message.content or None
        result["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.unparsed_arguments or json.dumps(call.arguments),
                },
            }
            for call in message.tool_calls
        ]
    if message.name and message.role in ("user", "system"):
        result["name"] = message.name
    return result


def tool_choice_to_openai(choice: ToolChoice) -> str | dict[str, Any]:
    """`auto`/`none`/`required` as is; a forced tool as a `function` object."""
    if isinstance(choice, ForceTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


@dataclass
class _PartialCall:
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    completed: bool = False


class OpenAIStreamDecoder:
    """Decodes `chat.completion.chunk` events; tool calls are assembled by their `index`."""

    def __init__(self, provider: str):
        self.provider = provider
        self._calls: dict[int, _PartialCall] = {}
        #: The server's index -> the call its pieces now go to, for an index it reused.
        self._renumbered: dict[int, int] = {}
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._done = False

    def feed(self, event: SseEvent) -> list[StreamChunk]:
        """Chunks for one `data:` event; `[DONE]` ends the reply."""
        data = event.data.strip()
        if self._done or not data:
            return []
        if data == "[DONE]":
            return self._final()
        try:
            chunk = json_text.loads(data)
            return self._chunk(chunk)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StreamError(
                f"malformed chunk from {self.provider}: {data[:200]}", provider=self.provider
            ) from exc

    @property
    def answered(self) -> bool:
        """A choice's finish_reason has arrived."""
        return self._finish is not None

    def end(self) -> list[StreamChunk]:
        """The body ended without `[DONE]`: fine after a finish reason, a broken reply otherwise."""
        if self._done:
            return []
        if self._finish is None:
            raise TransientStreamError(
                f"the stream from {self.provider} ended before the reply was complete", provider=self.provider
            )
        return self._final()

    def _chunk(self, chunk: dict[str, Any]) -> list[StreamChunk]:
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            failure = TransientStreamError if _is_transient(error) else StreamError
            raise failure(f"{self.provider} reported an error mid-stream: {message}", provider=self.provider)
        usage = chunk.get("usage")
        if usage:
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        out: list[StreamChunk] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # we never ask for n > 1
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                out.append(TextDelta(str(content)))
            calls = delta.get("tool_calls")
            if calls:
                out.extend(self._tool_call_delta(call_delta) for call_delta in calls)
            reason = choice.get("finish_reason")
            if reason:
                self._finish = _FINISH_REASONS.get(reason, "stop")
                out.extend(self._complete_calls())
        return out

    def _tool_call_delta(self, call_delta: dict[str, Any]) -> ToolCallDelta:
        sent_index = int(call_delta.get("index", len(self._calls)))
        index = self._renumbered.get(sent_index, sent_index)
        function = call_delta.get("function") or {}
        partial = self._calls.setdefault(index, _PartialCall())
        call_id = call_delta.get("id")
        if call_id and partial.id and call_id != partial.id and function.get("name"):
            # A new call (its own id, its name) at an index already taken: Ollama numbers every
            # call 0. It, and the pieces that follow at that index, go to a call of its own.
            index = self._renumbered[sent_index] = max(self._calls) + 1
            partial = self._calls[index] = _PartialCall()
        if call_id:
            partial.id = str(call_id)
        if function.get("name"):
            partial.name = str(function["name"])
        arguments = function.get("arguments") or ""
        # (llama.cpp's server and TGI may send the arguments as an object, not as JSON text)
        fragment = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        partial.arguments += fragment
        return ToolCallDelta(index, call_id, function.get("name"), fragment)

    def _complete_calls(self) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if partial.completed:
                continue
            if not partial.name:
                raise StreamError(
                    f"tool call {index} from {self.provider} has no name", provider=self.provider
                )
            partial.completed = True
            # Some servers send no id: a fresh one, since ids key approvals across every session.
            call = ToolCall.from_json_arguments(partial.id or new_id("call"), partial.name, partial.arguments)
            out.append(ToolCallComplete(call))
        return out

    def _final(self) -> list[StreamChunk]:
        self._done = True
        out = self._complete_calls()
        if self._usage is not None:
            out.append(self._usage)
        reason = self._finish or "stop"
        # Some servers (Ollama among them) say "stop" even when the reply is tool calls.
        if self._calls and reason == "stop":
            reason = "tool_calls"
        out.append(Finish(reason))
        return out


def _is_transient(error: Any) -> bool:
    """Whether an error event stands for a failure worth another attempt: a 5xx or 429 `code`
    (OpenRouter, LiteLLM relaying an upstream's), or Anthropic's overload passed through a proxy."""
    if not isinstance(error, dict):
        return False
    code = str(error.get("code") or "")
    return (code.isdigit() and is_retryable_status(int(code))) or error.get("type") == "overloaded_error"
