"""Request and response bodies of the HTTP API: one pydantic model each, parsed in one place.

Field names follow the Rust Duragent where it has the route (so its clients work); the
OpenAPI document is generated from these models.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from duragent.errors import InvalidName
from duragent.ids import check_name
from duragent.server.problems import FieldError, HttpProblem, body_problem, invalid, validation_errors

# Re-exported: the routes take their bodies and their replies from here.
from duragent.server.replies import Reply as Reply
from duragent.server.replies import json_reply as json_reply

ModelT = TypeVar("ModelT", bound=BaseModel)
#: Deepest nesting of lists and objects a request body may have (deeper: 400, never a RecursionError).
MAX_JSON_DEPTH = 64
_TOO_DEEP = object()


class Body(BaseModel):
    """A request body: unknown fields are refused, so typos are not silently ignored."""

    model_config = ConfigDict(defer_build=True, extra="forbid")


# --- requests --------------------------------------------------------------------------------


def _name_rule(check: Callable[[str], str]) -> AfterValidator:
    """`check` (InvalidName when it refuses a name) as a pydantic check, so that the 400 names the
    field holding the name rather than only saying what is wrong with it."""

    def validate(value: str) -> str:
        try:
            return check(value)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(validate)


def _new_agent_name(value: str) -> str:
    from duragent.agents.spec import check_new_agent_name

    return check_new_agent_name(value)


#: An agent's name in a request (a folder name: no `/`, `..`).
AgentName = Annotated[str, _name_rule(functools.partial(check_name, what="agent name"))]
#: The name of an agent a request deploys (not `world`, the shared memory folder, either).
NewAgentName = Annotated[str, _name_rule(_new_agent_name)]
#: A session id in a request.
SessionId = Annotated[str, _name_rule(functools.partial(check_name, what="session id"))]


class CreateSession(Body):
    """POST /api/v1/sessions."""

    agent: AgentName = Field(min_length=1, max_length=200, description="Name of the agent to talk to.")
    on_disconnect: Literal["continue", "pause"] | None = Field(
        None, description="What the session does when no client is attached (default: the agent's)."
    )
    metadata: dict[str, Any] | None = Field(None, description="Free-form data stored with the session.")
    agent_spec: dict[str, Any] | None = Field(
        None,
        description=(
            "An agent.yaml as JSON (full or flat form), validated like `agent validate` and deployed "
            "as agent `agent` before the session starts: agent configs passed per request."
        ),
    )
    prompts: dict[str, str] | None = Field(
        None, description='Files next to agent_spec, e.g. {"SYSTEM_PROMPT.md": "You are..."}.'
    )


class SendMessage(Body):
    """POST /api/v1/sessions/{id}/messages and /stream."""

    content: str = Field(min_length=1, max_length=1_000_000, description="The user's message.")


class Approve(Body):
    """POST /api/v1/sessions/{id}/approve."""

    call_id: str = Field(min_length=1, max_length=200, description="The tool call waiting for approval.")
    decision: Literal["allow_once", "allow_always", "deny"]
    command: str | None = Field(None, description="Accepted for Rust clients; the pending call is used.")


class SessionQuery(Body):
    """GET /api/v1/sessions query string."""

    agent: str | None = None
    status: Literal["active", "running", "paused", "ended"] | None = None
    limit: int = Field(50, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=400, description="`next_cursor` of the previous page.")


class MessagesQuery(Body):
    """GET /api/v1/sessions/{id}/messages query string."""

    after: int | None = Field(None, ge=0, description="Only events after this seq (oldest first).")
    limit: int = Field(100, ge=1, le=1000)


class EventsQuery(Body):
    """GET /api/v1/sessions/{id}/events query string."""

    after: str | None = Field(None, max_length=40, description="Replay events after this position.")


# --- responses -------------------------------------------------------------------------------


class AgentSummaryOut(Reply):
    """One agent in GET /api/v1/agents."""

    name: str
    description: str | None = None
    version: str | None = None


class AgentList(Reply):
    """GET /api/v1/agents."""

    agents: list[AgentSummaryOut]


class AgentModelOut(Reply):
    """The model section of an agent (Rust shape)."""

    provider: str
    name: str
    temperature: float | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    base_url: str | None = None


class AgentMetadataOut(Reply):
    """Agent metadata (Rust shape)."""

    name: str
    description: str | None = None
    version: str | None = None
    labels: dict[str, str] | None = None


class AgentSpecOut(Reply):
    """The part of an agent's spec clients are shown (prompts are file contents)."""

    model: AgentModelOut
    system_prompt: str | None = None
    instructions: str | None = None


class AgentDetail(Reply):
    """GET /api/v1/agents/{name}."""

    api_version: str
    kind: str
    metadata: AgentMetadataOut
    spec: AgentSpecOut


class UnattendedOut(Reply):
    """How long a running session has gone on without any client, and when it will be paused."""

    unattended_since: str = Field(description="When its turn went on without a client (ISO 8601).")
    unattended_seconds: int
    max_background_runtime_seconds: int = Field(description="The agent's limit; 0: never paused.")
    pauses_at: str | None = Field(description="When max_background_runtime pauses it; null with no limit.")


class SessionOut(Reply):
    """A session as the API shows it."""

    session_id: str
    agent: str
    status: Literal["active", "running", "paused", "ended"]
    created_at: str
    updated_at: str
    last_seq: int
    loaded: bool = Field(description="Whether the session is live in this server process.")
    on_disconnect: str | None = None
    attached: int | None = None
    queued: int | None = None
    busy: bool | None = None
    pending_approvals: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    first_message: str | None = Field(
        None,
        description="In a listing: the start of the first message a person sent (100 characters at most).",
    )
    unattended: UnattendedOut | None = Field(
        None, description="For a running session of this server with no client attached."
    )


class SessionList(Reply):
    """GET /api/v1/sessions: one page, newest activity first."""

    sessions: list[SessionOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page."
    )


class HistoryItem(Reply):
    """One stored event of a session's history."""

    seq: int
    id: str
    ts: str
    type: str
    role: str | None = None
    content: str | None = None
    payload: dict[str, Any]


class MessagePage(Reply):
    """GET /api/v1/sessions/{id}/messages."""

    messages: list[HistoryItem]
    next_after: int | None = Field(None, description="Pass as `after` for the next page; null at the end.")


class ArtifactsQuery(Body):
    """GET /api/v1/sessions/{id}/artifacts query string."""

    prefix: str = Field("", max_length=1024, description="Only names starting with this.")
    limit: int = Field(100, ge=1, le=1000)


class ArtifactOut(Reply):
    """One artifact of a session's agent."""

    name: str
    content_type: str
    size: int | None = None
    sha256: str | None = None
    created_at: str | None = None
    download: str = Field(description="Path that returns the artifact's bytes (same auth).")


class ArtifactList(Reply):
    """GET /api/v1/sessions/{id}/artifacts."""

    agent: str
    artifacts: list[ArtifactOut]


class MessageReply(Reply):
    """200 of POST /messages: the assistant's final reply."""

    message_id: str
    role: Literal["assistant"] = "assistant"
    content: str
    usage: dict[str, int] | None = Field(None, description="Tokens of all the turn's model calls, summed.")
    truncated: bool = Field(
        False, description="The model stopped at its output token limit: the reply is cut off."
    )


class PendingApproval(Reply):
    """202: the turn waits for a decision on a tool call."""

    status: Literal["pending_approval"] = "pending_approval"
    session_id: str
    call_id: str
    tool: str
    command: str
    arguments: dict[str, Any]


class Queued(Reply):
    """202: a turn is running; the message waits in order."""

    status: Literal["queued"] = "queued"
    position: int = Field(description="Turns that run before this message.")


class Paused(Reply):
    """202: the turn stopped at a safe point (resume continues it)."""

    status: Literal["paused"] = "paused"
    reason: str


class TurnFailed(Reply):
    """502: the model or a tool made the turn fail; the session stays usable."""

    status: Literal["error"] = "error"
    code: str
    message: str


class ApprovalComplete(Reply):
    """200 of POST /approve: the turn finished."""

    status: Literal["complete", "truncated"] = Field(
        "complete", description="`truncated`: the model stopped at its output token limit."
    )
    message_id: str
    content: str


class Accepted(Reply):
    """Result of cancel / resume."""

    status: str
    session_id: str


class ProblemOut(Reply):
    """Every error: RFC 7807 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, str]] | None = None
    retryable: bool | None = Field(
        None, description="A failed turn: whether `POST /api/v1/sessions/{id}/retry` runs it again."
    )


# --- parsing ---------------------------------------------------------------------------------


class _NotJsonNumber(str):
    """`NaN`, `Infinity` or `-Infinity` where a body has a number: Python's parser takes them,
    JSON does not, and no store can write them back (json.dumps of such a float is invalid)."""


#: json.loads with `NaN` / `Infinity` kept apart, built once (a decoder per request costs more).
_DECODER = json.JSONDecoder(parse_constant=_NotJsonNumber)


def _decode_json(raw: bytes) -> Any:
    """`raw` parsed as json.loads parses bytes (UTF-8, -16 or -32), with `_DECODER`."""
    return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


async def read_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The request's JSON body as `model`; 400 problem with field paths when it is not."""
    raw = await request.read()
    try:
        data = _decode_json(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"the body is not valid JSON: {exc}"
        raise HttpProblem(400, detail, (FieldError("body", str(exc)),), "validation") from None
    except RecursionError:
        data = _TOO_DEEP
    if data is _TOO_DEEP or (_may_nest_deeply(raw) and json_depth(data) > MAX_JSON_DEPTH):
        detail = f"the body is nested more than {MAX_JSON_DEPTH} levels deep"
        raise HttpProblem(400, detail, (FieldError("body", "nested too deeply"),), "validation")
    if not isinstance(data, dict):
        raise HttpProblem(
            400, "the body must be a JSON object", (FieldError("body", "expected an object"),), "validation"
        )
    constant = _not_json_number_at(data) if _may_hold_constants(raw) else None
    if constant is not None:
        path, value = constant
        field = ".".join(["body", *path])
        message = f"{value} is not a JSON number (JSON has no NaN or infinity)"
        raise HttpProblem(400, f"{field} is not valid JSON", (FieldError(field, message),), "validation")
    where = lone_surrogate_at(data) if _may_hold_surrogates(raw) else None
    if where is not None:
        field = ".".join(["body", *where])
        message = "contains a lone surrogate (a \\ud800-\\udfff escape without its pair): not Unicode text"
        raise HttpProblem(400, f"{field} is not valid text", (FieldError(field, message),), "validation")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise body_problem(exc, model) from None


def _may_nest_deeply(raw: bytes) -> bool:
    """False when `raw` opens too few objects and lists to nest past MAX_JSON_DEPTH (the usual
    small body, spared the walk through its values)."""
    return raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH


def _may_hold_constants(raw: bytes) -> bool:
    """False when `raw` cannot hold `NaN` or `Infinity` outside a string: UTF-8 without either
    word (UTF-16 and -32 bodies are not ASCII, and are looked through)."""
    return b"NaN" in raw or b"Infinity" in raw or not raw.isascii()


def _may_hold_surrogates(raw: bytes) -> bool:
    """False when `raw` cannot decode to a lone surrogate: ASCII without a backslash (in each of
    JSON's encodings a surrogate needs a byte above 0x7f, and a `\\u` escape a backslash)."""
    return not raw.isascii() or b"\\" in raw


def lone_surrogate_at(value: Any) -> list[str] | None:
    """The path (keys and indexes) of the first string in `value` that cannot be UTF-8, or None.

    JSON may escape half of a surrogate pair on its own (`"\\ud800"`); Python keeps it, but it
    can never be written to a file, a database or a reply, so it is refused at the door.
    """
    pending: list[tuple[Any, list[str]]] = [(value, [])]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if not _is_utf8_text(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _is_utf8_text(key):
                    return [*path, key.encode("utf-8", "backslashreplace").decode("ascii")]
                pending.append((child, [*path, key]))
        elif isinstance(item, list):
            pending.extend((child, [*path, str(index)]) for index, child in enumerate(item))
    return None


def _not_json_number_at(value: Any) -> tuple[list[str], str] | None:
    """The path (keys and indexes) of the first `NaN` / `Infinity` in `value`, and which, or None."""
    pending: list[tuple[Any, list[str]]] = [(value, [])]
    while pending:
        item, path = pending.pop()
        if isinstance(item, _NotJsonNumber):
            return path, str(item)
        if isinstance(item, dict):
            pending.extend((child, [*path, key]) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, [*path, str(index)]) for index, child in enumerate(item))
    return None


def _is_utf8_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return deepest


def read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string as `model`; 400 problem naming `query.<field>` when it is invalid."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        errors = validation_errors(exc, "query", model)
        raise HttpProblem(400, invalid("the query string", errors), errors, "validation") from None
