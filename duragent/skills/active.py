"""Which skills are active in a turn, and the tool restriction their `allowed-tools` impose.

A skill is active from the step after the `skill` tool loaded it until the turn ends (the next
user message). Each active skill with `allowed-tools` narrows the calls the turn may make to
the tools it lists; several such skills narrow it to what all of them allow, so loading another
skill never widens it. The `skill` tool itself stays callable. The restriction only ever
refuses: a call it lets through is still decided by the agent's policy.

Activity is read from the session's conversation, so a turn resumed after a restart keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
_CALL_FORM = re.compile(r"^(?P<tool>[A-Za-z_][\w-]*)\((?P<argument>.*)\)$")


def loaded_skills(conversation: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the skills the `skill` tool loaded successfully in the current turn, in order."""
    requested: dict[Any, str] = {}
    loaded: list[str] = []
    for message in _current_turn(conversation):
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                arguments = call.get("arguments") or {}
                if call.get("name") == SKILL_TOOL and isinstance(arguments.get("name"), str):
                    requested[call.get("id")] = arguments["name"]
        elif message.get("role") == "tool" and not message.get("is_error"):
            name = requested.get(message.get("tool_call_id"))
            if name and name not in loaded:
                loaded.append(name)
    return loaded


def restricting_skills(conversation: Sequence[Mapping[str, Any]], skills: Mapping[str, Skill]) -> list[Skill]:
    """The active skills that have `allowed-tools`."""
    active = (skills.get(name) for name in loaded_skills(conversation))
    return [skill for skill in active if skill is not None and skill.allowed_tools is not None]


def refusal(restricting: Sequence[Skill], tool: str, invocation: str) -> str | None:
    """Why this call is refused under the active skills' `allowed-tools`, or None when it may go on."""
    if tool == SKILL_TOOL:
        return None
    for skill in restricting:
        patterns = tuple(p for entry in skill.allowed_tools or () for p in policy_patterns(entry))
        if ToolPolicy(mode="deny", allow=patterns).decide(tool, invocation).decision != "allow":
            listed = " ".join(skill.allowed_tools or ()) or "(none)"
            return (
                f"refused: skill {skill.name!r} is active and allows only these tools: {listed} "
                f"({tool} {invocation}".rstrip()
                + ")"
            )
    return None


def policy_patterns(entry: str) -> list[str]:
    """An `allowed-tools` entry as policy patterns.

    Our own form (`read_file`, `bash:git *`) is kept; the `Tool(argument)` form other runtimes
    use is translated: `Read` -> `read_file`, `Bash(git:*)` -> `bash:git` and `bash:git *`.
    """
    match = _CALL_FORM.fullmatch(entry)
    if match is None:
        return [TOOL_ALIASES.get(entry, entry)]
    tool = TOOL_ALIASES.get(match["tool"], match["tool"])
    argument = match["argument"].strip()
    if argument.endswith(":*"):
        prefix = argument[:-2]
        return [f"{tool}:{prefix}", f"{tool}:{prefix} *"]
    return [f"{tool}:{argument}"] if argument else [tool]


def _current_turn(conversation: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The messages since the last user message that began a turn (silent ones do not)."""
    for index in range(len(conversation) - 1, -1, -1):
        message = conversation[index]
        if message.get("role") == "user" and not message.get("silent"):
            return conversation[index + 1 :]
    return conversation
