"""Server-sent events as a client reads them: `id:`, `event:`, `data:` fields and `:` comments.

Follows the WHATWG event-stream rules that matter to Duragent's server: fields split at the
first colon (one optional space after it), multi-line `data:` joined with newlines, a blank
line dispatches, `id:` persists until changed, comments (keep-alives) are reported separately
so a caller can tell a quiet stream from a dead one.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, NamedTuple

#: The comment `POST /stream` sends first when its message waits behind other turns
#: (`duragent.server.routes.sessions.QUEUED_COMMENT`).
_QUEUED = re.compile(r"queued behind (\d+) turn")
#: The comment `POST /stream` sends when a turn ahead of its message asks for an approval
#: (`duragent.server.routes.sessions.BEHIND_APPROVAL_COMMENT`).
_BEHIND_APPROVAL = re.compile(r"queued behind an approval of call (\S+)")

#: The event a client's `stream` starts with when its message waits behind other turns (data:
#: `position`, how many); the server says so in a comment, as only Rust's event names are sent.
QUEUED_EVENT = "queued"
#: The event a client's `stream` gives when a turn ahead of its message asks a person (data:
#: `call_id`): the message waits for that decision, which this stream does not take.
BEHIND_APPROVAL_EVENT = "queued_behind_approval"


class SseMessage(NamedTuple):
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


def queued_behind(message: SseMessage) -> int | None:
    """How many turns run before this stream's message, when `message` is the comment saying so."""
    found = _QUEUED.match(message.comment or "")
    return int(found.group(1)) if found else None


def comment_event(message: SseMessage) -> tuple[str, dict[str, Any]] | None:
    """The client event a `/stream` comment stands for (`QUEUED_EVENT`, `BEHIND_APPROVAL_EVENT`),
    or None for any other comment (a keep-alive)."""
    if (ahead := queued_behind(message)) is not None:
        return QUEUED_EVENT, {"position": ahead}
    found = _BEHIND_APPROVAL.match(message.comment or "")
    return (BEHIND_APPROVAL_EVENT, {"call_id": found.group(1)}) if found else None


class SseParser:
    """Incremental parser: feed it bytes as they arrive, take the complete messages out."""

    def __init__(self, last_event_id: str | None = None):
        self.last_event_id = last_event_id
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self._pending_bytes = b""

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
        buffer = self._buffer + text
        messages: list[SseMessage] = []
        # Lines are cut out with str.find from a moving start, and the rest kept once at the
        # end: a large chunk (a long replay) costs its length, not its length times its lines.
        start, length = 0, len(buffer)
        while start < length:
            newline = buffer.find("\n", start)
            carriage = buffer.find("\r", start, length if newline == -1 else newline)
            if carriage != -1:
                if carriage + 1 == length:
                    break  # wait: the next chunk may start with "\n"
                end, start_next = carriage, carriage + (2 if buffer[carriage + 1] == "\n" else 1)
            elif newline != -1:
                end, start_next = newline, newline + 1
            else:
                break
            message = self._line(buffer[start:end])
            start = start_next
            if message is not None:
                messages.append(message)
        self._buffer = buffer[start:]
        return messages

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
