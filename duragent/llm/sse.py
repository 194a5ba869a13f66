"""Server-sent events: turn the bytes of a `text/event-stream` body into events, incrementally."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its `event:` name (empty if none) and its `data:` lines joined by newlines."""

    event: str
    data: str


class SseParser:
    """Feeds on arbitrary byte slices; returns each event once its terminating blank line arrives.

    Splitting lines ourselves (rather than `readline`) means no line-length limit: a tool call's
    arguments can arrive as one very long `data:` line.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[SseEvent]:
        """Parse `data` and return the events it completed."""
        if b"\n" not in data:
            self._buffer += data
            return []
        # One split per chunk: slicing the buffer line by line would copy the rest of a large
        # chunk once per line (quadratic in the lines a fast model packs into one read).
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        events: list[SseEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SseEvent]:
        """Events still pending when the body ended without a final blank line."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data = "", []
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event, "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None  # a comment, used by servers as keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
