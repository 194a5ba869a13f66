"""A real Slack on 127.0.0.1: the Web API methods a bot uses plus a Socket Mode websocket.

    async with FakeSlack() as slack:
        # point slack_sdk at it: AsyncWebClient(token, base_url=slack.api_base)
        ada = slack.add_user("ada", "Ada Lovelace")
        channel = slack.add_channel("general")
        sent = slack.inject_message(channel, f"{slack.mention} hello", user=ada)
        reply = await slack.wait_for_message(channel)

Web API (`/api/<method>`, JSON, form or query parameters, the token as a Bearer header):
auth.test, apps.connections.open (answers a ws:// URL of this server; needs the xapp- app
token), users.info, conversations.info, chat.postMessage / update / delete / postEphemeral, and
the file upload flow (files.getUploadURLExternal, the upload URL, files.completeUploadExternal). Like Slack it
refuses texts over 40,000 characters (`msg_too_long`) and blocks over Slack's limits
(`invalid_blocks`: section text over 3,000 characters, more than 50 blocks), and answers
`{"ok": false, "error": ...}` for unknown channels and messages. Received files are served at
their `url_private_download` to the bot token only.

Events reach the app as Socket Mode envelopes (`hello`, `events_api`, `interactive`,
`disconnect`) that the app must acknowledge with their `envelope_id`; unacknowledged envelopes
are sent again, with `retry_attempt`, on the next connection. With `events_url` set, they are
POSTed there instead (HTTP Events mode), signed with `signing_secret` as Slack signs them.

Tests drive the users' side with `inject_message` (mentions, threads, files), `press_button`
and `disconnect`, and read the bot's side with `sent_messages`, `wait_for_message`,
`ephemerals`, `calls_to` and `unacked`. `fail_next("chat.postMessage", 429, retry_after=1)`
makes the next call fail with Slack's rate-limit answer; `download_delay` slows file downloads
(`downloads` lists those begun).

Run it by hand: `python -m duragent.testing.fake_slack --port 8904`; with `--user ID`, what you
type is a direct message to the app from that member and its replies are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from duragent.gateways.setup import SlackSetup
from duragent.testing.chat_console import Button, ShownMessage, chat_console
from duragent.testing.fake_server import Failure, FakeServer, RecordedCall

#: Slack truncates (and we refuse) a message's `text` beyond this.
TEXT_LIMIT = 40_000
#: A section block's text.
SECTION_TEXT_LIMIT = 3000
BLOCKS_LIMIT = 50
DEFAULT_BOT_TOKEN = "xoxb-0000-fake-slack-bot-token"
DEFAULT_APP_TOKEN = "xapp-1-fake-slack-app-token"
TEAM_ID = "T0FAKE"
APP_ID = "A0FAKE"


@dataclass
class SlackMessage:
    """A message the bot posted (or an ephemeral one), as the fake recorded it."""

    ts: str
    channel: str
    text: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    #: Uploaded files shared with it: (filename, bytes).
    files: list[tuple[str, bytes]] = field(default_factory=list)
    #: For ephemeral messages: the only user who sees it.
    user: str | None = None
    edits: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The buttons of its actions blocks, in order."""
        return [
            element
            for block in self.blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
            if element.get("type") == "button"
        ]

    @property
    def shown_text(self) -> str:
        """What a user reads: the section blocks' text when there are blocks, else `text`."""
        sections = [b["text"]["text"] for b in self.blocks if b.get("type") == "section" and "text" in b]
        return "\n".join(sections) if sections else self.text


class FakeSlack(FakeServer):
    """An aiohttp server implementing the Web API methods and Socket Mode a Slack app uses."""

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        bot_name: str = "duragent",
        events_url: str | None = None,
        signing_secret: str = "fake-signing-secret",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host=host, port=port)
        self.bot_token = bot_token
        self.app_token = app_token
        self.events_url = events_url
        self.signing_secret = signing_secret
        self._ids = itertools.count(1)
        self.bot_user: dict[str, Any] = {
            "id": self._id("U"),
            "name": bot_name,
            "real_name": bot_name,
            "is_bot": True,
        }
        self.bot_id = self._id("B")
        self.calls: list[RecordedCall] = []
        #: Envelope ids the app acknowledged, in order.
        self.acked: list[str] = []
        self.connections = 0
        #: Seconds each file download takes (a big file on a slow link).
        self.download_delay = 0.0
        #: Names of the files the bot started downloading, in order.
        self.downloads: list[str] = []
        self._users: dict[str, dict[str, Any]] = {self.bot_user["id"]: self.bot_user}
        self._channels: dict[str, dict[str, Any]] = {}
        self._messages: list[SlackMessage] = []
        #: (channel, ts) -> user id of the messages users posted.
        self._user_posts: dict[tuple[str, str], str] = {}
        #: (channel, ts) of the messages users replied to in a thread.
        self._replied_to: set[tuple[str, str]] = set()
        self._ephemerals: list[SlackMessage] = []
        self._files: dict[str, tuple[str, bytes, str]] = {}
        self._uploads: dict[str, tuple[str, bytes | None]] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._tick = itertools.count(1)
        self._socket: web.WebSocketResponse | None = None
        self._wake = asyncio.Event()
        self._http_delivery: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def api_base(self) -> str:
        """The Web API base as slack_sdk's `base_url` takes it (`http://127.0.0.1:PORT/api/`)."""
        return f"{self.root_url}/api/"

    @property
    def mention(self) -> str:
        """How a user mentions the bot in a message (`<@U...>`)."""
        return f"<@{self.bot_user['id']}>"

    @property
    def connected(self) -> bool:
        """Whether an app holds the Socket Mode websocket."""
        return self._socket is not None and not self._socket.closed

    def add_routes(self, app: web.Application) -> None:
        """The Web API, the Socket Mode websocket, file uploads and downloads."""
        app.router.add_route("*", "/api/{method}", self._web_api)
        app.router.add_get("/socket-mode", self._socket_mode)
        app.router.add_post("/upload/{upload_id}", self._upload)
        app.router.add_get("/files-pri/{file_id}/{name}", self._download)

    async def start(self) -> None:
        """Listen (on a free port unless one was given); deliver events over HTTP if asked."""
        await super().start()
        if self.events_url is not None:
            self._http_delivery = asyncio.create_task(self._deliver_over_http())

    async def stop(self) -> None:
        """Close the websocket and stop listening."""
        if self._http_delivery is not None:
            self._http_delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._http_delivery
        if self._socket is not None:
            await self._socket.close()
        await super().stop()

    # ----------------------------------------------------------------- the world

    def add_user(
        self, name: str, real_name: str | None = None, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """A member of the workspace (with the member id given, else a new one)."""
        user_id = user_id or self._id("U")
        if user_id in self._users:
            raise ValueError(f"user {user_id} exists already")
        user: dict[str, Any] = {
            "id": user_id,
            "name": name,
            "real_name": real_name or name,
            "is_bot": False,
        }
        self._users[user["id"]] = user
        return user

    def add_channel(self, name: str) -> str:
        """A public channel the bot is in; returns its id."""
        channel_id = self._id("C")
        self._channels[channel_id] = {"id": channel_id, "name": name, "type": "channel"}
        return channel_id

    def dm_channel(self, user: Mapping[str, Any], *, fresh: bool = False) -> str:
        """The direct-message channel between `user` and the bot (`fresh`: another one, for tests)."""
        for channel in self._channels.values():
            if not fresh and channel["type"] == "im" and channel["user"] == user["id"]:
                return str(channel["id"])
        channel_id = self._id("D")
        self._channels[channel_id] = {"id": channel_id, "type": "im", "user": user["id"]}
        return channel_id

    # ------------------------------------------------------------- the users' side

    def inject_message(
        self,
        channel: str,
        text: str,
        user: Mapping[str, Any],
        *,
        thread_ts: str | None = None,
        files: list[tuple[str, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """`user` posts in a channel (or a thread of it); returns the message event.

        A mention of the bot in a channel also sends an `app_mention` event, as Slack does.
        """
        kind = self._channels[channel]["type"]
        ts = self._ts()
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user["id"],
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "team": TEAM_ID,
            "channel_type": kind,
        }
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
            parent = self._find(channel, thread_ts)
            event["parent_user_id"] = self.bot_user["id"] if isinstance(parent, SlackMessage) else parent
            self._replied_to.add((channel, thread_ts))
        self._user_posts[(channel, ts)] = str(user["id"])
        if files:
            event["subtype"] = "file_share"
            event["files"] = [self._store_file(*file) for file in files]
        self._event(event)
        if kind != "im" and self.mention in text:
            self._event({**event, "type": "app_mention"})
        return event

    def press_button(self, message: SlackMessage, action_id: str, user: Mapping[str, Any]) -> dict[str, Any]:
        """`user` presses a button of one of the bot's messages; returns the block_actions payload."""
        button = next(b for b in message.buttons if b["action_id"] == action_id)
        container = {"type": "message", "message_ts": message.ts, "channel_id": message.channel}
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user["id"], "username": user["name"], "name": user["name"], "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {**container, "is_ephemeral": False},
            "trigger_id": f"{next(self._tick)}.trigger",
            "team": {"id": TEAM_ID, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": self._channels[message.channel].get("name", "dm")},
            "message": self._message_payload(message),
            "response_url": f"{self.root_url}/api/response_url.unsupported",
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": "actions",
                    "text": button["text"],
                    "value": button.get("value", ""),
                    "type": "button",
                    "action_ts": self._ts(),
                }
            ],
        }
        self._envelope("interactive", payload)
        return payload

    async def disconnect(self) -> None:
        """Ask the app to reconnect (`disconnect` envelope, then close), as Slack does every few hours."""
        if self._socket is not None and not self._socket.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._socket.send_json({"type": "disconnect", "reason": "refresh_requested"})
            await self._socket.close()

    # ---------------------------------------------------------------- the bot's side

    def sent_messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[SlackMessage]:
        """Messages the bot posted (in one channel, or one thread of it), oldest first."""
        return [
            m
            for m in self._messages
            if (channel is None or m.channel == channel) and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def ephemerals(self, user: str | None = None) -> list[SlackMessage]:
        """Ephemeral messages the bot showed (to one user, or anyone)."""
        return [m for m in self._ephemerals if user is None or m.user == user]

    @property
    def unacked(self) -> int:
        """Envelopes the app has not acknowledged yet."""
        return len(self._pending)

    async def wait_for_message(
        self, channel: str, predicate: Callable[[SlackMessage], bool] | None = None, within: float = 5.0
    ) -> SlackMessage:
        """The first message the bot posted in `channel` matching `predicate`, waiting up to `within` s."""
        return await self.wait_until(
            lambda: next((m for m in self.sent_messages(channel) if predicate is None or predicate(m)), None),
            within,
        )

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The recorded calls of one Web API method, oldest first."""
        return [c for c in self.calls if c.method == method]

    def fail_next(self, method: str, status: int = 429, *, retry_after: int = 1, times: int = 1) -> None:
        """Make the next `times` calls of `method` fail (429 carries `Retry-After`)."""
        self._queue_failure(method, Failure(status, retry_after), times)

    # ------------------------------------------------------------------ events

    def _event(self, event: dict[str, Any]) -> None:
        payload = {
            "token": "verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": self._id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": TEAM_ID,
                    "user_id": self.bot_user["id"],
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        self._envelope("events_api", payload)

    def _envelope(self, kind: str, payload: dict[str, Any]) -> None:
        envelope_id = secrets.token_hex(8)
        self._pending[envelope_id] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind == "interactive",
            "retry_attempt": 0,
            "retry_reason": "",
            "_sent": False,
        }
        self._wake.set()

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        if request.query.get("ticket") not in self._tickets():
            raise web.HTTPUnauthorized(text="invalid ticket")
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        if self._socket is not None and not self._socket.closed:
            await self._socket.close()
        self._socket = socket
        self.connections += 1
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        await socket.send_json(hello)
        # Whatever the last connection did not acknowledge is sent again, as a retry.
        for envelope in self._pending.values():
            if envelope["_sent"]:
                envelope["retry_attempt"] += 1
                envelope["retry_reason"] = "timeout"
            envelope["_sent"] = False
        pump = asyncio.create_task(self._pump(socket))
        self.notify()
        try:
            async for frame in socket:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    await self._ack(json.loads(frame.data))
        finally:
            pump.cancel()
            self.notify()
        return socket

    async def _pump(self, socket: web.WebSocketResponse) -> None:
        while not socket.closed:
            for envelope in list(self._pending.values()):
                if not envelope["_sent"]:
                    envelope["_sent"] = True
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await socket.send_json({k: v for k, v in envelope.items() if not k.startswith("_")})
            self._wake.clear()
            await self._wake.wait()

    async def _ack(self, message: dict[str, Any]) -> None:
        envelope_id = str(message.get("envelope_id", ""))
        if self._pending.pop(envelope_id, None) is not None:
            self.acked.append(envelope_id)
            self.notify()

    async def _deliver_over_http(self) -> None:
        """HTTP Events mode: POST each envelope's payload, signed; a 200 acknowledges it."""
        assert self.events_url is not None
        async with aiohttp.ClientSession() as http:
            while True:
                for envelope_id, envelope in list(self._pending.items()):
                    if envelope["type"] == "interactive":
                        body = urlencode({"payload": json.dumps(envelope["payload"])}).encode()
                        content_type = "application/x-www-form-urlencoded"
                    else:
                        body = json.dumps(envelope["payload"]).encode()
                        content_type = "application/json"
                    headers = {"Content-Type": content_type, **self.sign(body)}
                    if envelope["retry_attempt"]:
                        headers["X-Slack-Retry-Num"] = str(envelope["retry_attempt"])
                        headers["X-Slack-Retry-Reason"] = "http_timeout"
                    try:
                        async with http.post(self.events_url, data=body, headers=headers) as response:
                            delivered = response.status == 200
                    except aiohttp.ClientError:
                        delivered = False
                    if delivered:
                        await self._ack({"envelope_id": envelope_id})
                    else:
                        envelope["retry_attempt"] += 1
                if self._pending:
                    await asyncio.sleep(0.2)
                    continue
                self._wake.clear()
                await self._wake.wait()

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The `X-Slack-Signature` and `X-Slack-Request-Timestamp` headers Slack sends with `body`."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + stamp.encode() + b":" + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": stamp}

    # ------------------------------------------------------------------- Web API

    async def _web_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        self.calls.append(RecordedCall(method, params, time.monotonic()))
        self.notify()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or str(
            params.get("token", "")
        )
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return _answer({"ok": False, "error": "invalid_auth"})
        if (failure := self._next_failure(method)) is not None:
            if failure.status == 429:
                retry_after = {"Retry-After": f"{failure.retry_after:g}"}
                return _answer({"ok": False, "error": "ratelimited"}, 429, retry_after)
            return _answer({"ok": False, "error": "fatal_error"}, failure.status)
        handler = self._methods().get(method)
        if handler is None:
            return _answer({"ok": False, "error": "unknown_method"}, 404)
        try:
            result = handler(params)
        except _SlackError as error:
            return _answer({"ok": False, "error": error.code})
        self.notify()
        return _answer({"ok": True, **result})

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.test/",
            "team": "Fake",
            "user": self.bot_user["name"],
            "team_id": TEAM_ID,
            "user_id": self.bot_user["id"],
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _tickets(self) -> set[str]:
        return {c.params.get("_ticket", "") for c in self.calls_to("apps.connections.open")}

    def _connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(8)
        params["_ticket"] = ticket
        return {"url": f"ws://{self.host}:{self.port}/socket-mode?ticket={ticket}"}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(params.get("user")))
        if user is None:
            raise _SlackError("user_not_found")
        return {
            "user": {**user, "profile": {"display_name": user["real_name"], "real_name": user["real_name"]}}
        }

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel")))
        if channel is None:
            raise _SlackError("channel_not_found")
        is_im = channel["type"] == "im"
        return {"channel": {"id": channel["id"], "name": channel.get("name"), "is_im": is_im}}

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._new_message(params)
        self._messages.append(message)
        return {"channel": message.channel, "ts": message.ts, "message": self._message_payload(message)}

    def _new_message(self, params: dict[str, Any]) -> SlackMessage:
        channel = str(params.get("channel", ""))
        if channel not in self._channels:
            raise _SlackError("channel_not_found")
        text, blocks = str(params.get("text") or ""), _blocks(params.get("blocks"))
        _check(text, blocks)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None and self._find(channel, str(thread_ts)) is None:
            raise _SlackError("thread_not_found")
        return SlackMessage(self._ts(), channel, text, str(thread_ts) if thread_ts else None, blocks)

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own(params)
        text, blocks = str(params.get("text") or ""), _blocks(params.get("blocks"))
        _check(text, blocks)
        message.text = text
        message.edits.append(text)
        if "blocks" in params:
            message.blocks = blocks
        return {"channel": message.channel, "ts": message.ts, "text": text}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own(params)
        message.deleted = True
        return {"channel": message.channel, "ts": message.ts}

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._new_message(params)
        message.user = str(params.get("user", ""))
        if message.user not in self._users:
            raise _SlackError("user_not_in_channel")
        self._ephemerals.append(message)
        return {"message_ts": message.ts}

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = self._id("F")
        self._uploads[file_id] = (str(params.get("filename", "file")), None)
        return {"upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        described = json.loads(files) if isinstance(files, str) else list(files or [])
        uploaded = []
        for item in described:
            name, data = self._uploads.get(item["id"], ("", None))
            if data is None:
                raise _SlackError("file_upload_not_completed")
            uploaded.append((str(item.get("title") or name), data))
        channel = params.get("channel_id") or params.get("channels")
        if channel:
            message = self._new_message(
                {
                    "channel": channel,
                    "text": params.get("initial_comment") or "",
                    "thread_ts": params.get("thread_ts"),
                }
            )
            message.files = uploaded
            self._messages.append(message)
        return {
            "files": [
                {"id": item["id"], "title": name} for item, (name, _) in zip(described, uploaded, strict=True)
            ]
        }

    async def _upload(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        if upload_id not in self._uploads:
            raise web.HTTPNotFound()
        data = await request.read()  # slack_sdk posts the file's bytes as the body
        self._uploads[upload_id] = (self._uploads[upload_id][0], data)
        return web.Response(text=f"OK - {len(data)}")

    async def _download(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            raise web.HTTPForbidden()
        stored = self._files.get(request.match_info["file_id"])
        if stored is None:
            raise web.HTTPNotFound()
        name, data, mimetype = stored
        self.downloads.append(name)
        self.notify()
        await asyncio.sleep(self.download_delay)
        return web.Response(body=data, content_type=mimetype)

    # ------------------------------------------------------------------ internals

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._tick):06d}"

    def _store_file(self, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
        file_id = self._id("F")
        self._files[file_id] = (name, data, mimetype)
        url = f"{self.root_url}/files-pri/{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private": url,
            "url_private_download": url,
        }

    def _find(self, channel: str, ts: str) -> SlackMessage | str | None:
        """The bot's message at `ts`, or the id of the user who posted it, or None."""
        for message in self._messages:
            if message.channel == channel and message.ts == ts:
                return message
        return self._user_posts.get((channel, ts))

    def _own(self, params: dict[str, Any]) -> SlackMessage:
        for message in self._messages:
            if (
                message.channel == params.get("channel")
                and message.ts == params.get("ts")
                and not message.deleted
            ):
                return message
        raise _SlackError("message_not_found")

    def _message_payload(self, message: SlackMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user["id"],
            "bot_id": self.bot_id,
            "text": message.text,
            "ts": message.ts,
            "blocks": message.blocks,
            "team": TEAM_ID,
        }
        if message.thread_ts:
            payload["thread_ts"] = message.thread_ts
        elif self._has_replies(message):
            # As on Slack: a message with a thread under it names that thread (its own ts).
            payload["thread_ts"] = message.ts
        return payload

    def _has_replies(self, message: SlackMessage) -> bool:
        where = (message.channel, message.ts)
        return where in self._replied_to or any((m.channel, m.thread_ts) == where for m in self._messages)


class _SlackError(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _answer(
    body: dict[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=dict(headers or {}))


async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form and JSON parameters merged, as Slack accepts all three."""
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        text = await request.text()
        if request.content_type == "application/json" and text:
            params.update(json.loads(text))
        elif text:
            params.update(dict(parse_qsl(text)))
    return params


def _blocks(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


def _check(text: str, blocks: list[dict[str, Any]]) -> None:
    if not text and not blocks:
        raise _SlackError("no_text")
    if len(text) > TEXT_LIMIT:
        raise _SlackError("msg_too_long")
    if len(blocks) > BLOCKS_LIMIT:
        raise _SlackError("invalid_blocks")
    for block in blocks:
        if block.get("type") == "section" and len(block.get("text", {}).get("text", "")) > SECTION_TEXT_LIMIT:
            raise _SlackError("invalid_blocks")


class _DirectMessages:
    """The console's chat: a member's direct messages with the app, and what it showed that member
    alone there (the answers to button presses)."""

    def __init__(self, slack: FakeSlack, user: dict[str, Any]):
        self.slack, self.user = slack, user
        self.channel = slack.dm_channel(user)

    def bot_messages(self) -> list[ShownMessage]:
        """The app's messages in the DM (threads included) and its ephemerals there, in order."""
        ephemerals = [m for m in self.slack.ephemerals(self.user["id"]) if m.channel == self.channel]
        messages = [_shown(m, note="only visible to you") for m in ephemerals]
        messages += [_shown(m) for m in self.slack.sent_messages(self.channel)]
        return sorted(messages, key=lambda message: [int(part) for part in message.id.split(".")])

    def say(self, text: str) -> None:
        """A direct message from the member."""
        self.slack.inject_message(self.channel, text, user=self.user)

    def press(self, message: ShownMessage, button: Button) -> None:
        """The member presses a button of one of the app's messages."""
        [pressed] = [m for m in self.slack.sent_messages(self.channel) if m.ts == message.id]
        self.slack.press_button(pressed, button.data, self.user)


def _shown(message: SlackMessage, note: str = "") -> ShownMessage:
    buttons = tuple(Button(str(b["text"].get("text", "")), b["action_id"]) for b in message.buttons)
    return ShownMessage(message.ts, message.shown_text, buttons, message.deleted, note)


def _member_id(value: str) -> str:
    """A `--user` id as `duragent init --slack-owner` takes it."""
    if not re.fullmatch(SlackSetup.owner_pattern, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Slack member id (like U0123ABCD)")
    return value


def main(argv: list[str] | None = None) -> None:
    """`python -m duragent.testing.fake_slack`: serve a fake Slack until interrupted; with
    `--user ID`, chat with the app in direct messages as that member."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8904)
    parser.add_argument(
        "--user",
        type=_member_id,
        metavar="ID",
        help="type direct messages to the app as the member with this id and see its replies",
    )
    args = parser.parse_args(argv)
    slack = FakeSlack(port=args.port)
    chat = None
    if args.user is not None:
        chat = _DirectMessages(slack, slack.add_user(f"user{args.user[-4:].lower()}", user_id=args.user))

    def announce() -> str:
        channel = slack.add_channel("general")
        said = (
            f"fake Slack: api_base {slack.api_base}, channel #general {channel}\n"
            f"bot token {slack.bot_token}, app token {slack.app_token}"
        )
        if chat is not None:
            said += (
                f"\nyou are member {args.user} (`duragent init --slack-owner {args.user}`): type a direct"
                " message to the app; /press N presses a button"
            )
        return said

    console = (lambda: chat_console(slack, chat)) if chat is not None else None
    asyncio.run(slack.serve_until_interrupted(announce, console))


if __name__ == "__main__":
    main()
