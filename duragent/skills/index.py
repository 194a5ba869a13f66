"""The skills index in the context: each skill's name and description, within a share of the budget."""

from __future__ import annotations

from collections.abc import Sequence

from duragent.agents.loader import Agent
from duragent.runtime.context import context_budget, estimate_tokens
from duragent.skills.skill import Skill

#: Share of the context budget the index may take (it holds one line per skill, not their bodies).
INDEX_SHARE = 0.05
#: The index gets at least this many tokens, so a small context still lists a few skills.
MIN_INDEX_TOKENS = 200
_DESCRIPTION_CHARS = 300

INDEX_HEADING = """\
# Skills

Skills are instructions for particular tasks, kept in folders with files you can read. When a \
task matches a skill below, call the `skill` tool with its name first and follow what it says."""


def index_budget(agent: Agent) -> int:
    """Tokens the index may use: its share of the agent's context budget."""
    return max(MIN_INDEX_TOKENS, int(context_budget(agent) * INDEX_SHARE))


def skills_index(skills: Sequence[Skill], max_tokens: int) -> str:
    """The index text ("" without skills); entries past the budget are counted, not listed."""
    if not skills:
        return ""
    lines = [INDEX_HEADING, ""]
    used = estimate_tokens(INDEX_HEADING) + 30  # room for the "more skills" line
    listed = 0
    for skill in skills:
        line = f"- {skill.name}: {_shorten(skill.description)}"
        cost = estimate_tokens(line) + 1
        if used + cost > max_tokens:
            break
        lines.append(line)
        used += cost
        listed += 1
    if listed < len(skills):
        lines.append(
            f"- ({len(skills) - listed} more skills not listed here: call `skill` without a name to see all)"
        )
    return "\n".join(lines)


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _DESCRIPTION_CHARS else flat[: _DESCRIPTION_CHARS - 1] + "…"
