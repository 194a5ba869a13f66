"""The demo provider: offline, deterministic, instant, and honest that it is not a language model.

It lets `duragent init --yes` followed by a message work with no key and no network, and it
exercises the machinery a newcomer should see working: a message starting with `remember `
calls the memory tool, `recall` or "what do you remember" asks the memory tool for what it
knows, `reflect` consolidates memory (it asks the memory tool for MEMORY.md and the recent
daily files, then writes back a MEMORY.md that merges their bullets by section, the same
every time), and once a tool's result comes back the reply quotes it. Anything else is echoed
back with a word count. Every reply says how to configure a real model.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any, Self

from duragent.llm.base import collect_completion
from duragent.llm.types import (
    Completion,
    Finish,
    LLMRequest,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallDelta,
    Usage,
)

CONFIGURE_HINT = (
    "This is Duragent's demo provider, not a language model: it answers from a fixed script. "
    "To talk to a real model, set OPENAI_API_KEY (or ANTHROPIC_API_KEY, OPENROUTER_API_KEY) and "
    "change spec.model in your agent's agent.yaml (its comment shows how); memory and prompts stay."
)
MEMORY_TOOL = "memory"
_WORDS_PER_DELTA = 4
_QUOTE_LIMIT = 200
_RECALL = re.compile(
    r"^\s*recall\b\s*(?P<query>.*)$"
    r"|what do you (?:remember|recall|know)(?:\s+about\s+(?P<about>[^?.!]+))?",
    re.IGNORECASE | re.DOTALL,
)
#: "What do you remember about me?" asks for everything, not for entries containing "me".
_ABOUT_EVERYTHING = frozenset({"me", "us", "you", "myself", "it", "that", "everything"})
#: The lines of a recall result that are remembered entries (`- 2026-11-26 [fact] ...`).
_RECALLED_ENTRY = re.compile(r"^- \d{4}-\d{2}-\d{2} \[\w+\] (?P<text>.+)$", re.MULTILINE)
_REFLECT = re.compile(r"^\s*reflect\b", re.IGNORECASE)
_REFLECT_PART = re.compile(
    r"^## (?:MEMORY\.md \(current\)|Daily file (?P<day>\d{4}-\d{2}-\d{2}))$", re.MULTILINE
)
_REMEMBER = re.compile(r"^\s*remember\s+(?P<content>\S.*)$", re.IGNORECASE | re.DOTALL)


class DemoProvider:
    """A provider that needs nothing and pretends nothing."""

    name = "demo"

    async def stream(
        self, request: LLMRequest, *, sent: Callable[[], None] | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        """Stream the scripted reply, yielding to the event loop between chunks like a real stream."""
        if sent is not None:
            sent()  # nothing to send
        for chunk in demo_reply(request):
            await asyncio.sleep(0)
            yield chunk

    async def complete(self, request: LLMRequest) -> Completion:
        """The whole scripted reply."""
        return await collect_completion(self.stream(request))

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def demo_reply(request: LLMRequest) -> list[StreamChunk]:
    """The chunks the demo provider answers `request` with."""
    last = request.messages[-1] if request.messages else None
    if last is not None and last.role == "tool":
        merged = _reflection_to_write(request.messages)
        if merged is not None:
            return _tool_call(request, {"action": "reflect", "content": merged})
        return _text_reply(request, _after_tool_results(request.messages))
    user_text = (last.content or "") if last is not None and last.role == "user" else ""
    arguments = _memory_arguments(user_text)
    if arguments is None:
        return _text_reply(request, _echo(user_text))
    if not any(tool.name == MEMORY_TOOL for tool in request.tools):
        return _text_reply(
            request,
            "That looks like a memory request, but this agent has no memory tool: "
            "add `memory` to spec.tools in its agent.yaml.",
        )
    return _tool_call(request, arguments)


def _tool_call(request: LLMRequest, arguments: dict[str, Any]) -> list[StreamChunk]:
    arguments_json = json.dumps(arguments)
    call = ToolCall(f"demo_call_{len(request.messages)}", MEMORY_TOOL, arguments)
    return [
        ToolCallDelta(0, call.id, call.name, arguments_json),
        ToolCallComplete(call),
        Usage(_count_words(request.messages), _words(arguments_json)),
        Finish("tool_calls"),
    ]


def _memory_arguments(text: str) -> dict[str, Any] | None:
    if _REFLECT.match(text):
        return {"action": "reflect"}
    remember = _REMEMBER.match(text)
    if remember:
        return {"action": "remember", "section": "fact", "content": remember["content"].strip()}
    recall = _RECALL.search(text)
    if recall:
        query = (recall["query"] or recall["about"] or "").strip()
        if query.casefold() in _ABOUT_EVERYTHING:
            query = ""
        return {"action": "recall", "query": query} if query else {"action": "recall"}
    return None


def _reflection_to_write(messages: tuple[Message, ...]) -> str | None:
    """After `memory reflect` showed the material: the merged MEMORY.md to write back, else None."""
    result = messages[-1]
    calls = {call.id: call for m in messages for call in m.tool_calls}
    call = calls.get(result.tool_call_id or "")
    if call is None or call.name != MEMORY_TOOL or call.arguments != {"action": "reflect"}:
        return None
    return merge_reflection(result.content or "")


def merge_reflection(material: str) -> str:
    """MEMORY.md merging the bullets of the current MEMORY.md and the daily files, by section.

    Deterministic: what the current MEMORY.md holds above its first `## ` heading (a person's
    title, notes and bullets, which no section holds) stays as it was; then sections in the
    canonical order (decisions, preferences, facts) then others as first seen; bullets in order
    of first appearance (MEMORY.md first, then oldest day first), duplicates (ignoring case and
    spacing) kept once.
    """
    from datetime import date

    from duragent.memory.markdown import parse_daily, section_heading
    from duragent.stores.base import SECTION_HEADINGS

    blocks: list[tuple[str | None, str]] = []
    matches = list(_REFLECT_PART.finditer(material))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(material)
        blocks.append((match["day"], material[match.end() : end]))
    current = [text for day, text in blocks if day is None]
    days = sorted((day, text) for day, text in blocks if day is not None)
    sections: dict[str, list[str]] = {key: [] for key in SECTION_HEADINGS}
    seen: set[tuple[str, str]] = set()
    for day, text in [(None, t) for t in current] + days:
        when = date.fromisoformat(day) if day else date.min
        for entry in parse_daily(text, when):
            key = (entry.section, " ".join(entry.text.casefold().split()))
            if key not in seen:
                seen.add(key)
                sections.setdefault(entry.section, []).append(entry.text)
    lines = [_preamble(current[0] if current else "") or "# Long-term memory"]
    for section, bullets in sections.items():
        if bullets:
            lines += ["", f"## {section_heading(section)}"]
            for bullet in bullets:
                first, *rest = bullet.split("\n")
                lines += [f"- {first}", *(f"  {line}" for line in rest)]
    return "\n".join(lines) + "\n"


def _preamble(long_term: str) -> str:
    """The text of MEMORY.md (as `reflect` shows it) above its first `## ` heading, or ""."""
    text = long_term.strip()
    if text == "(empty)":  # how `reflect` shows a missing or empty MEMORY.md
        return ""
    heading = re.search(r"^##[ \t]", text, re.MULTILINE)
    return (text[: heading.start()] if heading else text).rstrip()


def _after_tool_results(messages: tuple[Message, ...]) -> str:
    results: list[Message] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.insert(0, message)
    calls = {call.id: call for m in messages for call in m.tool_calls}
    lines = []
    for result in results:
        call = calls.get(result.tool_call_id or "")
        name = result.name or (call.name if call is not None else "tool")
        recalled = _RECALLED_ENTRY.findall(result.content or "")
        if call is not None and call.arguments.get("action") == "recall" and recalled:
            # What the person asked to see is what was remembered, not MEMORY.md's preamble.
            facts = "; ".join(recalled)
            lines.append(f'I remember: "{_quote(facts)}".')
        else:
            lines.append(f'The {name} tool replied: "{_quote(result.content or "")}".')
    return " ".join(lines)


def _echo(text: str) -> str:
    if not text.strip():
        return "You sent an empty message."
    count = _words(text)
    return f'You wrote {count} word{"" if count == 1 else "s"}: "{_quote(text)}".'


def _text_reply(request: LLMRequest, text: str) -> list[StreamChunk]:
    reply = f"{text}\n\n{CONFIGURE_HINT}"
    pieces = re.findall(r"\S+\s*", reply)
    deltas: list[StreamChunk] = [
        TextDelta("".join(pieces[start : start + _WORDS_PER_DELTA]))
        for start in range(0, len(pieces), _WORDS_PER_DELTA)
    ]
    return [*deltas, Usage(_count_words(request.messages), len(pieces)), Finish("stop")]


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _QUOTE_LIMIT else flat[: _QUOTE_LIMIT - 1] + "…"


def _words(text: str) -> int:
    return len(text.split())


def _count_words(messages: tuple[Message, ...]) -> int:
    """Usage for the demo is counted in words, which is honest about there being no tokenizer."""
    return sum(_words(message.content or "") for message in messages)
