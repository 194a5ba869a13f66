"""A real HTTP server on 127.0.0.1 that answers like OpenAI and Anthropic, from a script.

    async with FakeLLMServer() as server:
        server.enqueue(text("Hello there", chunks=3), tool_calls([("memory", {"action": "recall"})]))
        provider = OpenAICompatProvider(server.url, "test-key")
        ...
        assert server.requests[0].body["stream"] is True

It speaks the OpenAI chat completions format on `/v1/chat/completions` and the Anthropic
Messages format on `/v1/messages`, streaming (SSE) or not, as the request asks. Each request
takes the next scripted response from one queue; when the queue is empty the default
(echo the last user message, unless configured otherwise) answers. Every request is recorded,
and so is every client that hung up mid-reply.

Run it by hand: `python -m duragent.testing.fake_llm --port 8901 --script replies.yaml`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from duragent.errors import ConfigError
from duragent.testing.fake_server import FakeServer

Api = Literal["openai", "anthropic"]
ResponseKind = Literal[
    "text", "tool_calls", "echo", "error", "broken_stream", "malformed", "stream_error", "raw"
]
_FINISH = {
    "openai": {"stop": "stop", "tool_calls": "tool_calls", "length": "length", "refused": "content_filter"},
    "anthropic": {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "refused": "refusal"},
}
#: Responses that start streaming and then stop being a well-formed reply.
_INTERRUPTED = ("broken_stream", "malformed", "stream_error")
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """A tool call the fake model makes."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None
    #: The arguments' text as streamed, instead of `arguments` as JSON: a model that writes
    #: something else than a JSON object (`'{"command": "ls'`). Streamed replies only.
    raw_arguments: str | None = None

    def arguments_text(self) -> str:
        """What the model streams as the call's arguments."""
        return self.raw_arguments if self.raw_arguments is not None else json.dumps(self.arguments)


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """One scripted answer; build it with `text`, `tool_calls`, `error`, `broken_stream`, ..."""

    kind: ResponseKind
    text: str = ""
    chunks: int = 1
    calls: tuple[ScriptedCall, ...] = ()
    argument_chunks: int = 2
    status: int = 200
    body: str | dict[str, Any] | None = None
    retry_after: str | None = None
    after_chunks: int = 0
    delay: float = 0.0
    chunk_delay: float = 0.0
    usage: tuple[int, int] | None = None
    finish: Literal["stop", "tool_calls", "length", "refused"] = "stop"
    #: OpenAI: stream parallel calls' argument pieces interleaved by index (the real service sends
    #: one call after the other; some compatible servers interleave).
    interleave: bool = False
    #: Anthropic: `input_tokens: 0` at message_start and the real count in message_delta, as
    #: proxies such as LiteLLM send it.
    late_input_usage: bool = False
    #: Extra response headers (e.g. `retry-after-ms` on an error).
    headers: tuple[tuple[str, str], ...] = ()
    #: Seconds between a streamed reply's last event and the end of its body (the chunked
    #: encoding's last chunk), which a client then reads separately.
    end_delay: float = 0.0
    #: `raw`: the body's bytes as written, one write each, and the response's content type.
    writes: tuple[bytes, ...] = ()
    content_type: str = "text/event-stream"
    #: `raw`: drop the connection after the writes instead of ending the body.
    reset: bool = False
    #: Answer only once this is set (`held`): a reply that takes as long as the test needs.
    release: threading.Event | None = None


def text(
    content: str,
    chunks: int = 1,
    *,
    chunk_delay: float = 0.0,
    delay: float = 0.0,
    usage: tuple[int, int] | None = None,
    finish: Literal["stop", "length", "refused"] = "stop",
    late_input_usage: bool = False,
    end_delay: float = 0.0,
) -> ScriptedResponse:
    """Reply with `content`, streamed in `chunks` pieces of near-equal length.

    `finish="length"` ends it as cut off by the token limit (`length` / `max_tokens`),
    `finish="refused"` as stopped by a safety check (`content_filter` / `refusal`);
    `end_delay` holds the body's end back after the reply's last event.
    """
    return ScriptedResponse(
        "text",
        text=content,
        chunks=chunks,
        chunk_delay=chunk_delay,
        delay=delay,
        usage=usage,
        finish=finish,
        late_input_usage=late_input_usage,
        end_delay=end_delay,
    )


def tool_calls(
    calls: Iterable[tuple[str, dict[str, Any]] | ScriptedCall],
    *,
    text: str = "",
    argument_chunks: int = 2,
    chunk_delay: float = 0.0,
    delay: float = 0.0,
    usage: tuple[int, int] | None = None,
    interleave: bool = False,
    late_input_usage: bool = False,
) -> ScriptedResponse:
    """Call these tools (several = parallel calls), each call's arguments streamed in pieces.

    Parallel calls stream one after the other, as the real APIs send them; `interleave=True`
    makes the OpenAI format mix their argument pieces by `index` (some compatible servers do).
    """
    scripted = tuple(call if isinstance(call, ScriptedCall) else ScriptedCall(*call) for call in calls)
    return ScriptedResponse(
        "tool_calls",
        text=text,
        calls=scripted,
        argument_chunks=argument_chunks,
        chunk_delay=chunk_delay,
        delay=delay,
        usage=usage,
        finish="tool_calls",
        interleave=interleave,
        late_input_usage=late_input_usage,
    )


def echo(chunks: int = 1) -> ScriptedResponse:
    """Reply `echo: <the last user message>` (the default when the queue is empty)."""
    return ScriptedResponse("echo", chunks=chunks)


def error(
    status: int,
    body: str | dict[str, Any] | None = None,
    *,
    retry_after: float | str | None = None,
    delay: float = 0.0,
    headers: Mapping[str, str] | None = None,
) -> ScriptedResponse:
    """Answer with an HTTP error; a string body becomes the API's error object's message.

    `retry_after` sets `Retry-After`; `headers` adds others, e.g. `{"retry-after-ms": "1500"}` or
    the proxy form `{"llm_provider-retry-after": "2"}`.
    """
    header = (
        None
        if retry_after is None
        else (f"{retry_after:g}" if isinstance(retry_after, float) else str(retry_after))
    )
    return ScriptedResponse(
        "error",
        status=status,
        body=body,
        retry_after=header,
        delay=delay,
        headers=tuple((headers or {}).items()),
    )


def delay(seconds: float, then: ScriptedResponse | None = None) -> ScriptedResponse:
    """Wait `seconds` before answering with `then` (default: echo)."""
    return replace(then or echo(), delay=seconds)


def held(release: threading.Event, then: ScriptedResponse | None = None) -> ScriptedResponse:
    """Answer with `then` (default: echo) only once `release` is set: a slow reply that ends when
    the test has seen what it waits for, not after a fixed time. A `threading.Event`, so a test
    can release a fake that runs on another thread's event loop."""
    return replace(then or echo(), release=release)


def broken_stream(
    after_chunks: int = 1, content: str = "this reply breaks off here", chunks: int = 4
) -> ScriptedResponse:
    """Start streaming `content` and drop the connection after `after_chunks` pieces."""
    return ScriptedResponse("broken_stream", text=content, chunks=chunks, after_chunks=after_chunks)


def malformed(after_chunks: int = 0) -> ScriptedResponse:
    """Send `after_chunks` good pieces, then an event whose JSON is cut off."""
    return ScriptedResponse(
        "malformed", text="fine so far", chunks=max(after_chunks, 1), after_chunks=after_chunks
    )


def stream_error(message: str = "Overloaded", after_chunks: int = 0) -> ScriptedResponse:
    """Send `after_chunks` good pieces, then the API's in-stream error event."""
    return ScriptedResponse(
        "stream_error",
        text="fine so far",
        chunks=max(after_chunks, 1),
        body=message,
        after_chunks=after_chunks,
    )


def raw(
    *writes: bytes | str,
    status: int = 200,
    content_type: str = "text/event-stream",
    headers: Mapping[str, str] | None = None,
    reset: bool = False,
) -> ScriptedResponse:
    """Answer with exactly these bytes, one write each (wire shapes the other responses do not
    make: another server's chunks, an HTML page from a proxy, a byte sequence split mid-character).
    `reset` drops the connection after them, before the body's end (a proxy cutting it).
    """
    return ScriptedResponse(
        "raw",
        status=status,
        writes=tuple(w.encode() if isinstance(w, str) else w for w in writes),
        content_type=content_type,
        headers=tuple((headers or {}).items()),
        reset=reset,
    )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the server received: which API, the path, headers, and the parsed JSON body."""

    api: Api
    path: str
    headers: Mapping[str, str]
    body: Any
    #: The client's address and port: which connection the request came on.
    peer: str = ""

    @property
    def messages(self) -> list[Any]:
        """The body's `messages` list (empty when there is none)."""
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []


@dataclass
class _Piece:
    """One content event of a reply, before it is written in an API's format."""

    kind: Literal["text", "tool_start", "tool_args"]
    index: int = 0
    text: str = ""
    call: ScriptedCall | None = None
    call_id: str = ""


@dataclass
class _Reply:
    """A scripted response resolved against the request it answers."""

    response: ScriptedResponse
    model: str
    text: str
    input_tokens: int
    call_ids: list[str] = field(default_factory=list)

    @property
    def output_tokens(self) -> int:
        if self.response.usage is not None:
            return self.response.usage[1]
        arguments = " ".join(json.dumps(call.arguments) for call in self.response.calls)
        return len(self.text.split()) + len(arguments.split())


class FakeLLMServer(FakeServer):
    """An aiohttp server speaking the OpenAI and Anthropic streaming formats from a script."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: ScriptedResponse | None = None,
        timeline: Path | None = None,
        record: Path | None = None,
        keep_requests: bool = True,
    ):
        """`keep_requests=False`: keep no parsed request in `requests` (in a process of its own,
        nobody reads them, and a long benchmark's would fill the fake's memory and slow it down)."""
        super().__init__(host=host, port=port)
        self.default = default or echo()
        #: Answers a request by what it asks when no scripted response is queued (None: `default`).
        #: For tests whose requests come in an order they do not control (a server restarted
        #: mid-turn asks again).
        self.responder: Callable[[RecordedRequest], ScriptedResponse | None] | None = None
        #: Where to append, per streamed reply, when its first piece was due (`--timeline`).
        self.timeline = timeline
        #: Where to append every request body as received (`--record`, see `read_recorded`).
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.keep_requests = keep_requests
        self.disconnects: list[RecordedRequest] = []
        self._queue: deque[ScriptedResponse] = deque()
        self._stopping = False
        self._call_counter = 0

    @property
    def url(self) -> str:
        """Base URL for providers' `base_url` (`http://127.0.0.1:PORT/v1`; works for both APIs)."""
        return f"{self.root_url}/v1"

    def enqueue(self, *responses: ScriptedResponse) -> None:
        """Answer the next requests with these responses, in order."""
        self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """Scripted responses not yet used."""
        return len(self._queue)

    async def wait_for_disconnect(self, within: float = 5.0) -> RecordedRequest:
        """The first request whose client hung up mid-reply, waiting up to `within` seconds."""
        return await self.wait_until(lambda: self.disconnects[0] if self.disconnects else None, within)

    def add_routes(self, app: web.Application) -> None:
        """OpenAI's chat completions and Anthropic's messages (a client hanging up cancels its
        handler, which is how a disconnect is seen)."""
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        self._stopping = True
        await super().stop()

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        raw = await request.read()
        if self.record is not None:
            with self.record.open("ab") as out:
                out.write(b"%d\n%s\n" % (len(raw), raw))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        recorded = RecordedRequest(
            api, request.path, dict(request.headers), body, f"{peer[0]}:{peer[1]}" if peer else ""
        )
        if self.keep_requests:
            self.requests.append(recorded)
        self.notify()
        if self._queue:
            response = self._queue.popleft()
        else:
            response = (self.responder(recorded) if self.responder else None) or self.default
        try:
            if response.delay:
                await asyncio.sleep(response.delay)
            if response.release is not None:
                await _released(response.release)
            if response.kind == "error":
                return _error_response(api, response)
            if response.kind == "raw":
                return await _raw_response(request, response)
            reply = self._resolve(response, recorded)
            if not (isinstance(body, dict) and body.get("stream") is True):
                return web.json_response(_whole_reply(api, reply))
            return await self._stream(request, api, reply, _last_user_text(recorded.messages))
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._stopping:
                self.disconnects.append(recorded)
                self.notify()
            raise

    def _resolve(self, response: ScriptedResponse, recorded: RecordedRequest) -> _Reply:
        content = response.text
        if response.kind == "echo":
            content = f"echo: {_last_user_text(recorded.messages)}"
        model = (
            str(recorded.body.get("model", "fake-model")) if isinstance(recorded.body, dict) else "fake-model"
        )
        input_tokens = response.usage[0] if response.usage else _count_words(recorded.messages)
        reply = _Reply(response, model, content, input_tokens)
        for call in response.calls:
            self._call_counter += 1
            prefix = "call" if recorded.api == "openai" else "toolu"
            reply.call_ids.append(call.id or f"{prefix}_fake{self._call_counter}")
        return reply

    async def _stream(self, request: web.Request, api: Api, reply: _Reply, prompt: str) -> web.StreamResponse:
        stream = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await stream.prepare(request)
        writer = _OpenAIWriter(reply) if api == "openai" else _AnthropicWriter(reply)
        await stream.write(writer.opening())
        response = reply.response
        pieces = _pieces(reply, interleave=api == "openai" and response.interleave)
        if not response.chunk_delay and response.kind not in _INTERRUPTED:
            # An instant model: several events per write, as a real server's socket buffer would
            # deliver them, so the fake costs little per token and benchmarks measure the client.
            for start in range(0, len(pieces), _INSTANT_PIECES_PER_WRITE):
                batch = pieces[start : start + _INSTANT_PIECES_PER_WRITE]
                await stream.write(b"".join(writer.piece(piece) for piece in batch))
            pieces = []
        # Pieces are due on a fixed schedule (not a sleep after each write), so a busy fake does
        # not slow its own pace and timing benchmarks see only the client's delays.
        first_piece_at = asyncio.get_running_loop().time()
        if self.timeline is not None:
            self._record_timing(prompt, first_piece_at, response.chunk_delay)
        for count, piece in enumerate(pieces):
            if response.kind in _INTERRUPTED and count == response.after_chunks:
                return await self._interrupt(request, stream, writer, response)
            if response.chunk_delay and count:
                due = first_piece_at + count * response.chunk_delay
                await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
            await stream.write(writer.piece(piece))
        if response.kind in _INTERRUPTED:
            return await self._interrupt(request, stream, writer, response)
        await stream.write(writer.closing())
        if response.end_delay:
            await asyncio.sleep(response.end_delay)
        await stream.write_eof()
        return stream

    def _record_timing(self, prompt: str, first_piece_at: float, chunk_delay: float) -> None:
        """One JSON line: the prompt and when its reply's first piece was due, on the monotonic
        clock every process on the machine shares (the event loop's clock is `time.monotonic`)."""
        assert self.timeline is not None
        line = json.dumps({"prompt": prompt, "first_piece_at": first_piece_at, "chunk_delay": chunk_delay})
        with self.timeline.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    async def _interrupt(
        self, request: web.Request, stream: web.StreamResponse, writer: _Writer, response: ScriptedResponse
    ) -> web.StreamResponse:
        if response.kind == "broken_stream":
            if request.transport is not None:
                request.transport.abort()  # no final chunk: the client sees a truncated body
            return stream
        if response.kind == "malformed":
            await stream.write(writer.malformed())
        else:
            await stream.write(writer.stream_error(str(response.body)))
        await stream.write_eof()
        return stream


async def _released(release: threading.Event) -> None:
    """Return once `release` is set (from any thread). Waited for in a worker thread, a short
    wait at a time: a reply cancelled while held (its client hung up, the fake stopped) leaves
    no thread blocked for good behind it."""
    while not await asyncio.to_thread(release.wait, _RELEASE_WAIT_AT_A_TIME):
        pass


#: Longest one wait of a held reply's worker thread (seconds).
_RELEASE_WAIT_AT_A_TIME = 0.2
#: Events an instant reply sends per write.
_INSTANT_PIECES_PER_WRITE = 32


def _pieces(reply: _Reply, *, interleave: bool) -> list[_Piece]:
    """The reply's content events; parallel calls one after the other unless `interleave`."""
    pieces = [_Piece("text", text=part) for part in _split(reply.text, reply.response.chunks)]
    calls = reply.response.calls
    fragments = [_split(call.arguments_text(), reply.response.argument_chunks) for call in calls]
    starts = [_Piece("tool_start", i, call=call, call_id=reply.call_ids[i]) for i, call in enumerate(calls)]
    if interleave:
        pieces.extend(starts)
        for round_ in range(max((len(f) for f in fragments), default=0)):
            pieces.extend(
                _Piece("tool_args", i, f[round_]) for i, f in enumerate(fragments) if round_ < len(f)
            )
    else:
        for i, start in enumerate(starts):
            pieces.append(start)
            pieces.extend(_Piece("tool_args", i, fragment) for fragment in fragments[i])
    return pieces


def _split(content: str, parts: int) -> list[str]:
    if not content:
        return []
    parts = max(1, min(parts, len(content)))
    size, extra = divmod(len(content), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(content[start:end])
        start = end
    return out


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


class _Writer(ABC):
    """Writes a reply's events in one API's SSE format."""

    def __init__(self, reply: _Reply):
        self.reply = reply

    @abstractmethod
    def opening(self) -> bytes:
        """Events before the first content chunk."""

    @abstractmethod
    def piece(self, piece: _Piece) -> bytes:
        """One content chunk."""

    @abstractmethod
    def closing(self) -> bytes:
        """Finish reason, usage and the end-of-stream marker."""

    @abstractmethod
    def malformed(self) -> bytes:
        """An event whose JSON is cut off."""

    @abstractmethod
    def stream_error(self, message: str) -> bytes:
        """The API's in-stream error event."""


class _OpenAIWriter(_Writer):
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.reply.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    def opening(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def piece(self, piece: _Piece) -> bytes:
        if piece.kind == "text":
            return self._chunk({"content": piece.text})
        if piece.kind == "tool_start" and piece.call is not None:
            function = {"name": piece.call.name, "arguments": ""}
            return self._chunk(
                {
                    "tool_calls": [
                        {"index": piece.index, "id": piece.call_id, "type": "function", "function": function}
                    ]
                }
            )
        return self._chunk({"tool_calls": [{"index": piece.index, "function": {"arguments": piece.text}}]})

    def closing(self) -> bytes:
        usage = {
            "prompt_tokens": self.reply.input_tokens,
            "completion_tokens": self.reply.output_tokens,
            "total_tokens": self.reply.input_tokens + self.reply.output_tokens,
        }
        finish = self._chunk({}, _FINISH["openai"][self.reply.response.finish])
        usage_chunk = _sse(
            {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [], "usage": usage}
        )
        return finish + usage_chunk + _sse("[DONE]")

    def malformed(self) -> bytes:
        return b'data: {"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"content": \n\n'

    def stream_error(self, message: str) -> bytes:
        return _sse({"error": {"message": message, "type": "server_error", "code": 502}})


class _AnthropicWriter(_Writer):
    def __init__(self, reply: _Reply):
        super().__init__(reply)
        self._block = -1
        self._open = False
        self._in_text = False

    def _start_block(self, block: dict[str, Any]) -> bytes:
        closing = self._stop_block()
        self._block += 1
        self._open = True
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        return closing + _sse(start, "content_block_start")

    def _stop_block(self) -> bytes:
        if not self._open:
            return b""
        self._open = False
        return _sse({"type": "content_block_stop", "index": self._block}, "content_block_stop")

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _sse(
            {"type": "content_block_delta", "index": self._block, "delta": delta}, "content_block_delta"
        )

    def opening(self) -> bytes:
        late = self.reply.response.late_input_usage
        message: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.reply.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0 if late else self.reply.input_tokens, "output_tokens": 1},
        }
        return _sse({"type": "message_start", "message": message}, "message_start") + _sse(
            {"type": "ping"}, "ping"
        )

    def piece(self, piece: _Piece) -> bytes:
        if piece.kind == "text":
            opening = b""
            if not self._in_text:
                opening = self._start_block({"type": "text", "text": ""})
                self._in_text = True
            return opening + self._delta({"type": "text_delta", "text": piece.text})
        if piece.kind == "tool_start" and piece.call is not None:
            self._in_text = False
            block = {"type": "tool_use", "id": piece.call_id, "name": piece.call.name, "input": {}}
            return self._start_block(block)
        return self._delta({"type": "input_json_delta", "partial_json": piece.text})

    def closing(self) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _FINISH["anthropic"][self.reply.response.finish], "stop_sequence": None},
            "usage": {"output_tokens": self.reply.output_tokens},
        }
        if self.reply.response.late_input_usage:
            delta["usage"] = {
                "input_tokens": self.reply.input_tokens,
                "output_tokens": self.reply.output_tokens,
            }
        return (
            self._stop_block() + _sse(delta, "message_delta") + _sse({"type": "message_stop"}, "message_stop")
        )

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": \n\n'

    def stream_error(self, message: str) -> bytes:
        return _sse({"type": "error", "error": {"type": "overloaded_error", "message": message}}, "error")


def _whole_reply(api: Api, reply: _Reply) -> dict[str, Any]:
    """The non-streaming body of a reply."""
    response = reply.response
    if api == "openai":
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if response.calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c, call_id in zip(response.calls, reply.call_ids, strict=True)
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": reply.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": _FINISH["openai"][response.finish]}
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        }
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend(
        {"type": "tool_use", "id": call_id, "name": c.name, "input": c.arguments}
        for c, call_id in zip(response.calls, reply.call_ids, strict=True)
    )
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": _FINISH["anthropic"][response.finish],
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _error_response(api: Api, response: ScriptedResponse) -> web.Response:
    status = response.status
    if isinstance(response.body, dict):
        body: dict[str, Any] = response.body
    else:
        message = response.body or f"fake error {status}"
        if api == "openai":
            body = {"error": {"message": message, "type": "fake_error", "code": status}}
        else:
            kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
    headers = dict(response.headers)
    if response.retry_after is not None:
        headers["Retry-After"] = response.retry_after
    return web.json_response(body, status=status, headers=headers or None)


async def _raw_response(request: web.Request, response: ScriptedResponse) -> web.StreamResponse:
    headers = {"Content-Type": response.content_type, **dict(response.headers)}
    stream = web.StreamResponse(status=response.status, headers=headers)
    await stream.prepare(request)
    for data in response.writes:
        await stream.write(data)
    if response.reset and request.transport is not None:
        request.transport.abort()  # no final chunk: the client sees a truncated body
        return stream
    await stream.write_eof()
    return stream


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            _content_text(block.get("text") or block.get("content"))
            for block in content
            if isinstance(block, dict)
        )
    return ""


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _count_words(messages: Sequence[Any]) -> int:
    return sum(len(_content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


# --- scripts: the same responses, written as YAML or JSON for `python -m duragent.testing.fake_llm`

_KINDS = ("error", "broken_stream", "malformed", "stream_error", "tool_calls", "text", "echo")
_OPTIONS = {
    "chunks",
    "chunk_delay",
    "delay",
    "usage",
    "finish",
    "body",
    "retry_after",
    "argument_chunks",
    "text",
    "interleave",
    "late_input_usage",
    "headers",
}


@dataclass(frozen=True, slots=True)
class Script:
    """Responses to serve in order, and the default once they run out."""

    responses: tuple[ScriptedResponse, ...]
    default: ScriptedResponse


def parse_script(data: Any, source: str = "<script>") -> Script:
    """A script from parsed YAML/JSON: a list of responses, or `{responses: [...], default: {...}}`."""
    if isinstance(data, list):
        data = {"responses": data}
    if not isinstance(data, dict) or set(data) - {"responses", "default"}:
        raise ConfigError(f"{source}: a script is a list of responses or a mapping with responses/default")
    items = data.get("responses") or []
    if not isinstance(items, list):
        raise ConfigError(f"{source}: responses must be a list")
    responses = tuple(parse_response(item, f"{source}: response {n}") for n, item in enumerate(items, 1))
    default = parse_response(data["default"], f"{source}: default") if data.get("default") else echo()
    return Script(responses, default)


def parse_response(item: Any, where: str) -> ScriptedResponse:
    """One scripted response, e.g. `{text: hello, chunks: 3}` or `{error: 429, retry_after: 1}`."""
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{text: hello}}, got {item!r}")
    kind = next((k for k in _KINDS if k in item), None)
    if kind is None:
        raise ConfigError(f"{where}: needs one of {', '.join(_KINDS)}")
    unknown = set(item) - _OPTIONS - {kind}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    try:
        return _response_of_kind(kind, item)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _response_of_kind(kind: str, item: dict[str, Any]) -> ScriptedResponse:
    base = _base_response(kind, item[kind], item)
    return replace(base, delay=float(item.get("delay", 0.0)), chunk_delay=float(item.get("chunk_delay", 0.0)))


def _base_response(kind: str, value: Any, item: dict[str, Any]) -> ScriptedResponse:
    usage = (int(item["usage"][0]), int(item["usage"][1])) if "usage" in item else None
    late = bool(item.get("late_input_usage", False))
    if kind == "error":
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        return error(int(value), item.get("body"), retry_after=item.get("retry_after"), headers=headers)
    if kind == "broken_stream":
        return broken_stream(
            int(value), item.get("text", "this reply breaks off here"), chunks=int(item.get("chunks", 4))
        )
    if kind == "malformed":
        return malformed(0 if value is True else int(value))
    if kind == "stream_error":
        return stream_error(str(value))
    if kind == "tool_calls":
        calls = [_scripted_call(call, index) for index, call in enumerate(value)]
        argument_chunks = int(item.get("argument_chunks", 2))
        return tool_calls(
            calls,
            text=str(item.get("text", "")),
            argument_chunks=argument_chunks,
            usage=usage,
            interleave=bool(item.get("interleave", False)),
            late_input_usage=late,
        )
    if kind == "echo":
        return echo(int(item.get("chunks", 1)))
    finish = item.get("finish", "stop")
    if finish not in ("stop", "length"):
        raise ValueError(f"finish must be stop or length, not {finish!r}")
    return text(str(value), int(item.get("chunks", 1)), usage=usage, finish=finish, late_input_usage=late)


#: What a call of `tool_calls` takes in a script.
_CALL_KEYS = frozenset({"name", "arguments", "id", "raw_arguments"})


def _scripted_call(call: Any, index: int) -> ScriptedCall:
    """One call of a scripted `tool_calls` (`{name: bash, arguments: {...}}`); `raw_arguments`
    streams text that need not be JSON, for a model that writes broken arguments."""
    if not isinstance(call, dict) or "name" not in call:
        raise ValueError(f"tool_calls[{index}] must be a mapping with a name, got {call!r}")
    unknown = set(call) - _CALL_KEYS
    if unknown:
        known = ", ".join(sorted(_CALL_KEYS))
        raise ValueError(f"tool_calls[{index}]: unknown keys {', '.join(sorted(unknown))} (known: {known})")
    raw = call.get("raw_arguments")
    return ScriptedCall(
        str(call["name"]),
        dict(call.get("arguments") or {}),
        call.get("id"),
        raw_arguments=None if raw is None else str(raw),
    )


def load_script(path: Path) -> Script:
    """Read a YAML or JSON script file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the script: {exc}") from exc
    return parse_script(data, str(path))


def read_recorded(path: str | Path, offset: int = 0) -> tuple[list[bytes], int]:
    """The request bodies `--record` wrote to `path` from byte `offset` on, and the offset after them."""
    bodies: list[bytes] = []
    with open(path, "rb") as source:
        source.seek(offset)
        while header := source.readline():
            size = int(header)
            bodies.append(source.read(size))
            source.read(1)
    return bodies, offset + sum(len(b"%d\n" % len(body)) + len(body) + 1 for body in bodies)


async def serve(
    host: str, port: int, script: Script, timeline: Path | None = None, record: Path | None = None
) -> None:
    """Run a fake LLM server until SIGINT or SIGTERM; prints its base URL once listening."""
    server = FakeLLMServer(
        host=host, port=port, default=script.default, timeline=timeline, record=record, keep_requests=False
    )
    server.enqueue(*script.responses)

    def announce() -> str:
        # Start-up objects are exempt from collection: a benchmark's timings should not include
        # the fake's full-collection pauses.
        gc.collect()
        gc.freeze()
        return f"fake LLM server listening on {server.url}"

    await server.serve_until_interrupted(announce)


def start_process(
    script: Path, *, timeline: Path | None = None, record: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`python -m duragent.testing.fake_llm --script SCRIPT` in a process of its own, so its work
    does not share an event loop or a CPU with what is measured: the process and its base URL,
    once it listens. The caller terminates it."""
    command = [sys.executable, "-m", "duragent.testing.fake_llm", "--script", str(script)]
    if timeline is not None:
        command += ["--timeline", str(timeline)]
    if record is not None:
        command += ["--record", str(record)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    banner = process.stdout.readline()
    if not banner.startswith("fake LLM server listening on "):
        process.kill()
        raise RuntimeError(f"the fake LLM did not start: {banner!r}")
    return process, banner.rsplit(" ", 1)[-1].strip()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m duragent.testing.fake_llm --port P --script FILE`."""
    parser = argparse.ArgumentParser(
        prog="python -m duragent.testing.fake_llm",
        description="A fake OpenAI/Anthropic server answering from a script, for manual end-to-end runs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--script", type=Path, help="YAML or JSON list of responses (default: echo)")
    parser.add_argument(
        "--timeline",
        type=Path,
        help="append a JSON line per streamed reply: its prompt and when its first piece was due",
    )
    parser.add_argument(
        "--record", type=Path, help="append every request body as received (a benchmark replays them)"
    )
    args = parser.parse_args(argv)
    try:
        script = load_script(args.script) if args.script else Script((), echo())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(args.host, args.port, script, args.timeline, args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
