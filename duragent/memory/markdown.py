"""The daily memory file: parse it into entries and add one bullet without touching anything else.

A daily file looks like this (the seed's format)::

    # 2025-12-15

    ## Decisions Made
    - Chose Telegram as primary interface

    ## Preferences Learned
    - User prefers bullet points

    ## Facts Stored
    - User's blog: example.com

People edit these files by hand, so `add_bullet` works on the text as lines and changes only
the lines it must: it never re-renders the file. A new file gets the title and only the section
being written (empty sections are omitted); a missing section is inserted where the canonical
order (decisions, preferences, facts) puts it. Any other `## Heading` a person adds is a section
named by its heading text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from duragent.errors import DuragentError, InvalidName
from duragent.stores.base import SECTION_HEADINGS, MemoryEntry

#: The plural word of each canonical section, as commit summaries use it ("facts +1").
SECTION_PLURALS: dict[str, str] = {"decision": "decisions", "preference": "preferences", "fact": "facts"}

_CANONICAL_ORDER = list(SECTION_HEADINGS)
_HEADING_TO_KEY = {heading.casefold(): key for key, heading in SECTION_HEADINGS.items()}
_SECTION_HEADING = re.compile(r"^##[ \t]+(?P<title>.*?)[ \t#]*$")
_ANY_HEADING = re.compile(r"^#{1,6}([ \t]|$)")
_BULLET = re.compile(r"^[-*+][ \t]+(?P<text>.*)$")
_MAX_SECTION_NAME = 80
#: The byte order mark some Windows editors put before a UTF-8 file's first line (kept as it is).
_BOM = "\ufeff"


class EmptyMemoryEntry(DuragentError, ValueError):
    """A memory entry whose text is blank."""

    exit_code = 2


def section_key(name: str) -> str:
    """The section a name refers to: "fact", "facts" or "Facts Stored" -> "fact"; other text as is.

    Raises InvalidName for an empty, multi-line or overlong custom section name.
    """
    cleaned = name.strip()
    folded = cleaned.casefold()
    if folded in SECTION_HEADINGS:
        return folded
    if folded in _HEADING_TO_KEY:
        return _HEADING_TO_KEY[folded]
    for key, plural in SECTION_PLURALS.items():
        if folded == plural:
            return key
    if not cleaned or "\n" in cleaned or "\r" in cleaned or len(cleaned) > _MAX_SECTION_NAME:
        raise InvalidName(f"invalid memory section {name!r}: use decision, preference, fact or a heading")
    return cleaned


def section_heading(section: str) -> str:
    """The `## ` heading text written for a section key ("fact" -> "Facts Stored")."""
    key = section_key(section)
    return SECTION_HEADINGS.get(key, key)


def section_plural(section: str) -> str:
    """The word a commit summary uses for a section: "facts", "decisions"; a custom heading as is."""
    key = section_key(section)
    return SECTION_PLURALS.get(key, key)


def storable(text: str) -> str:
    """Memory text as either store keeps it: without NUL characters, which PostgreSQL cannot
    keep in text and an editor shows as `^@` (a model can write one)."""
    return text.replace("\x00", "")


def normalize_entry_text(text: str) -> str:
    """Entry text as stored: each line stripped, blank lines dropped; EmptyMemoryEntry if none is left."""
    lines = [line.strip() for line in storable(text).splitlines()]
    kept = [line for line in lines if line]
    if not kept:
        raise EmptyMemoryEntry("a memory entry needs some text")
    return "\n".join(kept)


def render_bullet(text: str) -> list[str]:
    """The bullet lines (without line endings) for an entry; later lines become indented continuations."""
    first, *rest = normalize_entry_text(text).split("\n")
    return [f"- {first}", *(f"  {line}" for line in rest)]


def parse_daily(text: str, day: date) -> list[MemoryEntry]:
    """The entries of a daily file, in file order: every bullet (with its continuation lines) in a section.

    Bullets before the first `## ` heading belong to no section and are not entries.
    """
    return _scan_daily(text, day).entries


def lines_outside_entries(text: str) -> list[str]:
    """The non-blank lines of a daily file that no entry holds, stripped, in file order: prose,
    and bullets before the first `## ` heading (or after a `# ` title that closed a section).

    Headings are left out: a diff reports them through the sections they open.
    """
    return _scan_daily(text, date.min).outside


def heading_lines(text: str) -> list[str]:
    """The heading lines (`#` to `######`) of a daily file, stripped, in file order."""
    lines = _split_lines(text.removeprefix(_BOM))
    return [line.strip() for line in lines if _ANY_HEADING.match(line.rstrip("\r\n"))]


@dataclass
class _Scanned:
    entries: list[MemoryEntry]
    outside: list[str]  # non-blank, non-heading lines no entry holds, stripped


def keep_added_lines(base: str, current: str, text: str) -> str:
    """`text` (a whole new file written from `base`) plus the lines added to the file since
    `base` (now `current`) that `text` lacks, at the end: someone else's lines are not dropped."""
    if current == base:
        return text
    import difflib  # here, not at import: only a concurrent change needs it

    before, after = base.splitlines(), current.splitlines()
    added: list[str] = []
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):
            added.extend(after[j1:j2])
    have = set(text.splitlines())
    missing = [line for line in added if line.strip() and line not in have]
    if not missing:
        return text
    joined = text if text.endswith("\n") or not text else text + "\n"
    return joined + "\n".join(missing) + "\n"


def _scan_daily(text: str, day: date) -> _Scanned:
    """One pass over a daily file: its entries, and the lines that belong to none of them."""
    scanned = _Scanned([], [])
    section: str | None = None
    bullet: list[str] | None = None
    bullet_lines: list[str] = []  # the bullet's own non-blank lines, as written

    def finish() -> None:
        nonlocal bullet
        body = "\n".join(part for part in bullet if part) if bullet is not None else ""
        if section and body:
            scanned.entries.append(MemoryEntry(text=body, section=section, day=day))
        else:
            scanned.outside.extend(bullet_lines)
        bullet = None
        bullet_lines.clear()

    for raw in _split_lines(text.removeprefix(_BOM)):
        line = raw.rstrip("\r\n")
        heading = _SECTION_HEADING.match(line)
        if heading:
            finish()
            section = _section_of_heading(heading.group("title"))
            continue
        if _ANY_HEADING.match(line):
            finish()
            if not line.startswith("###"):
                section = None  # a level-1 heading closes the section, as add_bullet sees it
            continue
        match = _BULLET.match(line)
        if match:
            finish()
            bullet = [match.group("text").strip()]
            bullet_lines.append(line.strip())
        elif not line.strip():
            # A blank line ends a bullet unless indented text follows; keep it open, cheaply.
            if bullet is not None:
                bullet.append("")
        elif bullet is not None and (line[0] in " \t" or bullet[-1]):
            # Indented lines, and lazy continuation lines right after the bullet, belong to it.
            bullet.append(line.strip())
            bullet_lines.append(line.strip())
        else:
            finish()
            scanned.outside.append(line.strip())
    finish()
    return scanned


def add_bullet(text: str | None, day: date, section: str, bullet: str) -> str:
    """The daily file's text with `bullet` appended to `section`, every other byte left as it was.

    `text` None or empty creates the file: `# YYYY-MM-DD`, a blank line, then the section.
    """
    key = section_key(section)
    bullet_lines = render_bullet(bullet)
    if not text:
        text = f"# {day.isoformat()}\n"
    lines = _split_lines(text)
    newline = "\r\n" if text.count("\r\n") * 2 > text.count("\n") else "\n"
    sections = _find_sections(lines)

    existing = next((found for found in sections if found.key == key), None)
    if existing is not None:
        after = _last_content_line(lines, existing.start, existing.end)
        return _insert_after(lines, after, bullet_lines, newline)

    block = [f"## {section_heading(key)}", *bullet_lines]
    if key in _CANONICAL_ORDER:
        rank = _CANONICAL_ORDER.index(key)
        later = [found for found in sections if found.rank is not None and found.rank > rank]
        if later:
            return _insert_before(lines, later[0].start, [*block, ""], newline)
        earlier = [found for found in sections if found.rank is not None]
        if earlier:
            last = earlier[-1]
            after = _last_content_line(lines, last.start, last.end)
            return _insert_after(lines, after, ["", *block], newline)
    after = _last_content_line(lines, 0, len(lines))
    return _insert_after(lines, after, ["", *block] if after >= 0 else block, newline)


@dataclass(frozen=True)
class _Section:
    key: str
    rank: int | None  # position in the canonical order, None for a person's own section
    start: int  # index of the heading line
    end: int  # index one past the section's last line


def _split_lines(text: str) -> list[str]:
    """Lines with their endings; only "\\n" ends a line (str.splitlines also splits on \\f, \\x1c...)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _section_of_heading(title: str) -> str:
    folded = title.strip().casefold()
    return _HEADING_TO_KEY.get(folded, title.strip())


def _find_sections(lines: list[str]) -> list[_Section]:
    starts: list[tuple[int, str]] = []
    for index, raw in enumerate(lines):
        if index == 0:
            raw = raw.removeprefix(_BOM)
        heading = _SECTION_HEADING.match(raw.rstrip("\r\n"))
        if heading:
            starts.append((index, _section_of_heading(heading.group("title"))))
        elif _ANY_HEADING.match(raw) and not raw.startswith("###"):
            # A level-1 heading also ends the section before it.
            starts.append((index, ""))
    sections: list[_Section] = []
    for position, (start, key) in enumerate(starts):
        end = starts[position + 1][0] if position + 1 < len(starts) else len(lines)
        if key:
            rank = _CANONICAL_ORDER.index(key) if key in _CANONICAL_ORDER else None
            sections.append(_Section(key, rank, start, end))
    return sections


def _last_content_line(lines: list[str], start: int, end: int) -> int:
    """Index of the last non-blank line in lines[start:end], or start - 1 when all are blank."""
    for index in range(end - 1, start - 1, -1):
        if lines[index].strip():
            return index
    return start - 1


def _insert_after(lines: list[str], index: int, new: list[str], newline: str) -> str:
    """Insert `new` lines after lines[index] (index -1: at the very start), keeping the file's ending."""
    before, rest = lines[: index + 1], lines[index + 1 :]
    ended_without_newline = bool(before) and not before[-1].endswith("\n") and not rest
    if before and not before[-1].endswith("\n"):
        before[-1] += newline
    chunk = "".join(line + newline for line in new)
    if ended_without_newline:
        # The file had no final newline: keep that quirk after the new last line.
        chunk = chunk[: -len(newline)]
    return "".join(before) + chunk + "".join(rest)


def _insert_before(lines: list[str], index: int, new: list[str], newline: str) -> str:
    chunk = "".join(line + newline for line in new)
    return "".join(lines[:index]) + chunk + "".join(lines[index:])
