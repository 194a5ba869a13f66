"""`memory`: the agent's own memory through the MemoryStore, one tool with four actions.

- `recall`: MEMORY.md plus daily entries matching `query` (or the most recent ones);
- `remember`: `content` becomes a bullet in today's file, section decision|preference|fact;
- `reflect`: without `content`, MEMORY.md and the recent daily files to consolidate; with
  `content`, that text replaces MEMORY.md;
- `update_world`: `content` replaces the shared world-memory `topic` every agent reads.

What one call may write is capped (`REMEMBER_MAX_CHARS` for a note, `REWRITE_MAX_CHARS` for a
whole MEMORY.md or world topic), and `remember` stops adding to a day whose file holds
`DAY_MAX_CHARS`: a model looping on a huge write would otherwise grow files every turn re-reads.
An oversized call writes nothing and tells the model the limit and the size it sent.

Blank `content` counts as none: models often send every argument, `"content": ""` included, and
that must show MEMORY.md, not replace it (or a world topic) with nothing.

A `reflect` rewrite is merged with what changed in MEMORY.md since `reflect` showed it to the
session: lines a person or another session's `reflect` added meanwhile are kept, at the end;
lines the session was shown and left out are dropped, as it meant. (`recall` does not move that
base: a line a person added after the `reflect` look is theirs to remove, not a side effect.)
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from duragent.errors import DuragentError
from duragent.keyed_locks import KeyedLocks
from duragent.memory.markdown import keep_added_lines
from duragent.stores.base import (
    SECTION_HEADINGS,
    MemoryEntry,
    MemoryQuery,
    MemoryStore,
    changes_for_session,
    utcnow,
)
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import cap_text

#: How many matching entries `recall` returns.
RECALL_LIMIT = 20
#: How many of the newest daily files `reflect` shows.
REFLECT_DAYS = 7

#: How many sessions' MEMORY.md as `reflect` showed it a store's reflections keep (oldest go first).
MAX_SHOWN_LONG_TERM = 64

#: The most characters one `remember` note may hold (a note, not a document).
REMEMBER_MAX_CHARS = 4_000
#: The most characters a `reflect` rewrite of MEMORY.md or an `update_world` topic may hold.
REWRITE_MAX_CHARS = 64_000
#: `remember` adds nothing to a daily file already this long: `reflect` should consolidate it.
DAY_MAX_CHARS = 256_000

MemoryAction = Literal["recall", "remember", "reflect", "update_world"]


class MemoryArgs(ToolArgs):
    """Arguments of `memory`."""

    action: MemoryAction = Field(description="recall, remember, reflect or update_world.")
    content: str | None = Field(
        None,
        description=(
            f"remember: the text (at most {REMEMBER_MAX_CHARS:,} characters); reflect: the new "
            f"MEMORY.md; update_world: the topic's text (each at most {REWRITE_MAX_CHARS:,})."
        ),
    )
    section: Literal["decision", "preference", "fact"] | None = Field(
        None, description="remember: where the entry goes (default fact); recall: only this section."
    )
    topic: str | None = Field(None, description="update_world: the topic name (letters, digits, - or _).")
    query: str | None = Field(None, description="recall: words to look for (default: the newest entries).")


class MemoryTool(Tool[MemoryArgs]):
    """Recall, remember, reflect on and share what the agent knows."""

    name = "memory"
    description = (
        "The agent's memory. action=recall (optional query, section) finds remembered entries and "
        "MEMORY.md; action=remember (content, section decision|preference|fact) saves a note in "
        "today's memory; action=reflect without content shows MEMORY.md and recent days to "
        "consolidate, with content replaces MEMORY.md; action=update_world (topic, content) "
        "replaces a shared world-memory topic."
    )
    Args = MemoryArgs

    async def run(self, args: MemoryArgs, ctx: ToolContext) -> ToolResult:
        """Perform the action against ctx.memory."""
        if ctx.memory is None:
            return ToolResult(False, "memory is not enabled for this agent")
        try:
            with changes_for_session(ctx.session_id):
                return await self._run(args, ctx)
        except (DuragentError, ValueError, OSError) as exc:
            return ToolResult(False, f"memory {args.action} failed: {exc}")

    async def _run(self, args: MemoryArgs, ctx: ToolContext) -> ToolResult:
        # (what it writes is committed naming this session: `duragent history --session` shows it)
        assert ctx.memory is not None
        if args.action == "recall":
            return await _recall(ctx.memory, args, ctx)
        if args.action == "remember":
            return await _remember(ctx.memory, args, ctx)
        if args.action == "reflect":
            return await _reflect(ctx.memory, args, ctx)
        return await _update_world(ctx.memory, args)

    def invocation(self, args: MemoryArgs, ctx: ToolContext) -> str:
        """The action (`memory:remember` patterns match it)."""
        return args.action


@dataclass
class _Reflections:
    """The MEMORY.md each (agent, session) was last shown, and one lock per agent for rewrites."""

    shown: dict[tuple[str, str], str] = field(default_factory=dict)
    rewrites: KeyedLocks[str] = field(default_factory=KeyedLocks)

    def note_shown(self, agent: str, session_id: str, text: str) -> None:
        self.shown.pop((agent, session_id), None)
        self.shown[(agent, session_id)] = text
        while len(self.shown) > MAX_SHOWN_LONG_TERM:
            del self.shown[next(iter(self.shown))]


#: Per store: a server's one store serves all its sessions, which is where they must meet. (Tool
#: instances live for one turn, and a session's `reflect` rewrite may come in a later turn.)
_REFLECTIONS: weakref.WeakKeyDictionary[MemoryStore, _Reflections] = weakref.WeakKeyDictionary()


def _reflections(store: MemoryStore) -> _Reflections:
    found = _REFLECTIONS.get(store)
    if found is None:
        found = _REFLECTIONS[store] = _Reflections()
    return found


async def _read_long_term_shown(store: MemoryStore, ctx: ToolContext) -> str:
    """MEMORY.md, noted as what `reflect` showed this session (the base its rewrite starts from)."""
    text = await store.read_long_term(ctx.agent)
    _reflections(store).note_shown(ctx.agent, ctx.session_id, text)
    return text


async def _rewrite_long_term(store: MemoryStore, ctx: ToolContext, text: str) -> None:
    """Replace MEMORY.md with the session's rewrite, keeping lines added since it was shown."""
    reflections = _reflections(store)
    # One rewrite of an agent's MEMORY.md at a time: two sessions reflecting at once each keep
    # what the other wrote, rather than the later one overwriting the earlier.
    async with reflections.rewrites(ctx.agent):
        # (forgotten once used: the store may redact what it writes, so the file is no longer
        # exactly the text; a second rewrite without a new look merges as the store does alone)
        shown = reflections.shown.pop((ctx.agent, ctx.session_id), None)
        if shown is not None:
            text = keep_added_lines(shown, await store.read_long_term(ctx.agent), text)
        await store.write_long_term(ctx.agent, text)


async def _recall(store: MemoryStore, args: MemoryArgs, ctx: ToolContext) -> ToolResult:
    query = MemoryQuery(text=args.query, section=args.section, limit=RECALL_LIMIT)
    entries = await store.query(ctx.agent, query)
    long_term = (await store.read_long_term(ctx.agent)).strip()
    parts = []
    if long_term:
        parts.append(f"## MEMORY.md\n\n{long_term}")
    if entries:
        lines = [f"- {entry.day.isoformat()} [{entry.section}] {entry.text}" for entry in entries]
        heading = f"## Entries matching {args.query!r}" if args.query else "## Recent entries"
        parts.append(heading + "\n\n" + "\n".join(lines))
    elif args.query:
        parts.append(f"(no remembered entry matches {args.query!r})")
    if not parts:
        parts.append("(nothing remembered yet)")
    data = {"entries": len(entries), "long_term": bool(long_term)}
    return ToolResult(True, cap_text("\n\n".join(parts), ctx.limits.output_cap_bytes), data)


async def _remember(store: MemoryStore, args: MemoryArgs, ctx: ToolContext) -> ToolResult:
    if not args.content or not args.content.strip():
        return ToolResult(False, "remember needs content: the text to remember")
    if too_long := _over_limit("remember", args.content, REMEMBER_MAX_CHARS):
        return too_long
    section = args.section or "fact"
    today = utcnow().date()
    held = len(await store.read_day(ctx.agent, today) or "")
    if held >= DAY_MAX_CHARS:
        return ToolResult(
            False,
            f"remember refused: today's memory file already holds {held:,} characters (the limit is "
            f"{DAY_MAX_CHARS:,}); nothing was written: call memory action=reflect to consolidate it",
        )
    entry = MemoryEntry(text=args.content.strip(), section=section, day=today, source=ctx.session_id)
    await store.put(ctx.agent, entry)
    where = f"{SECTION_HEADINGS[section]} of {entry.day.isoformat()}"
    return ToolResult(True, f"remembered under {where}", {"section": section, "day": entry.day.isoformat()})


async def _reflect(store: MemoryStore, args: MemoryArgs, ctx: ToolContext) -> ToolResult:
    if args.content is not None and args.content.strip():
        if too_long := _over_limit("reflect", args.content, REWRITE_MAX_CHARS):
            return too_long
        await _rewrite_long_term(store, ctx, args.content.rstrip() + "\n")
        return ToolResult(True, f"MEMORY.md replaced ({len(args.content)} characters)")
    long_term = (await _read_long_term_shown(store, ctx)).strip() or "(empty)"
    parts = [f"## MEMORY.md (current)\n\n{long_term}"]
    for day in (await store.days(ctx.agent))[:REFLECT_DAYS]:
        text = await store.read_day(ctx.agent, day)
        if text:
            parts.append(f"## Daily file {day.isoformat()}\n\n{text.strip()}")
    parts.append(
        "Consolidate what is worth keeping into a new MEMORY.md and save it with "
        "memory action=reflect content=<the whole new MEMORY.md>."
    )
    return ToolResult(True, cap_text("\n\n".join(parts), ctx.limits.output_cap_bytes))


async def _update_world(store: MemoryStore, args: MemoryArgs) -> ToolResult:
    if not args.topic or args.content is None or not args.content.strip():
        return ToolResult(False, "update_world needs a topic and content (the topic's whole new text)")
    if too_long := _over_limit("update_world", args.content, REWRITE_MAX_CHARS):
        return too_long
    await store.write_world(args.topic, args.content.rstrip() + "\n")
    return ToolResult(True, f"world memory {args.topic!r} updated", {"topic": args.topic})


def _over_limit(action: str, content: str, limit: int) -> ToolResult | None:
    """The refusal of a `content` longer than `limit` characters (None when it fits)."""
    if len(content) <= limit:
        return None
    return ToolResult(
        False,
        f"{action} refused: content is {len(content):,} characters, memory takes at most {limit:,} "
        "per call; nothing was written: send a shorter text",
    )
