"""Split a long reply into messages a chat platform accepts, at natural boundaries.

Paragraphs (blank-line separated) and fenced code blocks are kept whole when they fit; a
paragraph too long on its own is split at lines, then words, and the bold (`**`),
strikethrough (`~~`) or code span open where it is cut is closed at the end of one piece and
reopened at the start of the next; a code block too long on its own is split at lines, each
piece closed and reopened with its fence so it still renders.
"""

from __future__ import annotations

import re

TELEGRAM_LIMIT = 4096
_FENCE = re.compile(r"^(`{3,}|~{3,})")
#: What opens and closes inline formatting that a cut could leave open: code spans, bold, strike.
_INLINE = re.compile(r"`+|\*\*|~~")
#: Room kept in each piece of a split paragraph for the markers closed and reopened at its edges.
_MARKER_ROOM = 16


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Pieces of `text`, each at most `limit` characters, that join back to the same content."""
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    text = text.strip("\n")
    if len(text) <= limit:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    for block in _blocks(text):
        pieces = [block] if len(block) <= limit else _split_block(block, limit)
        for piece in pieces:
            joined = f"{current}\n\n{piece}" if current else piece
            if len(joined) <= limit:
                current = joined
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _blocks(text: str) -> list[str]:
    """Paragraphs and fenced code blocks, in order, without the blank lines between them."""
    blocks: list[str] = []
    lines: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if fence is not None:
            lines.append(line)
            if _closes(stripped, fence):
                blocks.append("\n".join(lines))
                lines, fence = [], None
        elif (opening := _fence_of(stripped)) is not None:
            if lines:
                blocks.append("\n".join(lines))
            lines, fence = [line], opening
        elif stripped == "":
            if lines:
                blocks.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    if lines:
        blocks.append("\n".join(lines))
    return blocks


def _fence_of(stripped: str) -> str | None:
    """The fence a line opens (its run of 3+ backticks or tildes), or None."""
    run = _FENCE.match(stripped)
    return run.group() if run else None


def _closes(stripped: str, fence: str) -> bool:
    """Whether a line closes `fence`: the same character, at least as many, nothing after.

    So a four-backtick block showing Markdown keeps its inner ``` lines.
    """
    return stripped.startswith(fence) and stripped == fence[0] * len(stripped)


def _split_block(block: str, limit: int) -> list[str]:
    lines = block.split("\n")
    first = lines[0].strip()
    fence = _fence_of(first)
    if fence is not None and len(lines) > 1:
        opening = lines[0]
        body = lines[1:-1] if _closes(lines[-1].strip(), fence) else lines[1:]
        room = limit - len(opening) - len(fence) - 2
        return [f"{opening}\n{piece}\n{fence}" for piece in _pack(body, room, "\n")]
    return _split_paragraph(lines, limit)


def _split_paragraph(lines: list[str], limit: int) -> list[str]:
    """A paragraph's pieces, with formatting reopened across cuts when that fits the limit."""
    plain = _pack(lines, limit, "\n")
    for room in (limit, max(limit // 2, limit - _MARKER_ROOM)):
        pieces = plain if room == limit else _pack(lines, room, "\n")
        balanced = _reopen_formatting(pieces)
        if all(len(piece) <= limit for piece in balanced):
            return balanced
    return plain  # markers everywhere: the limit comes first


def _reopen_formatting(pieces: list[str]) -> list[str]:
    """Pieces of one paragraph with the formatting open at each cut closed, then reopened.

    Only a marker closed later in the paragraph counts: a lone backtick or `**` is just a
    character, as a Markdown reader takes it, and the last piece is left as written.
    """
    balanced: list[str] = []
    carried: list[str] = []
    for index, piece in enumerate(pieces):
        text = "".join(carried) + piece
        rest = "".join(pieces[index + 1 :])
        carried = [marker for marker in _open_markers(text) if marker in rest]
        balanced.append(text + "".join(reversed(carried)))
    return balanced


def _open_markers(text: str) -> list[str]:
    """The markers still open at the end of `text`, outermost first (inside code, none count)."""
    markers: list[str] = []
    for match in _INLINE.finditer(text):
        marker = match.group()
        if markers and markers[-1].startswith("`"):
            if marker == markers[-1]:
                markers.pop()  # the code span ends
            continue
        if marker in markers:
            del markers[markers.index(marker) :]
        else:
            markers.append(marker)
    return markers


def _pack(parts: list[str], limit: int, separator: str) -> list[str]:
    """Greedily join parts with `separator` into pieces of at most `limit`, splitting big parts."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        for fragment in _fit(part, limit, separator):
            joined = f"{current}{separator}{fragment}" if current else fragment
            if len(joined) <= limit:
                current = joined
            else:
                if current:
                    pieces.append(current)
                current = fragment
    if current:
        pieces.append(current)
    return pieces


def _fit(part: str, limit: int, separator: str) -> list[str]:
    """`part` itself, or split at spaces (lines) or hard-cut (words) when longer than `limit`."""
    if len(part) <= limit:
        return [part]
    if separator == "\n" and " " in part.strip():
        return _pack(part.split(" "), limit, " ")
    return [part[i : i + limit] for i in range(0, len(part), limit)]
