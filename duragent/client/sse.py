"""Server-sent events as a client reads them: `id:`, `event:`, `data:` fields and `:` comments.

Follows the WHATWG event-stream rules that matter to Duragent's server: fields split at the
first colon (one optional space after it), multi-line `data:` joined with newlines, a blank
line dispatches, `id:` persists until changed, comments (keep-alives) are reported separately
so a caller can tell a quiet stream from a dead one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SseMessage:
    """One dispatched frame: an event (`event`, `data`, `id`) or a comment (`comment` set)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    comment: str | None = None

    @property
    def is_comment(self) -> bool:
        """True for `: keep-alive` style lines, which carry no event."""
        return self.comment is not None

    def json(self) -> dict[str, Any]:
        """The data parsed as a JSON object ({} when empty; wrapped as {"value": ...} when not an object)."""
        if not self.data:
            return {}
        value = json.loads(self.data)
        return value if isinstance(value, dict) else {"value": value}


@dataclass
class SseParser:
    """Incremental parser: feed it bytes as they arrive, take the complete messages out."""

    last_event_id: str | None = None
    _buffer: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _has_data: bool = False
    _pending_bytes: bytes = b""

    def feed(self, chunk: bytes) -> list[SseMessage]:
        """Messages completed by `chunk` (partial lines wait for the next chunk)."""
        raw = self._pending_bytes + chunk
        # A multi-byte character may be split across chunks: keep its head for next time.
        try:
            text = raw.decode("utf-8")
            self._pending_bytes = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(raw) - 3:
                raise
            text = raw[: exc.start].decode("utf-8")
            self._pending_bytes = raw[exc.start :]
        self._buffer += text
        messages: list[SseMessage] = []
        while True:
            line, found = self._next_line()
            if not found:
                break
            message = self._line(line)
            if message is not None:
                messages.append(message)
        return messages

    def _next_line(self) -> tuple[str, bool]:
        for index, char in enumerate(self._buffer):
            if char == "\n":
                line, self._buffer = self._buffer[:index], self._buffer[index + 1 :]
                return line, True
            if char == "\r":
                if index + 1 == len(self._buffer):
                    return "", False  # wait: the next chunk may start with "\n"
                skip = 2 if self._buffer[index + 1] == "\n" else 1
                line, self._buffer = self._buffer[:index], self._buffer[index + skip :]
                return line, True
        return "", False

    def _line(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return SseMessage(comment=line[1:].removeprefix(" "))
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "id" and "\x00" not in value:
            self.last_event_id = value
        return None

    def _dispatch(self) -> SseMessage | None:
        if not self._has_data and not self._event:
            return None
        message = SseMessage(
            event=self._event or "message", data="\n".join(self._data), id=self.last_event_id
        )
        self._event, self._data, self._has_data = "", [], False
        return message


async def read_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[SseMessage]:
    """Every message (events and comments) of a byte stream, in order."""
    parser = SseParser()
    async for chunk in chunks:
        for message in parser.feed(chunk):
            yield message
