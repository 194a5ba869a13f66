"""Split Telegram HTML into messages within Telegram's length limit, keeping markup valid.

Telegram limits a message to 4096 characters of *visible* text (UTF-16 code units, after the
markup is parsed), so tags do not count. A cut prefers a blank line, then a line break, then a
space, in the last part of the window; tags open at a cut are closed at the end of one chunk and
reopened at the start of the next, so a code block or a bold run split in two stays formatted.
Telegram trims the whitespace a message starts with, even inside a code block, so a break before
an indented line counts only when no break before an unindented one will do, and the
indentation a chunk starts with is never dropped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Telegram's limit on one message's text.
TELEGRAM_TEXT_LIMIT = 4096
#: A preferred break is used only if it keeps at least this share of the window.
_MIN_FILL = 0.5
_TOKEN = re.compile(r"<(/?)([a-zA-Z][\w-]*)[^>]*>|&#?\w+;|[\s\S]")


@dataclass(frozen=True, slots=True)
class _Atom:
    raw: str
    width: int  # UTF-16 code units the user sees (0 for tags)
    tag: str | None = None
    closing: bool = False


def _atoms(markup: str) -> list[_Atom]:
    atoms = []
    for match in _TOKEN.finditer(markup):
        raw = match.group()
        if match.group(2) is not None:
            atoms.append(_Atom(raw, 0, match.group(2).lower(), bool(match.group(1))))
        elif raw.startswith("&") and len(raw) > 1:
            atoms.append(_Atom(raw, 1))
        else:
            atoms.append(_Atom(raw, len(raw.encode("utf-16-le")) // 2))
    return atoms


def _cut(atoms: list[_Atom], start: int, limit: int) -> int:
    """The index where the chunk beginning at `start` ends (exclusive)."""
    width = 0
    end = start
    breaks: dict[str, int] = {}
    while end < len(atoms) and width + atoms[end].width <= limit:
        atom = atoms[end]
        width += atom.width
        end += 1
        if atom.raw == "\n":
            if _indented_after(atoms, end):
                breaks["indented line"] = end
                continue
            key = "paragraph" if end - 2 >= start and atoms[end - 2].raw == "\n" else "line"
            breaks[key] = end
            breaks["line"] = end
        elif atom.raw == " ":
            breaks["space"] = end
    if end >= len(atoms):
        return end
    for kind in ("paragraph", "line", "indented line", "space"):
        position = breaks.get(kind)
        if position is not None and position - start >= (end - start) * _MIN_FILL:
            return position
    return max(end, start + 1)


def _indented_after(atoms: list[_Atom], index: int) -> bool:
    """Whether the line starting at `index` begins (after any tags) with a space or a tab."""
    for atom in atoms[index:]:
        if atom.tag is None:
            return atom.raw in (" ", "\t")
    return False


def split_telegram_html(
    markup: str, limit: int = TELEGRAM_TEXT_LIMIT, *, first_limit: int | None = None
) -> list[str]:
    """Chunks of `markup`, each with at most `limit` visible characters and balanced tags; the
    first with at most `first_limit` (a caption's 1024, the rest following as messages)."""
    atoms = _atoms(markup)
    chunks: list[str] = []
    open_tags: list[_Atom] = []
    start = 0
    while start < len(atoms):
        end = _cut(atoms, start, first_limit if first_limit is not None and not chunks else limit)
        reopened = "".join(tag.raw for tag in open_tags)
        body = []
        for atom in atoms[start:end]:
            body.append(atom.raw)
            if atom.tag is None:
                continue
            if atom.closing:
                if open_tags and open_tags[-1].tag == atom.tag:
                    open_tags.pop()
            else:
                open_tags.append(atom)
        closed = "".join(f"</{tag.tag}>" for tag in reversed(open_tags))
        chunk = _trim(reopened + "".join(body) + closed)
        if _has_text(chunk):
            chunks.append(chunk)
        start = end
    return chunks


def _trim(chunk: str) -> str:
    """Drop blank lines at the chunk's start and whitespace at its end, keeping tags intact.

    Spaces a chunk starts with are a line's indentation (a cut never leaves them): kept.
    """
    return re.sub(r"^((?:<[^>]+>)*)\n+", r"\1", re.sub(r"\s+((?:</[^>]+>)*)$", r"\1", chunk))


def _has_text(chunk: str) -> bool:
    return bool(re.sub(r"<[^>]+>", "", chunk).strip())
