"""`memory`: the agent's own memory through the MemoryStore, one tool with four actions.

- `recall`: MEMORY.md plus daily entries matching `query` (or the most recent ones);
- `remember`: `content` becomes a bullet in today's file, section decision|preference|fact;
- `reflect`: without `content`, MEMORY.md and the recent daily files to consolidate; with
  `content`, that text replaces MEMORY.md;
- `update_world`: `content` replaces the shared world-memory `topic` every agent reads.

Blank `content` counts as none: models often send every argument, `"content": ""` included, and
that must show MEMORY.md, not replace it (or a world topic) with nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from duragent.errors import DuragentError
from duragent.stores.base import SECTION_HEADINGS, MemoryEntry, MemoryQuery, MemoryStore
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import cap_text

#: How many matching entries `recall` returns.
RECALL_LIMIT = 20
#: How many of the newest daily files `reflect` shows.
REFLECT_DAYS = 7

MemoryAction = Literal["recall", "remember", "reflect", "update_world"]


class MemoryArgs(ToolArgs):
    """Arguments of `memory`."""

    action: MemoryAction = Field(description="recall, remember, reflect or update_world.")
    content: str | None = Field(
        None, description="remember: the text; reflect: the new MEMORY.md; update_world: the topic's text."
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
            if args.action == "recall":
                return await _recall(ctx.memory, args, ctx)
            if args.action == "remember":
                return await _remember(ctx.memory, args, ctx)
            if args.action == "reflect":
                return await _reflect(ctx.memory, args, ctx)
            return await _update_world(ctx.memory, args)
        except (DuragentError, ValueError, OSError) as exc:
            return ToolResult(False, f"memory {args.action} failed: {exc}")

    def invocation(self, args: MemoryArgs, ctx: ToolContext) -> str:
        """The action (`memory:remember` patterns match it)."""
        return args.action


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
    section = args.section or "fact"
    entry = MemoryEntry(text=args.content.strip(), section=section, source=ctx.session_id)
    await store.put(ctx.agent, entry)
    where = f"{SECTION_HEADINGS[section]} of {entry.day.isoformat()}"
    return ToolResult(True, f"remembered under {where}", {"section": section, "day": entry.day.isoformat()})


async def _reflect(store: MemoryStore, args: MemoryArgs, ctx: ToolContext) -> ToolResult:
    if args.content is not None and args.content.strip():
        await store.write_long_term(ctx.agent, args.content.rstrip() + "\n")
        return ToolResult(True, f"MEMORY.md replaced ({len(args.content)} characters)")
    long_term = (await store.read_long_term(ctx.agent)).strip() or "(empty)"
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
    await store.write_world(args.topic, args.content.rstrip() + "\n")
    return ToolResult(True, f"world memory {args.topic!r} updated", {"topic": args.topic})
