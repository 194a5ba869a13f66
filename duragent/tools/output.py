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
        """The kept output as text (invalid UTF-8 replaced), with a marker where bytes were cut.

        Head and tail are cut on character boundaries: a character split by the cap is dropped
        (and counted as cut) rather than shown as replacement characters.
        """
        if self.cut == 0:
            # (a character may straddle head and tail: decoded together, it stays whole)
            return (self._head + self._tail).decode("utf-8", errors="replace")
        head = self._head[: _whole_characters_end(self._head)]
        tail = self._tail[_whole_characters_start(self._tail) :]
        cut = self.total - len(head) - len(tail)
        return (
            head.decode("utf-8", errors="replace") + cut_marker(cut) + tail.decode("utf-8", errors="replace")
        )


def _sequence_length(lead: int) -> int:
    """How many bytes the UTF-8 character starting with byte `lead` has (1 for anything else)."""
    if 0xC0 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF8:
        return 4
    return 1


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte < 0xC0


def _whole_characters_end(data: bytearray) -> int:
    """Where `data` ends once a UTF-8 character cut off at its end is dropped."""
    for back in range(1, min(4, len(data)) + 1):
        lead = data[-back]
        if not _is_continuation(lead):
            return len(data) - back if _sequence_length(lead) > back else len(data)
    return len(data)  # not UTF-8 there: nothing to mend


def _whole_characters_start(data: bytearray) -> int:
    """Where `data` starts once the end of a character cut off at its start is dropped."""
    skipped = 0
    while skipped < min(3, len(data)) and _is_continuation(data[skipped]):
        skipped += 1
    return skipped


def cap_text(text: str, cap: int) -> str:
    """`text` cut to about `cap` UTF-8 bytes, keeping its head and tail around a marker."""
    buffer = HeadTailBuffer(cap)
    buffer.feed(text.encode("utf-8"))
    return buffer.text()
