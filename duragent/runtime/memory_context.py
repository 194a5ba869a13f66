"""The memory slot of the context: MEMORY.md, the session's working memory, world memory, recent days.

Re-read from the store every turn, so a person's edit in their editor is what the next turn sees.
Everything fits the memory share of the token budget (`spec.memory.max_tokens`, else
`MEMORY_SHARE` of the context budget left after the tool definitions): when it does not, the
oldest daily file is dropped first, then the next oldest; MEMORY.md, working memory and world
memory are cut last (head and tail kept), beside the newest day, which keeps up to half the budget.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from duragent.agents.loader import Agent
from duragent.runtime.context import context_budget, cut_middle, estimate_tokens, memory_share
from duragent.stores.base import MemoryStore, SessionStore

WORKING_MEMORY_FILE = Path("memory") / "working.md"
_SEPARATOR = "\n\n"
#: What `cut_middle`'s "[… N characters cut …]" costs, at most.
_CUT_MARKER_TOKENS = 10
#: working.md up to this size is read on the event loop (microseconds from the page cache).
_INLINE_READ_MAX = 256 * 1024


def memory_budget(agent: Agent, room: int | None = None) -> int:
    """Tokens the memory slot may use: `spec.memory.max_tokens`, else a share of `room` (the
    context budget less the tool definitions; default the whole context budget)."""
    return memory_share(agent, context_budget(agent) if room is None else room)


@lru_cache(maxsize=512)
def working_memory_path(session_dir: Path) -> Path:
    """`sessions/<id>/memory/working.md`: notes that belong to one session only."""
    return session_dir / WORKING_MEMORY_FILE


def session_folder(store: SessionStore, session_id: str) -> Path | None:
    """The session's folder when its store keeps sessions on files (where working memory lives)."""
    from duragent.stores.filesystem.sessions import FilesystemSessionStore

    return store.session_dir(session_id) if isinstance(store, FilesystemSessionStore) else None


async def gather_memory(
    store: MemoryStore,
    agent: Agent,
    today: date,
    *,
    session_dir: Path | None = None,
    max_tokens: int | None = None,
) -> str:
    """Memory text for the agent's context within `max_tokens` (default `memory_budget(agent)`).

    Order: MEMORY.md, the session's working memory (when `session_dir` is given), world memory,
    then the daily files newest first, so a budget cut drops the oldest day first.
    """
    spec = agent.spec.memory
    if spec is None or not spec.enabled:
        return ""
    recent = _recent_days(today, spec.recent_days)
    # One call for the store's part (one query on PostgreSQL, no thread hop for small files):
    # this runs before every model call.
    memory = await store.read_for_context(agent.name, recent)
    fixed: list[str] = []
    long_term = memory.long_term.strip()
    if long_term:
        fixed.append(f"# Long-term memory (MEMORY.md)\n\n{long_term}")
    if session_dir is not None:
        working = (await _read_working_memory(working_memory_path(session_dir))).strip()
        if working:
            fixed.append(f"# Working memory of this session\n\n{working}")
    for topic, text in sorted(memory.world.items()):
        if text.strip():
            fixed.append(f"# World knowledge: {topic}\n\n{text.strip()}")
    days: list[str] = []
    for day in recent:
        daily = memory.days.get(day)
        if daily and daily.strip():
            days.append(f"# Memory of {day.isoformat()}\n\n{daily.strip()}")
    return fit_memory(fixed, days, memory_budget(agent) if max_tokens is None else max_tokens)


@lru_cache(maxsize=16)
def _recent_days(today: date, count: int) -> tuple[date, ...]:
    """`today` and the `count - 1` days before it, newest first (the same tuple all day long)."""
    return tuple(today - timedelta(days=offset) for offset in range(count))


def fit_memory(fixed: list[str], days_newest_first: list[str], max_tokens: int) -> str:
    """The parts joined within `max_tokens`: daily files dropped oldest first; when not even the
    newest fits beside the fixed parts, it keeps up to half the budget and they are cut."""
    days = list(days_newest_first)
    while days and estimate_tokens(_SEPARATOR.join([*fixed, *days])) > max_tokens:
        days.pop()
    if days or not days_newest_first:
        text = _SEPARATOR.join([*fixed, *days])
        return _cut(text, max_tokens)
    # What the agent learned today matters more than the middle of a MEMORY.md grown too long
    # (dropped, it would be forgotten by every session until the person trims MEMORY.md).
    newest = _cut(days_newest_first[0], max_tokens // 2 if fixed else max_tokens)
    if not fixed:
        return newest
    rest = max_tokens - estimate_tokens(newest + _SEPARATOR)
    return _SEPARATOR.join([_cut(_SEPARATOR.join(fixed), rest), newest])


def _cut(text: str, max_tokens: int) -> str:
    """`text` cut in the middle to `max_tokens`, its marker included."""
    if estimate_tokens(text) <= max_tokens:
        return text
    return cut_middle(text, max(max_tokens - _CUT_MARKER_TOKENS, 1))


async def _read_working_memory(path: Path) -> str:
    """working.md ("" when absent): read inline when small, as a thread hop costs more than the read."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return ""
    if size <= _INLINE_READ_MAX:
        return _read_or_empty(path)
    return await asyncio.to_thread(_read_or_empty, path)


def _read_or_empty(path: Path) -> str:
    try:
        # (a byte of another encoding a person saved shows as U+FFFD: it must not fail the turn)
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
