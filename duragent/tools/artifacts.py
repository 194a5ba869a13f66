"""Artifact tools: `artifact_put`, `artifact_get`, `artifact_list`, through the ArtifactStore.

Artifacts are files an agent produces (reports, exports) kept apart from its working
directory; names may contain `/` folders. These tools handle text; binary artifacts are listed
and described but their bytes are not put into the model's context.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from pydantic import Field, field_validator

from duragent.errors import DuragentError
from duragent.stores.base import ArtifactMeta, ArtifactRef, ArtifactStore
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import HeadTailBuffer

DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"
LIST_LIMIT = 100
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/yaml", "+json", "+xml")
#: A media type (`text/markdown`, `application/json; charset=utf-8`): it becomes the Content-Type
#: header of the artifact's download, where a line break would split the header.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(?: *;[ -~]*)?")
_MAX_MEDIA_TYPE_LENGTH = 200


def is_media_type(value: str) -> bool:
    """Whether `value` is a media type a Content-Type header can carry (`text/markdown; charset=utf-8`)."""
    return len(value) <= _MAX_MEDIA_TYPE_LENGTH and _MEDIA_TYPE.fullmatch(value) is not None


def _is_text(content_type: str) -> bool:
    return any(marker in content_type for marker in _TEXT_TYPES)


async def _single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def find_artifact(store: ArtifactStore, agent: str, name: str) -> ArtifactRef | None:
    """The agent's artifact called exactly `name`, or None."""
    for ref in await store.list(agent, prefix=name, limit=LIST_LIMIT):
        if ref.name == name:
            return ref
    return None


class ArtifactPutArgs(ToolArgs):
    """Arguments of `artifact_put`."""

    name: str = Field(min_length=1, description="Artifact name, e.g. `reports/weekly.md`.")
    content: str = Field(description="The text to store.")
    content_type: str = Field(DEFAULT_CONTENT_TYPE, description="MIME type, e.g. text/markdown.")

    @field_validator("content_type")
    @classmethod
    def _media_type(cls, value: str) -> str:
        if not is_media_type(value):
            raise ValueError(
                "must be a media type such as text/markdown or application/json; charset=utf-8 "
                f"(printable ASCII, at most {_MAX_MEDIA_TYPE_LENGTH} characters), got {value[:80]!r}"
            )
        return value


class ArtifactPutTool(Tool[ArtifactPutArgs]):
    """Store text as an artifact."""

    name = "artifact_put"
    description = (
        "Save text as a named artifact (a file kept for the user, e.g. `reports/weekly.md`); "
        "an artifact with the same name is replaced."
    )
    Args = ArtifactPutArgs
    invocation_is_path = True

    async def run(self, args: ArtifactPutArgs, ctx: ToolContext) -> ToolResult:
        """Store the content and report its size and checksum."""
        if ctx.artifacts is None:
            return ToolResult(False, "artifacts are not available to this agent")
        data = args.content.encode("utf-8")
        meta = ArtifactMeta(content_type=args.content_type)
        try:
            ref = await ctx.artifacts.put(ctx.agent, args.name, _single_chunk(data), meta)
        except (DuragentError, OSError) as exc:
            return ToolResult(False, f"cannot store artifact {args.name!r}: {exc}")
        where = f" at {ref.url}" if ref.url else ""
        return ToolResult(
            True,
            f"stored artifact {ref.name} ({len(data)} bytes){where}",
            {
                "id": ref.id,
                "name": ref.name,
                "url": ref.url,
                "size": ref.meta.size,
                "sha256": ref.meta.sha256,
            },
        )

    def invocation(self, args: ArtifactPutArgs, ctx: ToolContext) -> str:
        """The artifact name."""
        return args.name


class ArtifactGetArgs(ToolArgs):
    """Arguments of `artifact_get`."""

    name: str = Field(min_length=1, description="The artifact's name, as artifact_list shows it.")


class ArtifactGetTool(Tool[ArtifactGetArgs]):
    """Read a text artifact."""

    name = "artifact_get"
    description = "Read a text artifact by name (long content is cut in the middle)."
    Args = ArtifactGetArgs
    invocation_is_path = True

    async def run(self, args: ArtifactGetArgs, ctx: ToolContext) -> ToolResult:
        """The artifact's text, capped to the output limit."""
        if ctx.artifacts is None:
            return ToolResult(False, "artifacts are not available to this agent")
        try:
            ref = await find_artifact(ctx.artifacts, ctx.agent, args.name)
            if ref is None:
                return ToolResult(False, f"no artifact named {args.name!r}; artifact_list shows what exists")
            if not _is_text(ref.meta.content_type):
                return ToolResult(
                    False,
                    f"{ref.name} is {ref.meta.content_type} ({ref.meta.size} bytes); only text is shown",
                    {"id": ref.id, "content_type": ref.meta.content_type, "size": ref.meta.size},
                )
            buffer = HeadTailBuffer(ctx.limits.output_cap_bytes)
            async for chunk in ctx.artifacts.get(ref):
                buffer.feed(chunk)
        except (DuragentError, OSError) as exc:
            return ToolResult(False, f"cannot read artifact {args.name!r}: {exc}")
        return ToolResult(True, buffer.text(), {"id": ref.id, "size": buffer.total})

    def invocation(self, args: ArtifactGetArgs, ctx: ToolContext) -> str:
        """The artifact name."""
        return args.name


class ArtifactListArgs(ToolArgs):
    """Arguments of `artifact_list`."""

    prefix: str = Field("", description="Only names starting with this, e.g. `reports/`.")


class ArtifactListTool(Tool[ArtifactListArgs]):
    """List the agent's artifacts."""

    name = "artifact_list"
    description = "List the agent's artifacts (name, size, type), optionally only names starting with prefix."
    Args = ArtifactListArgs
    invocation_is_path = True

    async def run(self, args: ArtifactListArgs, ctx: ToolContext) -> ToolResult:
        """One line per artifact, sorted by name."""
        if ctx.artifacts is None:
            return ToolResult(False, "artifacts are not available to this agent")
        try:
            refs = await ctx.artifacts.list(ctx.agent, prefix=args.prefix, limit=LIST_LIMIT)
        except (DuragentError, OSError) as exc:
            return ToolResult(False, f"cannot list artifacts: {exc}")
        if not refs:
            suffix = f" starting with {args.prefix!r}" if args.prefix else ""
            return ToolResult(True, f"(no artifacts{suffix})", {"artifacts": []})
        lines = [f"{ref.name}\t{ref.meta.size} bytes\t{ref.meta.content_type}" for ref in refs]
        if len(refs) == LIST_LIMIT:
            lines.append(f"[showing the first {LIST_LIMIT}; narrow with prefix]")
        return ToolResult(True, "\n".join(lines), {"artifacts": [ref.name for ref in refs]})

    def invocation(self, args: ArtifactListArgs, ctx: ToolContext) -> str:
        """The prefix."""
        return args.prefix
