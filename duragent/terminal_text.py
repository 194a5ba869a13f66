"""Text from a model, a tool or a remote sender made safe to show in a terminal or a git log.

A terminal obeys the control characters in what it prints: a carriage return and `ESC [2K`
erase the line so far, so a command shown for approval could read as a harmless one while the
real one waits to run; other sequences move the cursor, retitle the window or answer back
through the keyboard. Bidirectional overrides reorder what is shown the same way (Trojan Source).
Such characters are written out as escapes (`\\r`, `\\x1b`, `\\u202e`), so a person sees that they
are there; new lines and tabs stay, and a `\\r\\n` line ending is read as `\\n`.
"""

from __future__ import annotations

import re

#: C0 controls but tab and new line, DEL, C1 controls, bidirectional embeddings, overrides and
#: isolates, and the line and paragraph separators (which some terminals break lines on).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b", "\x00": "\\0"}


def printable(text: str) -> str:
    """`text` with every control character a terminal would act on written out as an escape."""
    if _CONTROLS.search(text) is None:
        return text
    return _CONTROLS.sub(_escape, text.replace("\r\n", "\n"))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shortened(text: str, width: int) -> str:
    """`text` if it has at most `width` characters, else its start ending in "…" (`width` at most),
    cut at a space when one falls in the second half, so no word is shown half."""
    if len(text) <= width:
        return text
    head = text[: width - 1]
    if not text[width - 1].isspace():  # the cut falls inside a word: end before it
        space = head.rfind(" ", width // 2)
        head = head[:space] if space > 0 else head
    return head.rstrip() + "…"
