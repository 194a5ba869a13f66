"""Split a long reply into messages a chat platform accepts, at natural boundaries.

Paragraphs (blank-line separated) and fenced code blocks are kept whole when they fit; a
paragraph too long on its own is split at lines, then words; a code block too long on its
own is split at lines, each piece closed and reopened with its fence so it still renders.
"""

from __future__ import annotations

TELEGRAM_LIMIT = 4096


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
            if stripped.startswith(fence) and stripped.strip("`~") == "":
                blocks.append("\n".join(lines))
                lines, fence = [], None
        elif stripped.startswith(("```", "~~~")):
            if lines:
                blocks.append("\n".join(lines))
            lines, fence = [line], stripped[:3]
        elif stripped == "":
            if lines:
                blocks.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    if lines:
        blocks.append("\n".join(lines))
    return blocks


def _split_block(block: str, limit: int) -> list[str]:
    lines = block.split("\n")
    first = lines[0].strip()
    if first.startswith(("```", "~~~")) and len(lines) > 1:
        opening = lines[0]
        closing = first[:3]
        body = lines[1:-1] if lines[-1].strip().startswith(closing) else lines[1:]
        room = limit - len(opening) - len(closing) - 2
        return [f"{opening}\n{piece}\n{closing}" for piece in _pack(body, room, "\n")]
    return _pack(lines, limit, "\n")


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
