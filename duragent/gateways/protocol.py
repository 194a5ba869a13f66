"""The gateway plugin protocol `v1alpha1`: one pydantic model per JSON-lines message.

Commands flow Duragent -> plugin on the plugin's stdin, events flow plugin -> Duragent on its
stdout; every object carries a snake_case `type`. Types and fields match the Rust Duragent so its
plugins work here; additions (the `configure` command) are documented in docs/gateway-protocol.md.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from duragent import json_text
from duragent.errors import DuragentError

PROTOCOL_VERSION = "v1alpha1"
#: Lines longer than this are skipped by both sides (never fatal).
MAX_LINE_BYTES = 1024 * 1024
#: Lines nested deeper than this (arrays and objects) are skipped too: no message needs it, and
#: deep nesting is how a line makes a parser recurse until it fails.
MAX_DEPTH = 64

#: Standard `code` values of `command_error` and `error` events.
ERROR_CODES = (
    "chat_not_found",
    "message_not_found",
    "rate_limited",
    "unauthorized",
    "platform_error",
    "invalid_request",
    "not_connected",
    "not_implemented",
)
#: Capabilities a plugin may announce in `ready` (`split`: it cuts long replies itself;
#: `admission`: it takes `admission` commands, fetching no file for strangers).
CAPABILITIES = ("media", "edit", "delete", "typing", "reply", "inline_keyboard", "split", "admission")


class ProtocolError(DuragentError):
    """A protocol line that is not valid JSON or not a known, well-formed message."""


class WireModel(BaseModel):
    """Base of every protocol object: unknown fields from newer peers are ignored."""

    model_config = ConfigDict(defer_build=True, extra="ignore")


# ---------------------------------------------------------------- shared pieces


class InlineButton(WireModel):
    """One button of an inline keyboard; pressing it sends `callback_data` back."""

    text: str
    callback_data: str


class InlineKeyboard(WireModel):
    """Rows of buttons shown under a message."""

    rows: list[list[InlineButton]]


class UrlMedia(WireModel):
    """Media the platform fetches from a URL."""

    source: Literal["url"] = "url"
    url: str
    mime_type: str | None = None


class Base64Media(WireModel):
    """Media sent inline, base64-encoded (keep it small: lines are capped at 1 MiB)."""

    source: Literal["base64"] = "base64"
    data: str
    mime_type: str
    filename: str | None = None


MediaPayload = Annotated[UrlMedia | Base64Media, Field(discriminator="source")]


class Sender(WireModel):
    """Who sent a message on the platform."""

    id: str
    username: str | None = None
    display_name: str | None = None

    @property
    def label(self) -> str:
        """How the sender is named in group transcripts: display name, else username, else id."""
        return self.display_name or self.username or self.id


class TextContent(WireModel):
    """Plain text (Markdown as the user typed it)."""

    type: Literal["text"] = "text"
    text: str


class MediaContent(WireModel):
    """A photo, document, voice note...; the bytes' location may be in the message `metadata`."""

    model_config = ConfigDict(defer_build=True, extra="allow")
    type: Literal["media"] = "media"
    media_type: str
    url: str | None = None
    caption: str | None = None


class LocationContent(WireModel):
    """A shared location."""

    type: Literal["location"] = "location"
    latitude: float
    longitude: float


class ContactContent(WireModel):
    """A shared contact card."""

    type: Literal["contact"] = "contact"
    name: str
    phone: str


class UnknownContent(WireModel):
    """Anything else, passed through raw."""

    type: Literal["unknown"] = "unknown"
    raw: Any = None


MessageContent = Annotated[
    TextContent | MediaContent | LocationContent | ContactContent | UnknownContent,
    Field(discriminator="type"),
]


class Routing(WireModel):
    """What routes pick an agent by; extra string fields (e.g. `thread_id`) are kept."""

    model_config = ConfigDict(defer_build=True, extra="allow")
    channel: str
    chat_type: str
    chat_id: str
    sender_id: str


# ---------------------------------------------------------------- commands (Duragent -> plugin)


class SendMessage(WireModel):
    """Send Markdown text to a chat, optionally replying and with an inline keyboard."""

    type: Literal["send_message"] = "send_message"
    request_id: str
    chat_id: str
    content: str
    reply_to: str | None = None
    inline_keyboard: InlineKeyboard | None = None


class SendMedia(WireModel):
    """Send a photo or file."""

    type: Literal["send_media"] = "send_media"
    request_id: str
    chat_id: str
    media: MediaPayload
    caption: str | None = None


class SendTyping(WireModel):
    """Show "typing..." for `duration` seconds (has no reply)."""

    type: Literal["send_typing"] = "send_typing"
    chat_id: str
    duration: int = 5


class EditMessage(WireModel):
    """Replace the text of a message the bot sent."""

    type: Literal["edit_message"] = "edit_message"
    request_id: str
    chat_id: str
    message_id: str
    content: str


class DeleteMessage(WireModel):
    """Delete a message."""

    type: Literal["delete_message"] = "delete_message"
    request_id: str
    chat_id: str
    message_id: str


class AnswerCallbackQuery(WireModel):
    """Acknowledge a button press, optionally with a toast text."""

    type: Literal["answer_callback_query"] = "answer_callback_query"
    request_id: str
    callback_query_id: str
    text: str | None = None


class Ping(WireModel):
    """Liveness probe; the plugin answers `pong` with the same request id."""

    type: Literal["ping"] = "ping"
    request_id: str


class Shutdown(WireModel):
    """Finish in-flight work and exit."""

    type: Literal["shutdown"] = "shutdown"


def matches_entry(value: str, entry: str) -> bool:
    """An allowlist entry matches exactly, or as a prefix when it ends with `*`."""
    return value.startswith(entry[:-1]) if entry.endswith("*") else value == entry


class AdmissionRule(WireModel):
    """Who of one kind of chat (DMs, groups) some agent may answer: anyone, or the allowlist's."""

    open: bool = False
    allowlist: list[str] = []


class Admission(WireModel):
    """Whose messages the server could answer at all (our addition): the union of the `access`
    rules of every agent a route gives this gateway. A plugin fetches no file for anyone else, so
    a stranger cannot make the bot download anything; the server still decides each message."""

    type: Literal["admission"] = "admission"
    gateway: str
    dm: AdmissionRule = AdmissionRule()
    groups: AdmissionRule = AdmissionRule()

    def admits(self, routing: Mapping[str, Any]) -> bool:
        """Whether a message with this `routing` could reach an agent (False: surely not)."""
        chat_type = str(routing.get("chat_type", "")).lower()
        if chat_type in ("dm", "private"):
            rule, candidates = self.dm, [str(routing.get("sender_id", ""))]
        elif chat_type in ("group", "supergroup", "channel"):
            rule = self.groups
            chats = [str(routing.get(key)) for key in ("chat_id", "parent_id") if routing.get(key)]
            channel = str(routing.get("channel", ""))
            candidates = [
                form for chat in chats for form in (chat, f"{self.gateway}:{chat}", f"{channel}:{chat}")
            ]
        else:
            return False
        return rule.open or any(
            matches_entry(value, entry) for value in candidates for entry in rule.allowlist
        )


class Configure(WireModel):
    """The plugin's `config:` map from duragent.yaml; always the first command (our addition).

    `admission` says whose messages the server could answer (see `Admission`); plugins that
    do not know it ignore it, as any unknown field."""

    type: Literal["configure"] = "configure"
    config: dict[str, Any] = {}
    admission: Admission | None = None


Command = Annotated[
    SendMessage
    | SendMedia
    | SendTyping
    | EditMessage
    | DeleteMessage
    | AnswerCallbackQuery
    | Ping
    | Shutdown
    | Configure
    | Admission,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- events (plugin -> Duragent)


class Ready(WireModel):
    """The plugin is connected to its platform and accepts commands."""

    type: Literal["ready"] = "ready"
    gateway: str
    version: str = PROTOCOL_VERSION
    capabilities: list[str] = []
    #: What people type before a chat command on this platform (Slack: `@duragent `, as it
    #: refuses a message starting with "/"), so the commands the bot names are ones that work.
    command_prefix: str = ""


class MessageReceived(WireModel):
    """A user's message; `message_id` is unique per chat and used for deduplication."""

    type: Literal["message_received"] = "message_received"
    message_id: str
    chat_id: str
    sender: Sender
    content: MessageContent
    routing: Routing
    reply_to: str | None = None
    mentions_bot: bool = False
    reply_to_bot: bool = False
    timestamp: str | None = None
    metadata: Any = None

    @property
    def text(self) -> str:
        """The message's text, or a media caption, or "" for other content."""
        if isinstance(self.content, TextContent):
            return self.content.text
        if isinstance(self.content, MediaContent):
            return self.content.caption or ""
        return ""


class CallbackQuery(WireModel):
    """A user pressed an inline-keyboard button."""

    type: Literal["callback_query"] = "callback_query"
    callback_query_id: str
    chat_id: str
    sender: Sender
    message_id: str
    data: str


class CommandOk(WireModel):
    """A command succeeded; `message_id` is the platform id of a sent message."""

    type: Literal["command_ok"] = "command_ok"
    request_id: str
    message_id: str | None = None


class CommandError(WireModel):
    """A command failed; `code` is one of ERROR_CODES."""

    type: Literal["command_error"] = "command_error"
    request_id: str
    code: str
    message: str


class Pong(WireModel):
    """Answer to `ping`: how long the plugin has run and whether the platform is reachable."""

    type: Literal["pong"] = "pong"
    request_id: str
    uptime_seconds: int = 0
    connected: bool = True


class Error(WireModel):
    """A problem not tied to a command; `fatal` means the plugin is about to exit."""

    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = False


class ShutdownEvent(WireModel):
    """The plugin is exiting on its own."""

    type: Literal["shutdown"] = "shutdown"
    reason: str = ""


class QrCodeAuth(WireModel):
    """Scan this QR code to log the plugin in."""

    method: Literal["qr_code"] = "qr_code"
    qr_data: str
    qr_ascii: str | None = None
    expires_in: int


class PairCodeAuth(WireModel):
    """Enter this code on the platform to log the plugin in."""

    method: Literal["pair_code"] = "pair_code"
    code: str
    expires_in: int


AuthMethod = Annotated[QrCodeAuth | PairCodeAuth, Field(discriminator="method")]


class AuthRequired(WireModel):
    """The plugin needs a human to authenticate it (QR code or pairing code)."""

    type: Literal["auth_required"] = "auth_required"
    method: AuthMethod


class AuthSuccess(WireModel):
    """Authentication finished."""

    type: Literal["auth_success"] = "auth_success"


class UnknownEvent(WireModel):
    """An event type this version does not know; ignored (newer plugins stay compatible)."""

    model_config = ConfigDict(defer_build=True, extra="allow")
    type: str


Event = Annotated[
    Ready
    | MessageReceived
    | CallbackQuery
    | CommandOk
    | CommandError
    | Pong
    | Error
    | ShutdownEvent
    | AuthRequired
    | AuthSuccess,
    Field(discriminator="type"),
]

Message = Command | Event | UnknownEvent


# Built on first use, not at import: a server without gateways never pays for their validators.
@functools.cache
def _command_adapter() -> TypeAdapter[Command]:
    return TypeAdapter(Command)


@functools.cache
def _event_adapter() -> TypeAdapter[Event]:
    return TypeAdapter(Event)


_KNOWN_EVENT_TYPES = frozenset(
    model.model_fields["type"].default
    for model in (
        Ready,
        MessageReceived,
        CallbackQuery,
        CommandOk,
        CommandError,
        Pong,
        Error,
        ShutdownEvent,
        AuthRequired,
        AuthSuccess,
    )
)


def _load_object(line: bytes | str) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(line)} bytes exceeds the {MAX_LINE_BYTES}-byte limit")
    try:
        value = json_text.loads(line if isinstance(line, str) else line.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    except RecursionError:
        raise ProtocolError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _deeper_than(value, MAX_DEPTH, line):
        raise ProtocolError(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError("not a JSON object with a string `type`")
    return value


def _deeper_than(value: Any, limit: int, line: bytes | str) -> bool:
    """True when arrays/objects in `value` nest more than `limit` levels (checked without recursion)."""
    opening = (b"[", b"{") if isinstance(line, bytes) else ("[", "{")
    if line.count(opening[0]) + line.count(opening[1]) <= limit:  # type: ignore[arg-type]
        return False  # too few brackets to nest that deep (the common case, counted in C)
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()
    )


def parse_command(line: bytes | str) -> Command:
    """One command from a stdin line; raises ProtocolError for bad JSON or an unknown type."""
    value = _load_object(line)
    try:
        return _command_adapter().validate_python(value)
    except ValidationError as exc:
        raise ProtocolError(f"invalid {value['type']!r} command: {_describe(exc)}") from exc


def parse_event(line: bytes | str) -> Event | UnknownEvent:
    """One event from a stdout line; unknown types become UnknownEvent (ignored, never fatal)."""
    value = _load_object(line)
    if value["type"] not in _KNOWN_EVENT_TYPES:
        return UnknownEvent.model_validate(value)
    try:
        return _event_adapter().validate_python(value)
    except ValidationError as exc:
        raise ProtocolError(f"invalid {value['type']!r} event: {_describe(exc)}") from exc


def encode(message: BaseModel) -> bytes:
    """One protocol line (compact JSON + newline); absent optional fields are left out."""
    body = message.model_dump(mode="json", exclude_none=True)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        # Half an emoji (a platform's JSON cut it in two): sent as U+FFFD, as a reader would.
        return json_text.clean_text(text).encode() + b"\n"
