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
        end = data.rfind(b"\n")
        if end < 0:
            self._buffer += data
            return []
        # The complete lines are decoded and split at once: a newline byte is never part of a
        # UTF-8 sequence, and slicing the buffer line by line would copy the rest of a large chunk
        # once per line (quadratic in the lines a fast model packs into one read).
        text = (self._buffer + data[:end] if self._buffer else data[:end]).decode("utf-8", errors="replace")
        self._buffer = data[end + 1 :]
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        events: list[SseEvent] = []
        for line in lines:
            # Nearly every line is a `data:` line or the blank line ending an event.
            if line.startswith("data:"):
                self._data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            elif line:
                self._field(line)
            elif self._data:
                events.append(SseEvent(self._event, "\n".join(self._data)))
                self._event, self._data = "", []
            else:
                self._event = ""
        return events

    def flush(self) -> list[SseEvent]:
        """Events still pending when the body ended without a final blank line."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data = "", []
        return events

    def _field(self, line: str) -> None:
        """A line other than `data:` or blank: a comment (servers' keep-alive), `event:`, or ignored."""
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if name == "data":  # `data` without a colon: an empty data line
            self._data.append(value)
        elif name == "event":
            self._event = value.removeprefix(" ")
