"""Keep the head and tail of output that may be far larger than what a model should read.

A command can print gigabytes; the buffer holds at most `cap` bytes however much is fed to it
(half from the start, half from the end) and says how much was cut in between.
"""

from __future__ import annotations


def cut_marker(cut_bytes: int) -> str:
    """The line put where output was cut: `[… 1234 bytes cut …]`."""
    return f"\n[… {cut_bytes} bytes cut …]\n"


class HeadTailBuffer:
    """Bytes fed in chunks; keeps the first and last `cap // 2` bytes and counts the rest."""

    def __init__(self, cap: int):
        self.cap = max(cap, 2)
        self._head_cap = self.cap // 2
        self._tail_cap = self.cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        """Add the next chunk of output."""
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            # Trim in place so the tail never holds more than its share for long.
            if len(self._tail) > self._tail_cap:
                del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def cut(self) -> int:
        """How many bytes in the middle were dropped."""
        return self.total - len(self._head) - len(self._tail)

    def text(self) -> str:
        """The kept output as text (invalid UTF-8 replaced), with a marker where bytes were cut."""
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        if self.cut == 0:
            return head + tail
        return head + cut_marker(self.cut) + tail


def cap_text(text: str, cap: int) -> str:
    """`text` cut to about `cap` UTF-8 bytes, keeping its head and tail around a marker."""
    buffer = HeadTailBuffer(cap)
    buffer.feed(text.encode("utf-8"))
    return buffer.text()
