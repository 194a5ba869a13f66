"""An MCP server's tool as a Duragent tool: its name, its schema, its call and its result.

The model sees `<server>__<tool>` (characters other than letters, digits, `_` and `-` become
`_`, at most 64 in all, as model APIs require; a numbered suffix sets apart tools whose names
would be the same, see `duragent.mcp.naming`) with the server's description and JSON schema.
The policy sees the call's arguments as compact JSON (`time__get_current_time:{"timezone":"UTC"}`),
and also answers to `mcp:<server>:<tool>` patterns (see `duragent.runtime.policy`).

A result becomes text the model reads: text blocks as they are, images and audio stored as
the agent's artifacts (the text says where), embedded resources inline when they are text,
structured content as JSON when no text came with it. `isError` results are failed results.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict

from duragent.errors import DuragentError
from duragent.ids import ulid
from duragent.mcp.naming import tool_name
from duragent.stores.base import ArtifactMeta
from duragent.tools.base import InvalidToolArguments, Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import cap_text

if TYPE_CHECKING:
    import mcp_types

Call = Callable[[str, dict[str, Any]], Awaitable["mcp_types.CallToolResult"]]


class McpArgs(ToolArgs):
    """The model's arguments, passed to the server as they are (the server validates them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: dict[str, Any]


class McpTool(Tool[McpArgs]):
    """One tool of an MCP server, calling it through the server's connection."""

    Args = McpArgs

    def __init__(self, server: str, tool: mcp_types.Tool, call: Call, name: str | None = None) -> None:
        self.server = server
        self.mcp_name = tool.name
        #: What the model calls it: `name` (from `tool_names`, distinct among the agent's tools).
        self.name = name or tool_name(server, tool.name)
        described = tool.description or tool.title or f"The {tool.name} tool"
        self.description = f"{described} (MCP server {server})"
        self._schema = dict(tool.input_schema) or {"type": "object", "properties": {}}
        self._call = call

    def parameters(self) -> dict[str, Any]:
        """The JSON schema the server published for the tool's arguments."""
        return self._schema

    def parse_arguments(self, raw: Any) -> McpArgs:
        """Any JSON object (the server checks it against its schema)."""
        if not isinstance(raw, dict):
            raise InvalidToolArguments(f"invalid arguments for {self.name}: expected a JSON object")
        return McpArgs(values=raw)

    def invocation(self, args: McpArgs, ctx: ToolContext) -> str:
        """The arguments as compact JSON with sorted keys: what an exact policy pattern matches."""
        return json.dumps(args.values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    async def run(self, args: McpArgs, ctx: ToolContext) -> ToolResult:
        """Call the tool on its server and turn the result into text for the model."""
        try:
            result = await self._call(self.mcp_name, dict(args.values))
        except DuragentError as exc:
            return ToolResult(False, f"{self.name} failed: {exc}")
        return await tool_result(result, ctx, self.name)


async def tool_result(result: mcp_types.CallToolResult, ctx: ToolContext, name: str) -> ToolResult:
    """The model's view of an MCP result; binary content is stored as the agent's artifacts."""
    import mcp_types

    parts: list[str] = []
    saved: list[dict[str, Any]] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, (mcp_types.ImageContent, mcp_types.AudioContent)):
            parts.append(await _store_binary(block.data, block.mime_type, name, ctx, saved))
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(f"[resource {resource.uri}]\n{resource.text}")
            else:
                mime = resource.mime_type or "application/octet-stream"
                parts.append(await _store_binary(resource.blob, mime, name, ctx, saved))
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link: {block.uri}" + (f" ({block.name})" if block.name else "") + "]")
    structured = result.structured_content
    if structured is not None and not any(parts):
        parts.append(json.dumps(structured, ensure_ascii=False, indent=2))
    text = "\n".join(part for part in parts if part) or ("(no output)" if not result.is_error else "failed")
    data: dict[str, Any] = {}
    if structured is not None:
        data["structured"] = structured
    if saved:
        data["artifacts"] = saved
    return ToolResult(not result.is_error, cap_text(text, ctx.limits.output_cap_bytes), data or None)


async def _store_binary(
    encoded: str, mime: str, tool: str, ctx: ToolContext, saved: list[dict[str, Any]]
) -> str:
    """Store base64 content as an artifact `mcp/<tool>/<id><ext>`; the line that says where."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return f"[{mime} content that is not valid base64: dropped]"
    if ctx.artifacts is None:
        return f"[{mime}, {len(data)} bytes: not kept, artifacts are not available to this agent]"
    extension = mimetypes.guess_extension(mime) or ".bin"
    artifact = f"mcp/{tool}/{ulid().lower()}{extension}"
    try:
        ref = await ctx.artifacts.put(ctx.agent, artifact, _one_chunk(data), ArtifactMeta(content_type=mime))
    except (DuragentError, OSError) as exc:
        return f"[{mime}, {len(data)} bytes: could not be stored: {exc}]"
    saved.append({"name": ref.name, "content_type": mime, "size": len(data), "url": ref.url})
    return f"[{mime}, {len(data)} bytes, stored as artifact {ref.name}]"


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
