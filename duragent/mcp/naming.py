"""How an MCP tool is named to the model: `<server>__<tool>`, and back.

Model APIs accept names of letters, digits, `_` and `-`, at most 64 characters, so a tool's name
is made safe (`a.b` becomes `a_b`) and cut. Two tools can then end up with the same name (`a.b`
and `a_b` of one server, two names cut at the same character, `x_` + `y` and `x` + `_y` from two
servers): `tool_names` keeps every one of them, telling them apart with a numbered suffix
`__2`, `__3`... (see its docstring for the rule). The policy reads a name back with
`split_tool_name`, which drops that suffix, so `mcp:<server>:<tool>` patterns reach every tool.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Separates the server's name from the tool's in the name the model sees.
SEPARATOR = "__"
#: The longest tool name model APIs accept.
MAX_NAME = 64
#: Room a numbered suffix takes at most: `__` and three digits.
SUFFIX_ROOM = 5
#: The most tools that may share one name (a suffix has at most three digits).
MAX_SUFFIX = 999
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: A tool part ending in a numbered suffix: what it is without it, and the number.
_SUFFIXED = re.compile(r"(.+)__([0-9]+)")


def tool_name(server: str, tool: str) -> str:
    """The name `tool` of `server` gets unless it shares it with another tool (unsafe characters
    become `_`, cut at 64); `tool_names` gives the names the model actually sees."""
    return f"{server}{SEPARATOR}{_UNSAFE.sub('_', tool)}"[:MAX_NAME]


def tool_names(tools: Sequence[tuple[str, str]]) -> list[str | None]:
    """The name the model sees for each (server, tool name), every one distinct.

    A tool keeps `tool_name` unless another has the same: of those, the one whose name is its
    own unchanged (`a_b`, not `a.b`) comes first, then by server and tool name; the first keeps
    the name, the next get `__2`, `__3`... (the name cut to make room, a number another tool
    already has skipped). A name that would end like a suffix (a tool called `step__1`) gets one
    too (`__1`), so a suffix is never mistaken. The names depend on the tool list only, not on its
    order: the same tools get the same names after a restart. None for a tool past the 999th of
    one name (not offered).
    """
    groups: dict[str, list[int]] = {}
    for index, (server, tool) in enumerate(tools):
        groups.setdefault(tool_name(server, tool), []).append(index)
    names: list[str | None] = [None] * len(tools)
    taken: set[str] = set()
    for base, members in groups.items():
        members.sort(
            key=lambda i: (tool_name(*tools[i]) != f"{tools[i][0]}{SEPARATOR}{tools[i][1]}", tools[i])
        )
        if not _looks_suffixed(base):
            names[members[0]] = base
            taken.add(base)
    for base in sorted(groups):
        members = groups[base]
        # The first keeps the name (numbered 1, had it one), the next are numbered from 2.
        number = 0 if _looks_suffixed(base) else 1
        for member in members[number:]:
            number += 1
            while number <= MAX_SUFFIX and _suffixed(base, number) in taken:
                number += 1
            if number > MAX_SUFFIX:
                break
            name = _suffixed(base, number)
            names[member] = name
            taken.add(name)
    return names


def _looks_suffixed(name: str) -> bool:
    tool = name.partition(SEPARATOR)[2]
    return _SUFFIXED.fullmatch(tool) is not None


def _suffixed(base: str, number: int) -> str:
    suffix = f"{SEPARATOR}{number}"
    return base[: MAX_NAME - len(suffix)] + suffix


def is_numbered(name: str) -> bool:
    """Whether `name` is an MCP tool's with a number `tool_names` gave it (`files__a_b__2`): that
    number can pass to another tool once the server's tool list changes, so no lasting policy
    entry may name it."""
    server, separator, tool = name.partition(SEPARATOR)
    return bool(separator and server and _SUFFIXED.fullmatch(tool))


def split_tool_name(name: str) -> tuple[str, str] | None:
    """`("time", "get_current_time")` for `time__get_current_time`; None for any other name.

    The tool part is as the policy compares it: without a numbered suffix (`files__a_b__2` is
    `("files", "a_b")`) and cut to leave room for one, as `pattern_as_seen` cuts a pattern.
    """
    server, separator, tool = name.partition(SEPARATOR)
    if not separator or not server or not tool:
        return None
    suffixed = _SUFFIXED.fullmatch(tool)
    if suffixed is not None:
        tool = suffixed.group(1)
    return server, tool[: _compared_length(server)]


def _compared_length(server: str) -> int:
    """How much of a tool's name of `server` the policy compares: what is left of 64 characters
    after the server, the separator and room for a suffix."""
    return MAX_NAME - len(server) - len(SEPARATOR) - SUFFIX_ROOM


#: Characters of a tool name the model never sees, but glob characters, which a pattern keeps.
_UNSAFE_OUTSIDE_GLOBS = re.compile(r"[^A-Za-z0-9_\-*?\[\]!]")


def pattern_as_seen(server_glob: str, tool_glob: str) -> str:
    """A policy pattern's `<tool>` part as the policy compares tool names (`split_tool_name`):
    `mcp:files:delete.file` must name `files__delete_file`, or a deny written with the server's
    own name would miss the tool. A long name is cut the same way."""
    seen = _UNSAFE_OUTSIDE_GLOBS.sub("_", tool_glob)
    room = _compared_length(server_glob)
    if not any(char in server_glob + seen for char in "*?[") and len(seen) > room > 0:
        seen = seen[:room]
    return seen
