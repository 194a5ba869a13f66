"""Split a long reply into messages a chat platform accepts, at natural boundaries.

Paragraphs (blank-line separated) and fenced code blocks are kept whole when they fit; a
paragraph too long on its own is split at lines, then words, and the bold (`**`),
strikethrough (`~~`) or code span open where it is cut is closed at the end of one piece and
reopened at the start of the next; a code block too long on its own is split at lines, each
piece closed and reopened with its fence so it still renders. A line is cut at a space outside
links and code spans when there is one, and a run with no space between whole characters (never
inside an emoji sequence or an HTML entity). `split_then_convert` cuts the Markdown first, then
converts each piece, for a platform whose own markup (Slack's `*bold*`) the cuts do not know.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

TELEGRAM_LIMIT = 4096
_MIN_LIMIT = 16
_FENCE = re.compile(r"^(`{3,}|~{3,})")
#: What opens and closes inline formatting that a cut could leave open: code spans, bold, strike.
_INLINE = re.compile(r"`+|\*\*|~~")
#: Spans a cut at a space would break on both sides (a link's text, a code span), kept whole
#: when another space allows.
_UNBREAKABLE = re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)|(`+)[^`\n]+?\1")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_LONGEST_ENTITY = 34
_ZWJ = "\u200d"
#: Code points that extend the character before them: variation selectors, skin tones, the
#: tags of subdivision flags.
_EXTENDERS = ((0xFE00, 0xFE0F), (0x1F3FB, 0x1F3FF), (0xE0020, 0xE007F), (0xE0100, 0xE01EF))
#: How far back a hard cut looks for a boundary: more than any emoji sequence in use.
_LONGEST_GRAPHEME = 64
#: Room kept in each piece of a split paragraph for the markers closed and reopened at its edges.
_MARKER_ROOM = 16


#: Shown for a reply that is only whitespace, which a platform would refuse to send.
EMPTY_REPLY_NOTE = "(empty reply)"


def as_typed(markdown: str) -> str:
    """The reply as the agent wrote it, for Markdown that renders to nothing on a platform
    (`[](http://x)`, `&nbsp;`): the user sees what was written rather than no reply at all."""
    return markdown.strip() or EMPTY_REPLY_NOTE


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Pieces of `text`, each at most `limit` characters, that join back to the same content."""
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT} characters")
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


def split_then_convert(markdown: str, limit: int, convert: Callable[[str], str]) -> list[str]:
    """`convert` of each piece of `markdown`, each at most `limit` characters.

    For a platform whose markup the cut-and-reopen rules do not know (Slack's `*bold*`,
    `~strike~`): the Markdown is cut, where `**` and `~~` are closed and reopened, and each
    piece converted on its own. Converting can lengthen a piece (`&` becomes `&amp;`), so the
    Markdown is cut shorter until every converted piece fits.
    """
    room = limit
    while True:
        pieces = [converted for piece in split_message(markdown, room) if (converted := convert(piece))]
        longest = max((len(piece) for piece in pieces), default=0)
        if longest <= limit:
            return pieces
        if room == _MIN_LIMIT:
            # Markup everywhere: the limit comes first, formatting across the cuts second.
            return [part for piece in pieces for part in split_message(piece, limit)]
        room = max(_MIN_LIMIT, min(room - 1, room * limit // longest))


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
    """`part` itself, or split at spaces (lines) or hard-cut (words) when longer than `limit`.

    A line is first cut only at spaces outside links and code spans; a word still too long
    (a link longer than the limit) is cut at any space, and a run with none between characters.
    """
    if len(part) <= limit:
        return [part]
    if separator == "\n" and " " in part.strip():
        return _pack(_words(part, limit), limit, " ")
    if separator == " " and " " in part.strip():
        return _pack(part.split(" "), limit, " ")
    return _hard_cut(part, limit)


def _words(line: str, limit: int) -> list[str]:
    """`line` split at its spaces, a link or code span that fits in `limit` kept as one word."""
    kept = {
        index
        for match in _UNBREAKABLE.finditer(line)
        if len(match.group()) <= limit
        for index in range(match.start() + 1, match.end())
    }
    words: list[str] = []
    start = 0
    for space in (index for index, char in enumerate(line) if char == " " and index not in kept):
        words.append(line[start:space])
        start = space + 1
    words.append(line[start:])
    return words


def _hard_cut(run: str, limit: int) -> list[str]:
    """`run` in pieces of at most `limit`, each cut between characters as a reader sees them."""
    pieces: list[str] = []
    while len(run) > limit:
        cut = _cut_before(run, limit)
        pieces.append(run[:cut])
        run = run[cut:]
    return [*pieces, run] if run else pieces


def _cut_before(run: str, limit: int) -> int:
    """The last place at or before `limit` that splits no entity and no grapheme (or `limit`)."""
    for cut in range(limit, max(limit - _LONGEST_GRAPHEME, 0), -1):
        if not _joins(run[cut - 1], run[cut]) and not _inside_entity(run, cut) and not _inside_flag(run, cut):
            return cut
    return limit  # a "character" longer than any platform shows: the limit comes first


def _joins(before: str, after: str) -> bool:
    """Whether `before` and `after` belong to one grapheme (emoji sequence, accent, keycap)."""
    return (
        before == _ZWJ
        or after == _ZWJ
        or unicodedata.category(after) in ("Mn", "Me", "Mc")
        or any(low <= ord(after) <= high for low, high in _EXTENDERS)
    )


def _inside_entity(run: str, cut: int) -> bool:
    """Whether `cut` falls inside an HTML entity such as `&amp;` or `&#128512;`."""
    start = run.rfind("&", max(cut - _LONGEST_ENTITY, 0), cut)
    return start != -1 and (entity := _ENTITY.match(run, start)) is not None and entity.end() > cut


def _inside_flag(run: str, cut: int) -> bool:
    """Whether `cut` falls between the two regional indicators of a flag."""
    indicators = 0
    while cut - indicators > 0 and _is_regional(run[cut - indicators - 1]):
        indicators += 1
    return indicators % 2 == 1 and cut < len(run) and _is_regional(run[cut])


def _is_regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
