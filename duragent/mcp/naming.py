"""How an MCP tool is named to the model: `<server>__<tool>`, and back."""

from __future__ import annotations

import re

#: Separates the server's name from the tool's in the name the model sees.
SEPARATOR = "__"
#: The longest tool name model APIs accept.
MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """The name the model sees for `tool` of `server` (unsafe characters become `_`, cut at 64)."""
    return f"{server}{SEPARATOR}{_UNSAFE.sub('_', tool)}"[:MAX_NAME]


def split_tool_name(name: str) -> tuple[str, str] | None:
    """`("time", "get_current_time")` for `time__get_current_time`; None for any other name."""
    server, separator, tool = name.partition(SEPARATOR)
    if not separator or not server or not tool:
        return None
    return server, tool


#: Characters of a tool name the model never sees, but glob characters, which a pattern keeps.
_UNSAFE_OUTSIDE_GLOBS = re.compile(r"[^A-Za-z0-9_\-*?\[\]!]")


def pattern_as_seen(server_glob: str, tool_glob: str) -> str:
    """A policy pattern's `<tool>` part as the name the model sees it by (as `tool_name` makes it):
    `mcp:files:delete.file` must name `files__delete_file`, or a deny written with the server's
    own name would miss the tool. A name cut at 64 is cut the same way."""
    seen = _UNSAFE_OUTSIDE_GLOBS.sub("_", tool_glob)
    room = MAX_NAME - len(server_glob) - len(SEPARATOR)
    if not any(char in server_glob + seen for char in "*?[") and len(seen) > room > 0:
        seen = seen[:room]
    return seen
