"""A real Discord on 127.0.0.1: the REST API routes a bot uses plus the Gateway websocket.

    async with FakeDiscord() as discord:
        # point discord.py at it: api_base=discord.api_base (REST), gateway_url=discord.gateway_url
        guild = discord.add_guild("Home")
        channel = discord.add_channel(guild, "general")
        sent = discord.inject_message(channel, f"{discord.mention} hello", author=ADA)
        reply = await discord.wait_for_message(channel)
        assert reply.reference_id == sent["id"]

The Gateway speaks v10 JSON: HELLO, IDENTIFY (the token is checked), READY followed by one
GUILD_CREATE per guild, heartbeats and their ACKs (a round trip later, as over a network;
`heartbeat_interval_ms` shortens the interval HELLO asks for), dispatches with sequence numbers
(MESSAGE_CREATE, INTERACTION_CREATE, CHANNEL_CREATE, THREAD_CREATE) and RESUME, which replays
what the bot missed while it was away. `compress=zlib-stream` is honoured. REST serves
`/api/v10/...`: users/@me, gateway/bot, channel messages (JSON or multipart with files; over
2,000 characters is refused with Discord's 50035 error), edits, deletes, typing, DM channels,
interaction callbacks and the interaction webhook (edit the original response, follow-ups),
and attachment downloads. Answers carry Discord's `X-RateLimit-*` headers.

Tests drive the users' side with `inject_message` (text, mentions, replies, attachments),
`press_button` and `disconnect` (drop the websocket, as Discord does now and then), and read
the bot's side with `sent_messages`, `wait_for_message`, `typing`, `interaction_responses` and
`calls`. `fail_next("POST /channels/{channel_id}/messages", 429, retry_after=0.5)` makes the
next matching call fail the way Discord's rate limiter does; `download_delay` slows attachment
downloads (`downloads` lists those begun); `inject_message(..., forward_of=message)` forwards a
message; `message_content_disallowed` refuses the Message Content intent (close code 4014);
`stop()` then `start()` takes Discord away and brings it back.

Run it by hand: `python -m duragent.testing.fake_discord --port 8903`; with `--user ID`, what you
type is a direct message to the bot from that user and its replies are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from duragent.gateways.setup import DiscordSetup
from duragent.testing.chat_console import Button, ShownMessage, chat_console
from duragent.testing.fake_server import Failure, FakeServer

#: Discord's limit on one message's content.
MESSAGE_LIMIT = 2000
DEFAULT_TOKEN = "MTAwMDAw.fake-discord.bot-token"
API_VERSION = 10
HEARTBEAT_INTERVAL_MS = 41250
#: How long a heartbeat's ACK takes to come back (a network's round trip). Not at once: discord.py
#: times its latency from when its keep-alive thread notes the heartbeat sent, which on loopback can
#: come after an instant ACK; it then takes the whole interval for the latency ("Can't keep up,
#: shard ID None websocket is 41.3s behind").
HEARTBEAT_ACK_DELAY = 0.05
#: The privileged intent a bot needs to read what people write (1 << 15).
MESSAGE_CONTENT_INTENT = 1 << 15
_EPOCH_MS = 1420070400000
#: What a forward's snapshot keeps of the original message.
_SNAPSHOT_KEYS = (
    "type",
    "content",
    "embeds",
    "attachments",
    "timestamp",
    "edited_timestamp",
    "flags",
    "mentions",
    "mention_roles",
    "sticker_items",
    "components",
)


@dataclass
class DiscordMessage:
    """A message the bot sent (or an interaction's response), as the fake recorded it."""

    id: str
    channel_id: str
    content: str
    #: The message this one replies to (`message_reference.message_id`).
    reference_id: str | None = None
    components: list[dict[str, Any]] = field(default_factory=list)
    #: Attached files: (filename, bytes).
    files: list[tuple[str, bytes]] = field(default_factory=list)
    flags: int = 0
    edits: list[str] = field(default_factory=list)
    deleted: bool = False
    #: Whether Discord would notify the whole channel: `@everyone` or `@here` in the content, and
    #: the message's `allowed_mentions` (none given: everything) lets it (`parse: ["everyone"]`).
    mention_everyone: bool = False

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The message's buttons, row after row."""
        return [
            item for row in self.components for item in row.get("components", []) if item.get("type") == 2
        ]

    @property
    def ephemeral(self) -> bool:
        """Shown only to the user who pressed the button."""
        return bool(self.flags & 64)


@dataclass(frozen=True)
class RecordedCall:
    """One REST call the bot made: its route (`POST /channels/{channel_id}/messages`) and body."""

    route: str
    path: str
    body: Any
    at: float


class FakeDiscord(FakeServer):
    """An aiohttp server implementing the REST routes and the Gateway a Discord bot uses."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "duragent-test",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host=host, port=port)
        self.token = token
        self._ids = itertools.count(1)
        self.application_id = self._snowflake()
        self.bot_user: dict[str, Any] = {
            "id": self.application_id,
            "username": bot_name,
            "global_name": None,
            "discriminator": "0",
            "avatar": None,
            "bot": True,
        }
        self.calls: list[RecordedCall] = []
        #: Channel ids the bot showed "typing..." in, in order.
        self.typing: list[str] = []
        #: Seconds each attachment download takes (a big file on a slow link).
        self.download_delay = 0.0
        #: Whether the bot's Message Content intent is off in the Developer Portal: an IDENTIFY
        #: asking for it is closed with 4014 (Disallowed intents), as Discord does.
        self.message_content_disallowed = False
        #: Names of the files the bot started downloading, in order.
        self.downloads: list[str] = []
        self.identifies = 0
        self.resumes = 0
        #: The `heartbeat_interval` HELLO asks for, in milliseconds (Discord's; tests may shorten it).
        self.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS
        #: Heartbeats the bot sent (and were acknowledged, `HEARTBEAT_ACK_DELAY` s later).
        self.heartbeats = 0
        self._guilds: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._bot_messages: list[DiscordMessage] = []
        self._messages: dict[str, dict[str, Any]] = {}
        #: Users `add_user` made, by id: a mention of one resolves, as on Discord.
        self._users: dict[str, dict[str, Any]] = {}
        self._interactions: dict[str, dict[str, Any]] = {}
        self._responses: dict[str, list[DiscordMessage]] = {}
        self._files: dict[str, tuple[str, bytes, str]] = {}
        self._events: list[tuple[int, str, dict[str, Any]]] = []
        #: How many of `_events` the connected bot has been sent.
        self._delivered = 0
        self._new_events = asyncio.Event()
        self._session_id = secrets.token_hex(16)
        self._socket: web.WebSocketResponse | None = None
        self._compressor: Any = None
        #: One frame at a time: a zlib stream must reach the bot in the order it was compressed.
        self._sending = asyncio.Lock()
        self._identified = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def api_base(self) -> str:
        """The REST base as the plugin's `api_base` takes it (`http://127.0.0.1:PORT`; /api/v10 is added)."""
        return self.root_url

    @property
    def gateway_url(self) -> str:
        """The Gateway websocket's URL (also what `GET /gateway/bot` answers)."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def mention(self) -> str:
        """How a user mentions the bot in a message (`<@id>`)."""
        return f"<@{self.application_id}>"

    @property
    def connected(self) -> bool:
        """Whether a bot is on the Gateway and identified (or resumed)."""
        return self._socket is not None and not self._socket.closed and self._identified

    def add_routes(self, app: web.Application) -> None:
        """The Gateway websocket, attachment downloads and the REST API."""
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{file_id}/{name}", self._download)
        app.router.add_route("*", "/api/v{version}/{path:.+}", self._rest)

    async def stop(self) -> None:
        """Close the Gateway connection and stop listening."""
        if self._socket is not None:
            await self._socket.close()
        await super().stop()

    # ----------------------------------------------------------------- the world

    def add_user(
        self, username: str, global_name: str | None = None, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """A Discord user who can talk to the bot (with the id given, else a new snowflake)."""
        user_id = user_id or self._snowflake()
        if user_id in self._users or user_id == self.application_id:
            raise ValueError(f"user {user_id} exists already")
        self._users[user_id] = {
            "id": user_id,
            "username": username,
            "global_name": global_name,
            "discriminator": "0",
            "avatar": None,
        }
        return dict(self._users[user_id])

    def add_guild(self, name: str) -> str:
        """A server (guild) the bot is a member of; returns its id."""
        guild_id = self._snowflake()
        # Discord gives a bot, on joining, a role of its own name, which mention autocomplete offers.
        bot_role = self._snowflake()
        self._guilds[guild_id] = {
            "id": guild_id,
            "name": name,
            "channels": [],
            "threads": [],
            "bot_role": bot_role,
            "roles": [],
        }
        self._dispatch_if_ready("GUILD_CREATE", lambda: self._guild_payload(guild_id))
        return guild_id

    def add_channel(self, guild_id: str, name: str) -> str:
        """A text channel in a guild; returns its id."""
        channel: dict[str, Any] = {
            "id": self._snowflake(),
            "type": 0,
            "guild_id": guild_id,
            "name": name,
            "position": len(self._guilds[guild_id]["channels"]),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
        }
        self._guilds[guild_id]["channels"].append(channel)
        self._channels[channel["id"]] = channel
        self._dispatch_if_ready("CHANNEL_CREATE", lambda: channel)
        return str(channel["id"])

    def add_thread(self, channel_id: str, name: str) -> str:
        """A public thread under a guild text channel; returns its id (messages go to it)."""
        parent = self._channels[channel_id]
        thread = {
            "id": self._snowflake(),
            "type": 11,
            "guild_id": parent["guild_id"],
            "parent_id": channel_id,
            "name": name,
            "owner_id": self.application_id,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _timestamp(),
                "locked": False,
            },
        }
        self._guilds[parent["guild_id"]]["threads"].append(thread)
        self._channels[thread["id"]] = thread
        self._dispatch_if_ready("THREAD_CREATE", lambda: {**thread, "newly_created": True})
        return str(thread["id"])

    def add_role(self, guild_id: str, name: str) -> str:
        """A role people can mention in a guild (`<@&id>`); returns its id."""
        role = {
            "id": self._snowflake(),
            "name": name,
            "permissions": "0",
            "position": 2 + len(self._guilds[guild_id]["roles"]),
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": True,
            "flags": 0,
        }
        self._guilds[guild_id]["roles"].append(role)
        self._dispatch_if_ready("GUILD_ROLE_CREATE", lambda: {"guild_id": guild_id, "role": role})
        return str(role["id"])

    def role_mention(self, guild_id: str) -> str:
        """How a user mentions the bot's own role in a guild (`<@&id>`), picked from autocomplete
        in place of the bot: the role has the bot's name."""
        return f"<@&{self._guilds[guild_id]['bot_role']}>"

    def dm_channel(self, user: Mapping[str, Any], *, fresh: bool = False) -> str:
        """The direct-message channel between `user` and the bot; returns its id.

        Discord has one per user; `fresh=True` opens another anyway, so tests that share a user
        can keep their conversations (sessions are per channel) apart.
        """
        for channel in self._channels.values():
            if not fresh and channel["type"] == 1 and channel["recipients"][0]["id"] == user["id"]:
                return str(channel["id"])
        channel = {"id": self._snowflake(), "type": 1, "recipients": [dict(user)], "last_message_id": None}
        self._channels[channel["id"]] = channel
        return str(channel["id"])

    # ------------------------------------------------------------- the users' side

    def inject_message(
        self,
        channel_id: str,
        content: str,
        author: Mapping[str, Any],
        *,
        reply_to: str | None = None,
        attachments: list[tuple[str, bytes, str]] | None = None,
        stickers: list[str] | None = None,
        forward_of: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`author` posts in a channel; `<@bot id>` in the text mentions the bot. Returns the message.

        `stickers` names stickers sent with it (a sticker alone comes with empty `content`).
        `forward_of` (a message `inject_message` returned) makes it a forward of that message:
        Discord sends it with empty `content`, a snapshot of the original in `message_snapshots`
        and a `message_reference` of type 1.
        """
        channel = self._channels[channel_id]
        message = self._message_payload(channel, content, dict(author))
        message["mentions"] = [
            self._user_by_id(found) for found in re.findall(r"<@!?(\d+)>", content) if self._user_by_id(found)
        ]
        message["mention_roles"] = re.findall(r"<@&(\d+)>", content)
        message["attachments"] = [self._attachment(*attachment) for attachment in attachments or []]
        message["sticker_items"] = [
            {"id": self._snowflake(), "name": name, "format_type": 1} for name in stickers or []
        ]
        if reply_to is not None:
            replied = self._messages[reply_to]
            message["message_reference"] = {
                "type": 0,
                "message_id": reply_to,
                "channel_id": channel_id,
                "guild_id": channel.get("guild_id"),
            }
            message["referenced_message"] = replied
        if forward_of is not None:
            original = {key: forward_of.get(key) for key in _SNAPSHOT_KEYS}
            message["message_snapshots"] = [{"message": original}]
            message["message_reference"] = {
                "type": 1,
                "message_id": forward_of["id"],
                "channel_id": forward_of["channel_id"],
                "guild_id": forward_of.get("guild_id"),
            }
        self._messages[message["id"]] = message
        self._dispatch("MESSAGE_CREATE", message)
        return message

    def press_button(self, message_id: str, custom_id: str, user: Mapping[str, Any]) -> dict[str, Any]:
        """`user` presses a button under one of the bot's messages; returns the interaction."""
        message = self._messages[message_id]
        channel = self._channels[message["channel_id"]]
        interaction: dict[str, Any] = {
            "id": self._snowflake(),
            "application_id": self.application_id,
            "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "channel_id": channel["id"],
            "channel": {k: v for k, v in channel.items() if k != "recipients"},
            "token": secrets.token_urlsafe(24),
            "version": 1,
            "message": message,
            "app_permissions": "0",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0 if "guild_id" in channel else 1,
            "attachment_size_limit": 10485760,
        }
        if "guild_id" in channel:
            interaction["guild_id"] = channel["guild_id"]
            interaction["guild_locale"] = "en-US"
            interaction["member"] = self._member(dict(user))
        else:
            interaction["user"] = dict(user)
        self._interactions[interaction["id"]] = interaction
        self._responses[interaction["id"]] = []
        self._dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def disconnect(self, code: int = 4000) -> None:
        """Drop the bot's Gateway connection (4000 = unknown error: the bot should resume)."""
        if self._socket is not None and not self._socket.closed:
            await self._socket.close(code=code, message=b"fake-discord disconnect")

    # ---------------------------------------------------------------- the bot's side

    def sent_messages(self, channel_id: str | None = None) -> list[DiscordMessage]:
        """Messages the bot posted (to one channel, or all), oldest first, deleted ones included."""
        return [m for m in self._bot_messages if channel_id is None or m.channel_id == channel_id]

    def interaction_responses(self, interaction_id: str) -> list[DiscordMessage]:
        """What the bot answered a button press with (deferrals, edits of the original, follow-ups)."""
        return list(self._responses.get(interaction_id, []))

    async def wait_for_message(
        self,
        channel_id: str,
        predicate: Callable[[DiscordMessage], bool] | None = None,
        within: float = 5.0,
    ) -> DiscordMessage:
        """The first message the bot posted in `channel_id` matching `predicate`, waiting up to `within` s."""
        return await self.wait_until(
            lambda: next(
                (m for m in self.sent_messages(channel_id) if predicate is None or predicate(m)), None
            ),
            within,
        )

    async def wait_for_response(
        self, interaction_id: str, predicate: Callable[[DiscordMessage], bool], within: float = 5.0
    ) -> DiscordMessage:
        """The bot's answer to a button press that matches `predicate`, waiting up to `within` s."""
        return await self.wait_until(
            lambda: next((m for m in self.interaction_responses(interaction_id) if predicate(m)), None),
            within,
        )

    def calls_to(self, route: str) -> list[RecordedCall]:
        """The recorded calls of one route (`POST /channels/{channel_id}/messages`), oldest first."""
        return [c for c in self.calls if c.route == route]

    def fail_next(self, route: str, status: int = 429, *, retry_after: float = 0.5, times: int = 1) -> None:
        """Make the next `times` calls of `route` fail with `status` (429 tells the bot when to retry)."""
        self._queue_failure(route, Failure(status, retry_after), times)

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await socket.prepare(request)
        if self._socket is not None and not self._socket.closed:
            await self._socket.close(code=4000, message=b"replaced by a new connection")
        self._socket = socket
        self._identified = False
        compressed = request.query.get("compress") == "zlib-stream"
        self._compressor = zlib.compressobj() if compressed else None
        hello = {"heartbeat_interval": self.heartbeat_interval_ms}
        await self._send({"op": 10, "d": hello, "s": None, "t": None})
        pump = asyncio.create_task(self._pump(socket))
        acks: set[asyncio.Task[None]] = set()
        try:
            async for frame in socket:
                if frame.type == WSMsgType.TEXT:
                    await self._on_op(socket, json.loads(frame.data), acks)
        finally:
            pump.cancel()
            for ack in acks:
                ack.cancel()
            if self._socket is socket:
                self._identified = False
            self.notify()
        return socket

    async def _pump(self, socket: web.WebSocketResponse) -> None:
        """Send dispatches in sequence order once the bot identified or resumed."""
        while not socket.closed:
            if self._identified and self._socket is socket:
                while self._delivered < len(self._events):
                    seq, name, event = self._events[self._delivered]
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await self._send({"op": 0, "s": seq, "t": name, "d": event})
                    self._delivered += 1
            self._new_events.clear()
            await self._new_events.wait()

    async def _on_op(
        self, socket: web.WebSocketResponse, payload: dict[str, Any], acks: set[asyncio.Task[None]]
    ) -> None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == 1:
            # Only acknowledged: discord.py heartbeats right after HELLO, and a heartbeat is no
            # IDENTIFY (nothing may be dispatched before READY or RESUMED).
            ack = asyncio.create_task(self._ack_heartbeat(socket))
            acks.add(ack)
            ack.add_done_callback(acks.discard)
            return
        if op == 2:
            if data.get("token") != self.token:
                await socket.close(code=4004, message=b"Authentication failed.")
                return
            if self.message_content_disallowed and int(data.get("intents") or 0) & MESSAGE_CONTENT_INTENT:
                await socket.close(code=4014, message=b"Disallowed intent(s).")
                return
            self.identifies += 1
            self._session_id = secrets.token_hex(16)
            # A new session starts its sequence afresh; what was queued is not replayed to it.
            self._events.clear()
            self._delivered = 0
            self._queue_ready()
        elif op == 6:
            if data.get("token") != self.token or data.get("session_id") != self._session_id:
                await self._send({"op": 9, "d": False, "s": None, "t": None})
                return
            self.resumes += 1
            self._delivered = min(int(data.get("seq") or 0), len(self._events))
            self._queue("RESUMED", {})
        else:
            return
        self._identified = True
        self._new_events.set()
        self.notify()

    async def _ack_heartbeat(self, socket: web.WebSocketResponse) -> None:
        """HEARTBEAT_ACK, a round trip after the heartbeat (see `HEARTBEAT_ACK_DELAY`)."""
        await asyncio.sleep(HEARTBEAT_ACK_DELAY)
        if self._socket is socket and not socket.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send({"op": 11, "d": None, "s": None, "t": None})
            self.heartbeats += 1
            self.notify()

    def _queue_ready(self) -> None:
        ready = {
            "v": API_VERSION,
            "user": self.bot_user,
            "guilds": [{"id": guild_id, "unavailable": True} for guild_id in self._guilds],
            "session_id": self._session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "session_type": "normal",
            "shard": [0, 1],
        }
        self._queue("READY", ready)
        for guild_id in self._guilds:
            self._queue("GUILD_CREATE", self._guild_payload(guild_id))

    def _dispatch(self, name: str, event: dict[str, Any]) -> None:
        """Queue a dispatch: sent now if the bot is connected, else replayed when it resumes."""
        self._queue(name, event)
        self._new_events.set()

    def _dispatch_if_ready(self, name: str, event: Callable[[], dict[str, Any]]) -> None:
        if self._identified:
            self._dispatch(name, event())

    def _queue(self, name: str, event: dict[str, Any]) -> None:
        self._events.append((len(self._events) + 1, name, event))

    async def _send(self, payload: dict[str, Any]) -> None:
        assert self._socket is not None
        text = json.dumps(payload)
        async with self._sending:
            if self._compressor is None:
                await self._socket.send_str(text)
            else:
                data = self._compressor.compress(text.encode()) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
                await self._socket.send_bytes(data)

    # ------------------------------------------------------------------- REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        route = f"{request.method} " + re.sub(
            r"/(channels|messages|guilds|users|interactions|webhooks)/(\d+)",
            lambda m: f"/{m.group(1)}/{{{m.group(1).rstrip('s')}_id}}",
            path,
        )
        route = re.sub(r"/webhooks/\{webhook_id\}/[^/]+", "/webhooks/{webhook_id}/{token}", route)
        route = re.sub(
            r"/interactions/\{interaction_id\}/[^/]+/", "/interactions/{interaction_id}/{token}/", route
        )
        body, files = await _read_body(request)
        self.calls.append(RecordedCall(route, path, body, time.monotonic()))
        self.notify()
        is_webhook = route.startswith(("POST /interactions/", "PATCH /webhooks/", "POST /webhooks/"))
        if not is_webhook and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        if (failure := self._next_failure(route)) is not None:
            if failure.status == 429:
                return _rate_limited(failure.retry_after or 0.0)
            return _error(failure.status, 0, "Internal Server Error")
        handler = self._handlers().get(route)
        if handler is None:
            return _error(404, 0, f"404: Not Found ({route})")
        try:
            result = await handler(path, body, files)
        except _Refused as refused:
            return refused.response()
        self.notify()
        if result is None:
            return web.Response(status=204, headers=_bucket_headers())
        return _json(result, headers=_bucket_headers())

    def _handlers(self) -> dict[str, Callable[[str, Any, list[tuple[str, bytes]]], Any]]:
        return {
            "GET /users/@me": self._get_me,
            "GET /gateway/bot": self._get_gateway,
            "GET /gateway": self._get_gateway,
            "GET /oauth2/applications/@me": self._get_application,
            "GET /applications/@me": self._get_application,
            "GET /channels/{channel_id}": self._get_channel,
            "POST /users/@me/channels": self._open_dm,
            "POST /channels/{channel_id}/messages": self._create_message,
            "PATCH /channels/{channel_id}/messages/{message_id}": self._edit_message,
            "DELETE /channels/{channel_id}/messages/{message_id}": self._delete_message,
            "POST /channels/{channel_id}/typing": self._trigger_typing,
            "POST /interactions/{interaction_id}/{token}/callback": self._interaction_callback,
            "PATCH /webhooks/{webhook_id}/{token}/messages/@original": self._edit_original,
            "POST /webhooks/{webhook_id}/{token}": self._follow_up,
        }

    async def _get_me(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        return self.bot_user

    async def _get_gateway(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _get_application(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        return {
            "id": self.application_id,
            "name": self.bot_user["username"],
            "icon": None,
            "description": "",
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": {**self.bot_user, "bot": False},
        }

    async def _get_channel(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        return self._channel(path.split("/")[2])

    async def _open_dm(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        user = self._user_by_id(str(body.get("recipient_id")))
        if user is None:
            raise _Refused(400, 50007, "Cannot send messages to this user")
        return self._channels[self.dm_channel(user)]

    async def _create_message(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        channel = self._channel(path.split("/")[2])
        message = self._bot_message(channel["id"], body, files)
        reference = (body.get("message_reference") or {}).get("message_id")
        if reference is not None:
            if str(reference) not in self._messages and not body["message_reference"].get(
                "fail_if_not_exists", True
            ):
                reference = None
            elif str(reference) not in self._messages:
                raise _Refused(400, 50035, "Invalid Form Body: message_reference: Unknown message")
            message.reference_id = None if reference is None else str(reference)
        self._bot_messages.append(message)
        payload = self._message_payload(channel, message.content, self.bot_user, message.id)
        payload["components"] = message.components
        payload["mention_everyone"] = message.mention_everyone
        payload["attachments"] = [
            self._attachment(name, data, "application/octet-stream") for name, data in files
        ]
        if message.reference_id:
            payload["message_reference"] = {"message_id": message.reference_id, "channel_id": channel["id"]}
        self._messages[message.id] = payload
        return payload

    def _bot_message(self, channel_id: str, body: Any, files: list[tuple[str, bytes]]) -> DiscordMessage:
        content = str(body.get("content") or "")
        if len(content) > MESSAGE_LIMIT:
            raise _Refused(
                400, 50035, f"Invalid Form Body: content: Must be {MESSAGE_LIMIT} or fewer in length."
            )
        if not content and not files and not body.get("embeds"):
            raise _Refused(400, 50006, "Cannot send an empty message")
        return DiscordMessage(
            id=self._snowflake(),
            channel_id=channel_id,
            content=content,
            components=list(body.get("components") or []),
            files=files,
            flags=int(body.get("flags") or 0),
            mention_everyone=_mentions_everyone(content, body.get("allowed_mentions")),
        )

    async def _edit_message(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        _, _, _channel_id, _, message_id = path.split("/")
        message = self._own_message(message_id)
        content = str(body.get("content") or "")
        if len(content) > MESSAGE_LIMIT:
            raise _Refused(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer in length.")
        message.edits.append(content)
        message.content = content
        if "components" in body:
            message.components = list(body["components"] or [])
        payload = self._messages[message_id]
        payload["content"] = content
        return payload

    async def _delete_message(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        self._own_message(path.split("/")[4]).deleted = True
        return None

    async def _trigger_typing(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        self.typing.append(self._channel(path.split("/")[2])["id"])
        return None

    async def _interaction_callback(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        interaction_id = path.split("/")[2]
        interaction = self._interactions.get(interaction_id)
        if interaction is None:
            raise _Refused(404, 10062, "Unknown interaction")
        responses = self._responses[interaction_id]
        if responses:
            raise _Refused(400, 40060, "Interaction has already been acknowledged.")
        data = body.get("data") or {}
        response = DiscordMessage(
            id=self._snowflake(),
            channel_id=interaction["channel_id"],
            content=str(data.get("content") or ""),
            flags=int(data.get("flags") or 0),
        )
        responses.append(response)
        loading = body.get("type") == 5
        return {
            "interaction": {
                "id": interaction_id,
                "type": 3,
                "response_message_id": response.id,
                "response_message_loading": loading,
                "response_message_ephemeral": response.ephemeral,
            }
        }

    async def _edit_original(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        interaction = self._interaction_by_token(path.split("/")[3])
        responses = self._responses[interaction["id"]]
        if not responses:
            raise _Refused(404, 10008, "Unknown Message")
        original = responses[0]
        original.edits.append(str(body.get("content") or ""))
        original.content = str(body.get("content") or "")
        return self._message_payload(
            self._channels[original.channel_id], original.content, self.bot_user, original.id
        )

    async def _follow_up(self, path: str, body: Any, files: list[tuple[str, bytes]]) -> Any:
        interaction = self._interaction_by_token(path.split("/")[3])
        message = self._bot_message(interaction["channel_id"], body, files)
        self._responses[interaction["id"]].append(message)
        return self._message_payload(
            self._channels[message.channel_id], message.content, self.bot_user, message.id
        )

    async def _download(self, request: web.Request) -> web.Response:
        stored = self._files.get(request.match_info["file_id"])
        if stored is None:
            raise web.HTTPNotFound()
        name, data, content_type = stored
        self.downloads.append(name)
        self.notify()
        await asyncio.sleep(self.download_delay)
        return web.Response(body=data, content_type=content_type)

    # ------------------------------------------------------------------ internals

    def _attachment(self, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        """Store a file and describe it as Discord does (its `url` serves the bytes)."""
        file_id = self._snowflake()
        self._files[file_id] = (name, data, content_type)
        url = f"{self.root_url}/attachments/{file_id}/{name}"
        return {
            "id": file_id,
            "filename": name,
            "size": len(data),
            "content_type": content_type,
            "url": url,
            "proxy_url": url,
        }

    def _snowflake(self) -> str:
        return str(((int(time.time() * 1000) - _EPOCH_MS) << 22) + next(self._ids))

    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise _Refused(404, 10003, "Unknown Channel")
        return channel

    def _own_message(self, message_id: str) -> DiscordMessage:
        for message in self._bot_messages:
            if message.id == message_id and not message.deleted:
                return message
        raise _Refused(404, 10008, "Unknown Message")

    def _interaction_by_token(self, token: str) -> dict[str, Any]:
        for interaction in self._interactions.values():
            if interaction["token"] == token:
                return interaction
        raise _Refused(404, 10015, "Unknown Webhook")

    def _user_by_id(self, user_id: str) -> dict[str, Any] | None:
        if user_id == self.application_id:
            return self.bot_user
        if user_id in self._users:
            return dict(self._users[user_id])
        for message in self._messages.values():
            if message["author"]["id"] == user_id:
                return dict(message["author"])
        for channel in self._channels.values():
            for recipient in channel.get("recipients", []):
                if recipient["id"] == user_id:
                    return dict(recipient)
        return None

    def _member(self, user: dict[str, Any]) -> dict[str, Any]:
        return {
            "user": user,
            "roles": [],
            "joined_at": _timestamp(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "2248473465835073",
        }

    def _message_payload(
        self, channel: dict[str, Any], content: str, author: dict[str, Any], message_id: str | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": message_id or self._snowflake(),
            "channel_id": channel["id"],
            "author": author,
            "content": content,
            "timestamp": _timestamp(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if "guild_id" in channel:
            message["guild_id"] = channel["guild_id"]
            message["member"] = {k: v for k, v in self._member(author).items() if k != "user"}
        return message

    def _guild_payload(self, guild_id: str) -> dict[str, Any]:
        guild = self._guilds[guild_id]
        return {
            "id": guild_id,
            "name": guild["name"],
            "icon": None,
            "owner_id": self._snowflake(),
            "unavailable": False,
            "member_count": 2,
            "large": False,
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
            "joined_at": _timestamp(),
            "roles": [
                {
                    "id": guild_id,
                    "name": "@everyone",
                    "permissions": "2248473465835073",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                {
                    "id": guild["bot_role"],
                    "name": self.bot_user["username"],
                    "permissions": "2248473465835073",
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": True,
                    "mentionable": True,
                    "flags": 0,
                    "tags": {"bot_id": self.application_id},
                },
                *guild["roles"],
            ],
            "emojis": [],
            "stickers": [],
            "members": [{**self._member(self.bot_user), "roles": [guild["bot_role"]]}],
            "channels": [{k: v for k, v in c.items() if k != "guild_id"} for c in guild["channels"]],
            "threads": guild["threads"],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


class _Refused(Exception):
    """A call Discord would refuse, shaped as Discord's JSON error."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        return _error(self.status, self.code, self.message)


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"code": code, "message": message}, status=status, headers=_bucket_headers())


def _json(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly `application/json`, as Discord sends it (discord.py compares the header verbatim).
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _rate_limited(retry_after: float) -> web.Response:
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    headers = {
        **_bucket_headers(remaining=0, reset_after=retry_after),
        "Retry-After": str(max(1, round(retry_after))),
        "X-RateLimit-Scope": "user",
        # Discord's edge adds it; a 429 without it is a Cloudflare ban to discord.py, not a rate limit.
        "Via": "1.1 google",
    }
    return _json(body, status=429, headers=headers)


def _bucket_headers(remaining: int = 4, reset_after: float = 1.0) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": "fake-bucket",
    }


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """The JSON body (also `payload_json` of a multipart upload) and any uploaded files."""
    if request.method in ("GET", "DELETE") or not request.can_read_body:
        return {}, []
    if request.content_type.startswith("multipart/"):
        body: Any = {}
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":  # type: ignore[union-attr]
                body = json.loads(data)
            else:
                files.append((part.filename or "file", bytes(data)))  # type: ignore[union-attr]
        return body, files
    text = await request.text()
    return (json.loads(text) if text else {}), []


def _timestamp() -> str:
    return datetime.now(UTC).isoformat()


def _mentions_everyone(content: str, allowed_mentions: Any) -> bool:
    """Discord's rule: `@everyone`/`@here` notify unless `allowed_mentions` leaves "everyone" out."""
    if "@everyone" not in content and "@here" not in content:
        return False
    if not isinstance(allowed_mentions, dict):
        return True
    return "everyone" in (allowed_mentions.get("parse") or [])


class _DirectMessages:
    """The console's chat: a user's direct messages with the bot, and what its button presses
    answered (shown to that user alone)."""

    def __init__(self, discord: FakeDiscord, user: dict[str, Any]):
        self.discord, self.user = discord, user
        self.channel = discord.dm_channel(user)
        self.presses: list[str] = []

    def bot_messages(self) -> list[ShownMessage]:
        """The bot's messages in the DM channel and its (non-empty) answers to presses, in order."""
        answers = [m for press in self.presses for m in self.discord.interaction_responses(press)]
        messages = [
            _shown(message, note="only you can see this" if message.ephemeral else "")
            for message in answers
            if message.content
        ]
        messages += [_shown(message) for message in self.discord.sent_messages(self.channel)]
        return sorted(messages, key=lambda message: int(message.id))

    def say(self, text: str) -> None:
        """A direct message from the user."""
        self.discord.inject_message(self.channel, text, author=self.user)

    def press(self, message: ShownMessage, button: Button) -> None:
        """The user presses a button: an interaction, whose answers are shown too."""
        self.presses.append(self.discord.press_button(message.id, button.data, self.user)["id"])


def _shown(message: DiscordMessage, note: str = "") -> ShownMessage:
    buttons = tuple(Button(b.get("label", ""), b["custom_id"]) for b in message.buttons if "custom_id" in b)
    return ShownMessage(message.id, message.content, buttons, message.deleted, note)


def _user_id(value: str) -> str:
    """A `--user` id as `duragent init --discord-owner` takes it."""
    if not re.fullmatch(DiscordSetup.owner_pattern, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Discord user id (15 to 21 digits)")
    return value


def main(argv: list[str] | None = None) -> None:
    """`python -m duragent.testing.fake_discord`: serve a fake Discord until interrupted; with
    `--user ID`, chat with the bot in direct messages as that user."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8903)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument(
        "--user",
        type=_user_id,
        metavar="ID",
        help="type direct messages to the bot as the user with this id and see its replies",
    )
    args = parser.parse_args(argv)
    discord = FakeDiscord(port=args.port, token=args.token)
    chat = None
    if args.user is not None:
        chat = _DirectMessages(discord, discord.add_user(f"user{args.user[-4:]}", user_id=args.user))

    def announce() -> str:
        guild = discord.add_guild("Fake Guild")
        channel = discord.add_channel(guild, "general")
        said = (
            f"fake Discord: api_base {discord.api_base}, gateway {discord.gateway_url}\n"
            f"bot token {args.token}; guild {guild}, channel #general {channel}"
        )
        if chat is not None:
            said += (
                f"\nyou are user {args.user} (`duragent init --discord-owner {args.user}`): type a direct"
                " message to the bot; /press N presses a button"
            )
        return said

    console = (lambda: chat_console(discord, chat)) if chat is not None else None
    asyncio.run(discord.serve_until_interrupted(announce, console))


if __name__ == "__main__":
    main()
