"""Context assembly: what the model sees each turn, in priority order, inside a token budget.

Order: prime directives, SOUL.md, SYSTEM_PROMPT.md, INSTRUCTIONS.md, the skills index,
memory, then the conversation. The tool definitions the request offers are taken off the budget
first (they are sent whatever else fits); fixed parts are always kept; memory gets at most its
share of what is left; the conversation fills the rest, newest first, so the oldest history is
dropped first. Large tool results are cut to their head and tail with a marker.

Tokens are estimated as ceil(characters / 4) (no tokenizer is downloaded at run time); the
estimate errs on the generous side for English and code, and the budget keeps a 10% margin.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from duragent.agents.loader import Agent
from duragent.llm.encoded import EncodedTools
from duragent.llm.tool_format import tools_as_sent
from duragent.llm.types import Message, ToolCall, ToolDefinition
from duragent.sessions.state import SessionState

PRIME_DIRECTIVES = """\
You are an agent run by Duragent. Act only through the tools you are given and only on the \
user's behalf; pursue no goals of your own. Defer to the people overseeing you. Confirm before \
doing anything destructive unless the policy already allows it. If a tool fails, report the \
error clearly instead of retrying the same call in a loop. Verify the state of things before \
acting on assumptions."""

DEFAULT_OUTPUT_TOKENS = 4096
TOOL_RESULT_MAX_TOKENS = 4000
MEMORY_SHARE = 0.25
#: Ends a reply the stream cut off (a stored `partial` assistant message) when the model reads it
#: again: it is not to take its half answer for one it finished.
PARTIAL_NOTE = "[this reply was cut off before it finished]"

#: Context windows by model-name fragment, first match wins (checked in order).
_CONTEXT_WINDOWS = (
    ("demo", 16_000),
    ("claude", 200_000),
    ("gpt-4.1", 1_000_000),
    ("gpt-5", 400_000),
    ("gpt-4o", 128_000),
    ("gpt-4", 128_000),
    ("gemini", 1_000_000),
    ("llama", 128_000),
    ("qwen", 128_000),
    ("mistral", 128_000),
    ("deepseek", 128_000),
)
DEFAULT_CONTEXT_WINDOW = 128_000


def estimate_tokens(text: str) -> int:
    """The documented estimate: one token per four characters, rounded up."""
    return (len(text) + 3) // 4


def context_window(agent: Agent) -> int:
    """`spec.context.max_tokens`, else the known window of the model, else 128k."""
    if agent.spec.context.max_tokens:
        return agent.spec.context.max_tokens
    return _model_window(agent.spec.model.provider, agent.spec.model.name)


@lru_cache(maxsize=256)
def _model_window(provider: str, model: str) -> int:
    """The known context window of a model, else 128k (looked up once per model: every turn asks)."""
    name = f"{provider}/{model}".lower()
    return next((size for fragment, size in _CONTEXT_WINDOWS if fragment in name), DEFAULT_CONTEXT_WINDOW)


def context_budget(agent: Agent) -> int:
    """Tokens the assembled context may use: the window less the reply and a 10% margin."""
    window = context_window(agent)
    return max(window - reply_reserve(agent, window) - window // 10, 256)


def reply_reserve(agent: Agent, window: int) -> int:
    """Tokens kept free for the reply: `max_output_tokens`, else 4096 but at most a quarter of the
    window (a 4k local model would otherwise have no room left for the conversation)."""
    return agent.spec.model.max_output_tokens or min(DEFAULT_OUTPUT_TOKENS, window // 4)


def memory_share(agent: Agent, room: int) -> int:
    """Tokens memory may use out of `room` (the budget less the tools): `spec.memory.max_tokens`,
    else `MEMORY_SHARE` of the room."""
    spec = agent.spec.memory
    if spec is not None and spec.max_tokens:
        return spec.max_tokens
    return int(max(room, 0) * MEMORY_SHARE)


_COMPACT = json.JSONEncoder(separators=(",", ":"))


class ToolTokens:
    """The estimated tokens of the tool definitions a request offers, as `provider` sends them.

    Every model call of a turn offers the same tools, and MCP schemas can be long: a list is
    encoded once per provider format, then found again by equality (`EncodedTools`).
    """

    def __init__(self) -> None:
        self._encoded: dict[str, EncodedTools] = {}

    def count(self, provider: str, tools: Sequence[ToolDefinition]) -> int:
        """Tokens of `tools`' JSON in `provider`'s format (0 without tools)."""
        if not tools:
            return 0
        encoded = self._encoded.get(provider)
        if encoded is None:
            encoded = self._encoded[provider] = EncodedTools(
                lambda listed: _COMPACT.encode(tools_as_sent(provider, listed))
            )
        return estimate_tokens(encoded.text(tools))


def expand_template(text: str, variables: dict[str, str]) -> str:
    """Replace `{{name}}` (spaces inside the braces allowed); unknown names stay as written."""
    if "{{" not in text:
        return text
    for name, value in variables.items():
        text = text.replace("{{" + name + "}}", value).replace("{{ " + name + " }}", value)
    return text


def cut_middle(text: str, max_tokens: int) -> str:
    """Keep the head and tail of an overlong text with a marker saying how much was cut."""
    limit = max_tokens * 4
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half} characters cut …]\n{text[-half:]}"


@dataclass(frozen=True)
class ContextPart:
    """One part of the assembled context and its estimated size."""

    name: str
    text: str
    tokens: int


@dataclass(frozen=True)
class AssembledContext:
    """The messages to send, and an account of what went in and what was left out."""

    messages: tuple[Message, ...]
    parts: tuple[ContextPart, ...]
    history_kept: int
    history_dropped: int
    #: everything sent, the tool definitions included
    tokens: int
    budget: int
    #: what the tool definitions take of `budget`
    tools_tokens: int = 0


def to_message(entry: dict[str, Any]) -> Message:
    """A stored conversation entry (state.yaml / replayed events) as an LLM message."""
    calls = tuple(
        ToolCall(id=str(c.get("id")), name=str(c.get("name")), arguments=dict(c.get("arguments") or {}))
        for c in entry.get("tool_calls") or ()
    )
    content = entry.get("content")
    if entry.get("partial"):
        said = (content or "").rstrip()
        content = f"{said}\n\n{PARTIAL_NOTE}" if said else PARTIAL_NOTE
    return Message(
        role=entry["role"],
        content=content,
        tool_calls=calls,
        tool_call_id=entry.get("tool_call_id"),
        name=entry.get("name"),
        is_error=bool(entry.get("is_error")),
    )


def _message_tokens(message: Message) -> int:
    size = estimate_tokens(message.content or "") + 4
    for call in message.tool_calls:
        size += estimate_tokens(call.name + json.dumps(call.arguments)) + 4
    return size


def assemble_context(
    agent: Agent,
    state: SessionState,
    *,
    memory_text: str = "",
    skills_text: str = "",
    now: datetime,
    budget: int | None = None,
    tools_tokens: int = 0,
) -> AssembledContext:
    """Build this turn's messages for `agent` from the session's conversation.

    `skills_text` is the skills index (already fitted to its share of the budget). `budget` is
    `context_budget(agent)` unless given (the runtime's, smaller once the model refused a larger
    context). `tools_tokens` (what the request's tool definitions take) comes off the budget first.
    """
    if budget is None:
        budget = context_budget(agent)
    room = budget - tools_tokens
    soul, system_prompt, instructions = agent.soul, agent.system_prompt, agent.instructions
    templated = "{{" in soul or "{{" in system_prompt or "{{" in instructions
    variables = tuple(_variables(agent, state, now).items()) if templated else ()
    parts = list(_prompt_parts(soul, system_prompt, instructions, variables))
    if skills_text.strip():
        parts.append(ContextPart("skills", skills_text.strip(), estimate_tokens(skills_text.strip())))
    if memory_text.strip():
        text = cut_middle(memory_text.strip(), memory_share(agent, room))
        parts.append(ContextPart("memory", text, estimate_tokens(text)))
    system = "\n\n".join([part.text for part in parts])
    used = estimate_tokens(system) + 4
    history, dropped, history_tokens = _fit_history(state, room - used)
    used += history_tokens + tools_tokens
    kept = len(history)
    # (in place: a long history is copied once, into the tuple, not first into a new list)
    history.insert(0, Message(role="system", content=system))
    return AssembledContext(tuple(history), tuple(parts), kept, dropped, used, budget, tools_tokens)


@lru_cache(maxsize=64)
def _prompt_parts(
    soul: str, system_prompt: str, instructions: str, variables: tuple[tuple[str, str], ...]
) -> tuple[ContextPart, ...]:
    """The prime directives and the agent's prompts with `variables` filled in, made once per
    prompt text and variables (`{{time}}` in them changes once a minute, not every turn)."""
    parts = [ContextPart("prime directives", PRIME_DIRECTIVES, estimate_tokens(PRIME_DIRECTIVES))]
    named = (("SOUL.md", soul), ("SYSTEM_PROMPT.md", system_prompt), ("INSTRUCTIONS.md", instructions))
    for name, text in named:
        if text.strip():
            expanded = expand_template(text.strip(), dict(variables))
            parts.append(ContextPart(name, expanded, estimate_tokens(expanded)))
    return tuple(parts)


def _variables(agent: Agent, state: SessionState, now: datetime) -> dict[str, str]:
    """What `{{name}}` in the prompts stands for (date and time as strftime's `%Y-%m-%d` and
    `%H:%M %Z` would write them, which cost several times as much)."""
    return {
        "date": now.date().isoformat(),
        "time": f"{now.hour:02d}:{now.minute:02d} {now.tzname() or ''}".strip(),
        "agent_name": agent.name,
        "agent.name": agent.name,
        "session_id": state.session_id,
    }


@dataclass
class _HistoryCache:
    """The conversation as LLM messages, their token estimates and running totals, built once each.

    Kept on the session state (the conversation grows; `forget_derived` drops it otherwise), so a
    turn's context costs the new messages plus a binary search, not a walk over the whole
    conversation.
    """

    messages: list[Message] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    #: totals[i] = tokens of messages[:i]
    totals: list[int] = field(default_factory=lambda: [0])


def _history(state: SessionState) -> _HistoryCache:
    """The session's converted history, extended with the messages added since the last call."""
    holder: list[Any] = state.context_cache
    if (
        not holder
        or not isinstance(holder[0], _HistoryCache)
        or len(holder[0].messages) > len(state.conversation)
    ):
        holder[:] = [_HistoryCache()]
    cache: _HistoryCache = holder[0]
    for entry in state.conversation[len(cache.messages) :]:
        message = to_message(entry)
        if message.role == "tool" and message.content:
            message = Message(
                role="tool",
                content=cut_middle(message.content, TOOL_RESULT_MAX_TOKENS),
                tool_call_id=message.tool_call_id,
                name=message.name,
                is_error=message.is_error,
            )
        size = _message_tokens(message)
        cache.messages.append(message)
        cache.tokens.append(size)
        cache.totals.append(cache.totals[-1] + size)
    return cache


def _fit_history(state: SessionState, budget: int) -> tuple[list[Message], int, int]:
    """The newest messages that fit `budget`: (a new list of them, how many were dropped, their
    tokens).

    What is kept is a conversation every provider accepts: it opens with a user message, a tool
    batch stays with the assistant message that called it, and the last user message is always
    kept. When the last user message and what followed it are over the budget on their own,
    their largest tool results are cut (head and tail), then their oldest batches dropped; the
    newest message is kept even if it alone is over the budget. System messages that open the
    history (a stateless OpenAI client's own instructions) are always kept, ahead of the rest.
    """
    history = _history(state)
    messages, totals = history.messages, history.totals
    count = len(messages)
    lead = 0
    while lead < count and messages[lead].role == "system":
        lead += 1
    lead_tokens = totals[lead]
    budget -= lead_tokens
    total = totals[-1]
    last_user = next((i for i in range(count - 1, -1, -1) if messages[i].role == "user"), None)
    # The first start whose suffix fits: totals[start] >= total - budget.
    start = max(min(bisect.bisect_left(totals, total - budget), max(count - 1, 0)), lead)
    if last_user is None or last_user < lead:
        # (no user message at all: only a window that does not open with orphaned tool results)
        while start < count and messages[start].role == "tool":
            start += 1
        return _window(messages, lead, start), start - lead, total - totals[start] + lead_tokens
    if start <= last_user:
        # the window fits: open it at the first user message inside it
        while messages[start].role != "user":
            start += 1
        return _window(messages, lead, start), start - lead, total - totals[start] + lead_tokens
    kept = _fit_turn(messages[last_user:], history.tokens[last_user:], budget)
    tokens = sum(_message_tokens(message) for message in kept) + lead_tokens
    return messages[:lead] + kept, last_user - lead, tokens


def _window(messages: list[Message], lead: int, start: int) -> list[Message]:
    """The `lead` opening messages and those from `start` on, as a new list: a long history is
    copied once (each copy touches every message: a cost that grows with the session)."""
    return messages[start:] if lead == 0 else messages[:lead] + messages[start:]


#: A tool result is never cut below this many tokens to make a turn fit.
_TOOL_RESULT_FLOOR = 64


def _fit_turn(turn: list[Message], tokens: list[int], budget: int) -> list[Message]:
    """The last user message and what followed it, made to fit `budget` if it can."""
    if sum(tokens) <= budget:
        return turn
    tools = [i for i, message in enumerate(turn) if message.role == "tool" and message.content]
    others = sum(size for i, size in enumerate(tokens) if i not in set(tools))
    cap = _largest_cap(sorted(tokens[i] for i in tools), budget - others)
    fitted = list(turn)
    for i in tools:
        if tokens[i] > cap:
            message = turn[i]
            content = cut_middle(message.content or "", max(cap - 24, 1))  # the marker costs ~20
            fitted[i] = replace(message, content=content)  # (a failed call's result still says so)
    # Still over (many calls, long arguments): drop the oldest batches after the user message.
    while sum(map(_message_tokens, fitted)) > budget:
        first = next((i for i in range(1, len(fitted)) if fitted[i].tool_calls), None)
        if first is None:
            break
        end = first + 1
        while end < len(fitted) and fitted[end].role == "tool":
            end += 1
        if end >= len(fitted):
            break  # the newest message belongs to this batch: it stays
        del fitted[first:end]
    return fitted


def _largest_cap(sizes: list[int], room: int) -> int:
    """The largest per-result size such that the results, each cut to it, fit in `room` tokens."""
    if sum(sizes) <= room:
        return max(sizes, default=0)
    low, high = _TOOL_RESULT_FLOOR, max(sizes, default=_TOOL_RESULT_FLOOR)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(size, middle) for size in sizes) <= room:
            low = middle
        else:
            high = middle - 1
    return low
