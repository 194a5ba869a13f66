"""The tool registry: builtin tools by name, an agent's tool set, definitions, and running a call.

The loop calls a tool in three steps so the policy can sit in between::

    args = tool.parse_arguments(raw)          # InvalidToolArguments -> tell the model
    decision = policy.decide(tool.name, tool.invocation(args, ctx))
    result = await execute(tool, args, ctx)   # never raises, except cancellation

`call_tool` does all three minus the policy, for callers that already decided.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

from duragent.agents.spec import ToolsSpec
from duragent.errors import ConfigError, DuragentError, NotFound
from duragent.tools.base import InvalidToolArguments, Tool, ToolContext, ToolResult
from duragent.tools.bash import CliTool
from duragent.tools.web_search import WebSearchTool

logger = logging.getLogger(__name__)

AnyTool = Tool[Any]

#: Where each builtin tool is defined (`duragent.tools.<module>`, class), by name; the names are
#: exactly `duragent.agents.spec.BUILTIN_TOOLS`. A tool's module is imported when an agent first
#: uses the tool: a server whose agents use two tools does not load the other thirteen (the web
#: fetcher's HTML parser, the process and schedule tools) at start.
BUILTINS: dict[str, tuple[str, str]] = {
    "bash": ("bash", "BashTool"),
    "read_file": ("files", "ReadFileTool"),
    "write_file": ("files", "WriteFileTool"),
    "edit_file": ("files", "EditFileTool"),
    "list_files": ("files", "ListFilesTool"),
    "web_fetch": ("web", "WebFetchTool"),
    "memory": ("memory", "MemoryTool"),
    "notify_user": ("notify", "NotifyUserTool"),
    "artifact_put": ("artifacts", "ArtifactPutTool"),
    "artifact_get": ("artifacts", "ArtifactGetTool"),
    "artifact_list": ("artifacts", "ArtifactListTool"),
    "schedule": ("schedule", "ScheduleTool"),
    "session": ("sessions", "SessionTool"),
    "background_process": ("background_process", "BackgroundProcessTool"),
    "web_search": ("web_search", "WebSearchTool"),
}

#: Builtins whose policy text is a path or a name with folders: `*` in their patterns stops at `/`
#: (the tools whose class sets `invocation_is_path`; a test keeps the two in step).
PATH_INVOCATION_TOOLS = frozenset(
    {"read_file", "write_file", "edit_file", "list_files", "artifact_put", "artifact_get", "artifact_list"}
)


class UnknownTool(NotFound):
    """No builtin tool has this name."""


def builtin_tool(name: str) -> AnyTool:
    """A fresh instance of the builtin tool `name`; UnknownTool lists the known names."""
    return builtin_class(name)()


@functools.cache
def builtin_class(name: str) -> type[AnyTool]:
    """The class of the builtin tool `name` (its module imported now if it was not yet)."""
    where = BUILTINS.get(name)
    if where is None:
        raise UnknownTool(f"unknown builtin tool {name!r}; known tools: {', '.join(BUILTINS)}")
    module, attribute = where
    cls: type[AnyTool] = getattr(importlib.import_module(f"duragent.tools.{module}"), attribute)
    return cls


def tools_for(spec: ToolsSpec, *, include_memory: bool = False) -> list[AnyTool]:
    """The tools an agent's `spec.tools` enables, in order; `include_memory` adds `memory` if absent.

    Raises ConfigError for an unknown builtin or two tools with the same name.
    """
    names = list(dict.fromkeys(spec.builtin))
    if include_memory and "memory" not in names:
        names.append("memory")
    tools: list[AnyTool] = []
    for name in names:
        # the builtins with settings of their own
        if name == WebSearchTool.name:
            tools.append(WebSearchTool(spec.web_search))
            continue
        if name == "web_fetch" and spec.web_fetch is not None:
            from duragent.tools.web import WebFetchTool  # (as `builtin_class` would: when first used)

            tools.append(WebFetchTool(spec.web_fetch.allow_networks))
            continue
        try:
            tools.append(builtin_tool(name))
        except UnknownTool as exc:
            raise ConfigError(str(exc)) from None
    taken = set(names)
    for cli in spec.cli:
        if cli.name in taken:
            raise ConfigError(f"tool name {cli.name!r} is used twice; give the cli tool another name")
        taken.add(cli.name)
        tools.append(CliTool(cli))
    return tools


def definition(tool: AnyTool) -> dict[str, Any]:
    """What the model is offered: `{"name", "description", "parameters"}` (a JSON schema)."""
    offered = tool.definition
    return {"name": offered.name, "description": offered.description, "parameters": offered.parameters}


async def execute(tool: AnyTool, args: Any, ctx: ToolContext) -> ToolResult:
    """Run a tool with validated args; an unexpected error becomes a failed result (and a log line)."""
    try:
        return await tool.run(args, ctx)
    except DuragentError as exc:
        return ToolResult(False, f"{tool.name} failed: {exc}")
    except Exception as exc:
        # The model must always get a result back; the traceback goes to the log for us.
        logger.exception("tool %s raised", tool.name)
        return ToolResult(False, f"{tool.name} failed unexpectedly: {type(exc).__name__}: {exc}")


async def call_tool(tool: AnyTool, raw_arguments: Any, ctx: ToolContext) -> ToolResult:
    """Validate the model's arguments and run the tool (no policy check: the caller decided)."""
    try:
        args = tool.parse_arguments(raw_arguments)
    except InvalidToolArguments as exc:
        return ToolResult(False, str(exc))
    return await execute(tool, args, ctx)
