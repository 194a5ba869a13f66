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
