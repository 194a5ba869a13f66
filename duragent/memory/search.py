"""Memory search: filter entries by section and dates, match words, rank the best first.

Every backend ranks the same way so results do not depend on where memory is stored:

1. entries containing the query's words as an exact phrase (whole words, in order, adjacent)
   come first;
2. then entries matching more of the query's distinct words;
3. then more recent days, and within a day the entry written later.

A query word matches an entry word case-insensitively when they are equal, or when the query
word has at least three letters and begins the entry word ("prefer" finds "prefers").
An entry matching none of the words is not a result. A query without words (None, "", "?!")
returns the filtered entries, newest first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from duragent.memory.markdown import section_key
from duragent.stores.base import MemoryEntry, MemoryQuery

_WORD = re.compile(r"\w+")
_MIN_PREFIX = 3


def words_of(text: str) -> list[str]:
    """The lower-cased words of a text, in order ("User's blog" -> ["user", "s", "blog"])."""
    return _WORD.findall(text.casefold())


def entry_is_in_scope(entry: MemoryEntry, query: MemoryQuery) -> bool:
    """Whether the entry passes the query's section and date filters (text aside)."""
    if query.section is not None and section_key(entry.section) != section_key(query.section):
        return False
    if query.since is not None and entry.day < query.since:
        return False
    return not (query.until is not None and entry.day > query.until)


def rank_entries(entries: Iterable[MemoryEntry], query: MemoryQuery) -> list[MemoryEntry]:
    """The entries matching `query`, best first, at most `query.limit`.

    `entries` must be in writing order (older days first, file order within a day) so that
    "written later" can break ties.
    """
    phrase_words = words_of(query.text or "")
    query_words = list(dict.fromkeys(phrase_words))
    scored: list[_Scored] = []
    for position, entry in enumerate(entries):
        if not entry_is_in_scope(entry, query):
            continue
        score = _score(entry, query_words, phrase_words)
        if score is not None:
            scored.append(_Scored(entry, score, position))
    scored.sort(key=lambda item: (item.score, item.entry.day, item.position), reverse=True)
    return [item.entry for item in scored[: max(query.limit, 0)]]


def merge_ranked(
    ranked: Iterable[tuple[str, list[MemoryEntry]]], query: MemoryQuery
) -> list[tuple[str, MemoryEntry]]:
    """Several agents' `rank_entries` results as one list, (agent, entry), best first across all of
    them and at most `query.limit`; ties keep each agent's own order."""
    phrase_words = words_of(query.text or "")
    query_words = list(dict.fromkeys(phrase_words))
    found = [(agent, entry) for agent, entries in ranked for entry in entries]

    def rank(hit: tuple[str, MemoryEntry]) -> tuple[tuple[int, int], date]:
        return _score(hit[1], query_words, phrase_words) or (0, 0), hit[1].day

    # list.sort is stable with reverse=True too: equal ranks keep each agent's own order
    found.sort(key=rank, reverse=True)
    return found[: max(query.limit, 0)]


@dataclass(frozen=True)
class _Scored:
    entry: MemoryEntry
    score: tuple[int, int]  # (exact phrase 1/0, distinct query words matched)
    position: int


def _score(entry: MemoryEntry, query_words: list[str], phrase_words: list[str]) -> tuple[int, int] | None:
    """(phrase, matched words) for the entry, or None when it matches no word of a worded query."""
    if not query_words:
        return (0, 0)
    entry_words = words_of(entry.text)
    matched = sum(1 for word in query_words if _word_matches(word, entry_words))
    if matched == 0:
        return None
    # Whole words only: a one-word query ranks "blog" above "blogging".
    has_phrase = f" {' '.join(phrase_words)} " in f" {' '.join(entry_words)} "
    return (int(has_phrase), matched)


def _word_matches(query_word: str, entry_words: list[str]) -> bool:
    if len(query_word) >= _MIN_PREFIX:
        return any(word.startswith(query_word) for word in entry_words)
    return query_word in entry_words
