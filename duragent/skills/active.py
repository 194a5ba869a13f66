"""Which skills are active in a turn, and the tool restriction their `allowed-tools` impose.

A skill is active from the step after the `skill` tool loaded it until the turn ends (the next
user message). Each active skill with `allowed-tools` narrows the calls the turn may make to
the tools it lists; several such skills narrow it to what all of them allow, so loading another
skill never widens it. The `skill` tool itself stays callable. The restriction only ever
refuses: a call it lets through is still decided by the agent's policy.

Activity is read from the session's conversation, so a turn resumed after a restart keeps it;
so is each skill's restriction: as the `skill` tool recorded it when it loaded the skill
(`allowed_tools` in its result), so editing or removing the skill during the turn (the agent
itself, with a file tool) neither lifts nor widens it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from duragent.runtime.policy import ToolPolicy
from duragent.skills.skill import Skill

SKILL_TOOL = "skill"

#: Tool names other Agent Skills runtimes write in `allowed-tools`, as our tools are named.
TOOL_ALIASES = {
    "Bash": "bash",
    "Read": "read_file",
    "Write": "write_file",
    "Edit": "edit_file",
    "Glob": "list_files",
    "LS": "list_files",
    "WebFetch": "web_fetch",
    "WebSearch": "web_search",
}
#: How Claude Code names MCP tools (`mcp__github__get_issue`); the entry is also kept as it is,
#: for a tool of an MCP server of ours named `mcp` (`mcp__get_issue`).
_MCP_PREFIX = "mcp__"
_CALL_FORM = re.compile(r"^(?P<tool>[A-Za-z_][\w-]*)\((?P<argument>.*)\)$")


@dataclass(frozen=True)
class Restriction:
    """An active skill's `allowed-tools`."""

    name: str
    allowed_tools: tuple[str, ...]


def loaded_skills(conversation: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the skills the `skill` tool loaded successfully in the current turn, in order."""
    loaded: list[str] = []
    for name, _result in _loads(conversation):
        if name not in loaded:
            loaded.append(name)
    return loaded


def restricting_skills(
    conversation: Sequence[Mapping[str, Any]], skills: Mapping[str, Skill]
) -> list[Restriction]:
    """The restrictions of the current turn's active skills, each as recorded when it was loaded.

    (A load recorded before results kept the restriction is read from the skill as it is now.)
    """
    restrictions: list[Restriction] = []
    for name, result in _loads(conversation):
        if RECORDED in result:
            allowed = result[RECORDED]
        else:
            skill = skills.get(name)
            allowed = skill.allowed_tools if skill is not None else None
        if allowed is not None:
            restriction = Restriction(name, tuple(str(entry) for entry in allowed))
            if restriction not in restrictions:
                restrictions.append(restriction)
    return restrictions


#: The key of a `skill` result's conversation entry that keeps the skill's `allowed-tools`.
RECORDED = "allowed_tools"


def _loads(conversation: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(skill name, its result's entry) for each successful `skill` load of the current turn."""
    requested: dict[Any, str] = {}
    for message in _current_turn(conversation):
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                arguments = call.get("arguments") or {}
                if call.get("name") == SKILL_TOOL and isinstance(arguments.get("name"), str):
                    requested[call.get("id")] = arguments["name"]
        elif message.get("role") == "tool" and not message.get("is_error"):
            name = requested.get(message.get("tool_call_id"))
            if name:
                yield name, message


def refusal(restricting: Sequence[Restriction], tool: str, invocation: str) -> str | None:
    """Why this call is refused under the active skills' `allowed-tools`, or None when it may go on."""
    if tool == SKILL_TOOL:
        return None
    for skill in restricting:
        patterns = tuple(p for entry in skill.allowed_tools for p in policy_patterns(entry))
        if ToolPolicy(mode="deny", allow=patterns).decide(tool, invocation).decision != "allow":
            listed = " ".join(skill.allowed_tools) or "(none)"
            return (
                f"refused: skill {skill.name!r} is active and allows only these tools: {listed} "
                f"({tool} {invocation}".rstrip()
                + ")"
            )
    return None


def policy_patterns(entry: str) -> list[str]:
    """An `allowed-tools` entry as policy patterns.

    Our own form (`read_file`, `bash:git *`) is kept; the `Tool(argument)` form other runtimes
    use is translated: `Read` -> `read_file`, `Bash(git:*)` -> `bash:git` and `bash:git *`, and
    so are Claude Code's names of MCP tools: `mcp__github__get_issue` -> `mcp:github:get_issue`.
    """
    if entry.startswith(_MCP_PREFIX):
        return [entry, _mcp_pattern(entry.removeprefix(_MCP_PREFIX))]
    match = _CALL_FORM.fullmatch(entry)
    if match is None:
        return [TOOL_ALIASES.get(entry, entry)]
    tool = TOOL_ALIASES.get(match["tool"], match["tool"])
    argument = match["argument"].strip()
    if argument.endswith(":*"):
        prefix = argument[:-2]
        return [f"{tool}:{prefix}", f"{tool}:{prefix} *"]
    return [f"{tool}:{argument}"] if argument else [tool]


def _mcp_pattern(named: str) -> str:
    """The policy pattern of what follows `mcp__` in an MCP tool named as Claude Code names it:
    `*` (every MCP tool), `<server>` or `<server>__*` (all its tools), `<server>__<tool>`."""
    server, _, tool = named.partition("__")
    if server == "*":
        return "mcp:*"
    return f"mcp:{server}:{tool or '*'}"


def _current_turn(conversation: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The messages since the last user message that began a turn (silent ones do not)."""
    for index in range(len(conversation) - 1, -1, -1):
        message = conversation[index]
        if message.get("role") == "user" and not message.get("silent"):
            return conversation[index + 1 :]
    return conversation
