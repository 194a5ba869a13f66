"""What a tool is: typed arguments, a run function, and the context it runs in.

A tool never raises for a failure the model could act on: it returns
`ToolResult(ok=False, content=<what went wrong>)` and the loop hands that back to the model.
Only cancellation propagates.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from duragent.errors import DuragentError
from duragent.llm.types import ToolDefinition
from duragent.stores.base import ArtifactStore, MemoryStore, SessionStore
from duragent.validation import describe_error

if TYPE_CHECKING:
    from duragent.processes.manager import ProcessManager
    from duragent.scheduling.service import Scheduler

Notify = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced: success, the text the model reads, and structured data for clients.

    `on_stored` is awaited once the result is durable in the session's log (not when it is lost to
    a crash or a cancel first): e.g. a process's end answered by this result is marked reported.
    """

    ok: bool
    content: str
    data: dict[str, Any] | None = None
    on_stored: Callable[[], Awaitable[object]] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ToolLimits:
    """Time and size limits applied by the builtin tools."""

    bash_timeout_seconds: float = 120.0
    output_cap_bytes: int = 16 * 1024
    read_max_bytes: int = 256 * 1024
    fetch_timeout_seconds: float = 30.0
    fetch_max_bytes: int = 1024 * 1024
    list_max_entries: int = 1000


@dataclass(frozen=True)
class ToolContext:
    """Where and for whom a tool runs: the agent, its session, folders, stores and limits.

    `file_roots` confine the file tools (empty means the working directory alone);
    `pass_env` names the environment variables (beyond the minimal set) bash and cli tools
    see (`spec.tools.env`); `scrub_env` names variables never passed unless listed there (the
    configuration's secrets); `notify` delivers `notify_user` messages to attached clients.
    `schedules` is the server's scheduler (None where there is none), `session_metadata` the
    session's metadata (a chat's `gateway` and `chat_id`), `scheduled_by` the schedule whose
    task started this turn.
    """

    agent: str
    session_id: str
    workdir: Path
    file_roots: tuple[Path, ...] = ()
    memory: MemoryStore | None = None
    artifacts: ArtifactStore | None = None
    scrub_env: frozenset[str] = frozenset()
    pass_env: tuple[str, ...] = ()
    #: Folders no tool may write into (the agent's definition folder), beside the protected names.
    protected_dirs: tuple[Path, ...] = ()
    notify: Notify | None = None
    limits: ToolLimits = field(default_factory=ToolLimits)
    schedules: Scheduler | None = None
    session_metadata: Mapping[str, Any] = field(default_factory=dict)
    scheduled_by: str | None = None
    #: The session store, for the `session` tool (a supervisor reading its other sessions).
    session_store: SessionStore | None = None
    #: The server's background processes, for `background_process` (None where there is no server).
    processes: ProcessManager | None = None
    #: Folders `read_file` and `list_files` may read but no tool writes (the agent's skills).
    read_roots: tuple[Path, ...] = ()
    #: The data directory: `git` run by a tool below it does not find its repository.
    git_ceiling: Path | None = None

    @property
    def roots(self) -> tuple[Path, ...]:
        """The folders file tools may touch, resolved (symlinks followed)."""
        return tuple(root.resolve() for root in (self.file_roots or (self.workdir,)))

    @property
    def readable_roots(self) -> tuple[Path, ...]:
        """The read-only folders, resolved."""
        return tuple(root.resolve() for root in self.read_roots)


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown keys are refused so the model learns the schema."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class InvalidToolArguments(DuragentError):
    """The model's arguments do not fit the tool's schema; the message tells it what to fix."""


ArgsT = TypeVar("ArgsT", bound=ToolArgs)


class Tool(ABC, Generic[ArgsT]):
    """A tool: a name, a description, an `Args` model (its JSON schema) and an async `run`.

    `invocation_is_path` tells the policy that `*` in patterns for this tool stops at `/`.
    """

    name: str
    description: str
    Args: type[ArgsT]
    invocation_is_path: ClassVar[bool] = False

    @abstractmethod
    async def run(self, args: ArgsT, ctx: ToolContext) -> ToolResult:
        """Do the work; return a failed ToolResult (never raise) when something goes wrong."""

    @abstractmethod
    def invocation(self, args: ArgsT, ctx: ToolContext) -> str:
        """The text policy patterns are matched against (a command, a path, a URL, an action)."""

    def policy_subject(self, args: ArgsT, ctx: ToolContext) -> tuple[str, str]:
        """The tool name and text the policy decides on: this tool and its invocation by default.

        A tool that runs commands like `bash` answers `("bash", command)`, so every bash rule
        (deny, ask, allow, allow always) applies to it unchanged.
        """
        return self.name, self.invocation(args, ctx)

    def command_folder(self, args: ArgsT, ctx: ToolContext) -> Path:
        """The folder a command this tool runs starts in (where its relative paths lead from):
        the work folder by default."""
        return ctx.workdir

    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as offered to the model."""
        return json_schema(self.Args)

    @functools.cached_property
    def definition(self) -> ToolDefinition:
        """What the model is offered: name, description and `parameters()`, made once per tool
        (every model call offers it again, and a tool's description and schema never change)."""
        return ToolDefinition(self.name, self.description, self.parameters())

    def parse_arguments(self, raw: Any) -> ArgsT:
        """Validate the model's arguments; InvalidToolArguments says what is wrong in one sentence."""
        if not isinstance(raw, dict):
            raise InvalidToolArguments(f"invalid arguments for {self.name}: expected a JSON object")
        try:
            return self.Args.model_validate(raw)
        except ValidationError as exc:
            reasons = "; ".join(
                _describe(error, tuple(error["loc"])) for error in exc.errors(include_url=False)
            )
            raise InvalidToolArguments(f"invalid arguments for {self.name}: {reasons}") from None


def _describe(error: Any, loc: tuple[str | int, ...]) -> str:
    if error["type"] == "extra_forbidden":
        return f"unknown argument {'.'.join(str(p) for p in loc)!r}"
    if not loc and error["type"] in ("value_error", "assertion_error"):
        # a check of the arguments together names its fields itself ("spawn needs command")
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return describe_error(error, loc)


@functools.cache
def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without pydantic's `title` noise (models read descriptions, not titles).

    Cached per model class (generating it costs milliseconds and every turn offers the tools);
    treat the returned dict as read-only.
    """
    schema: dict[str, Any] = _strip_titles(model.model_json_schema())
    schema.pop("description", None)  # the Args docstring; the tool's own description says more
    return schema


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _strip_titles(value) if key != "properties" else _strip_property_titles(value)
            for key, value in node.items()
            if key != "title"
        }
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    return node


def _strip_property_titles(properties: dict[str, Any]) -> dict[str, Any]:
    # Under `properties` the keys are argument names (one may be called "title"), so only strip inside.
    return {name: _strip_titles(schema) for name, schema in properties.items()}
