"""A real HTTP server on 127.0.0.1 that answers like the Telegram Bot API, for bot tests.

    async with FakeTelegramBotAPI() as telegram:
        # point the bot at telegram.api_base (aiogram: TelegramAPIServer.from_base(telegram.api_base))
        sent = telegram.inject_message(chat_id=42, text="hello", from_user=42)
        reply = await telegram.wait_for_message(42)
        assert reply.reply_to_message_id == sent["message_id"]

It serves `/bot<token>/<method>` (JSON, url-encoded or multipart bodies, as real Telegram
does) for the methods a gateway uses: getMe, getUpdates (long polling with `offset` and
`timeout`), sendMessage, editMessageText, deleteMessage, sendChatAction, answerCallbackQuery,
getFile (+ downloads at `/file/bot<token>/<path>`), sendPhoto/sendDocument/sendVoice,
setWebhook, deleteWebhook and getWebhookInfo. With a webhook set, updates are POSTed to it
with the `X-Telegram-Bot-Api-Secret-Token` header, and getUpdates answers 409 as Telegram does.

Like Telegram, it rejects HTML it cannot parse, texts over 4096 characters and texts of only
whitespace or zero-width characters ("message text is empty"), so a bot that sends broken
markup, oversized chunks or an invisible reply fails here too. Tests drive the user's side with
`inject_message`, `inject_photo`/`inject_document`/`inject_voice`/`inject_video_note`,
`inject_sticker`, `press_button`, and read the bot's side with `sent_messages`, `wait_for_message`,
`chat_actions`, `callback_answers` and `calls`. `fail_next("sendMessage", 429, retry_after=1)`
makes the next call fail; `fail_next(..., html_page=True)` answers an HTML error page instead.

Run it by hand: `python -m duragent.testing.fake_telegram --port 8902`; with `--chat USER_ID`,
what you type is a private message to the bot from that user and its replies are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

from duragent.testing.chat_console import Button, ShownMessage, chat_console
from duragent.testing.fake_server import Failure, FakeServer, RecordedCall

#: Telegram's limit on a message's text, after entities are parsed, in UTF-16 code units.
MESSAGE_LIMIT = 4096
DEFAULT_TOKEN = "123456789:TEST-fake-telegram-token"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Tags Telegram's HTML parse mode accepts (https://core.telegram.org/bots/api#html-style).
_ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre"}
    | {"blockquote", "tg-emoji"}
)
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}")
_COMMAND = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
#: What Telegram strips before deciding a text is empty: whitespace and the invisible characters
#: (zero-width space and joiners, direction marks, word joiner, BOM, Hangul fillers, braille blank).
_BLANK = re.compile(
    r"[\s\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2800\u3164\ufeff\uffa0]*"
)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class BotAPIError(Exception):
    """A method call Telegram would refuse; becomes `{"ok": false, ...}` with this status."""

    def __init__(self, status: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def response(self) -> web.Response:
        """The error body exactly as Telegram shapes it."""
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return web.json_response(body, status=self.status)


@dataclass
class BotMessage:
    """A message the bot sent, as the fake recorded it."""

    message_id: int
    chat_id: int
    #: The text (or caption) exactly as sent: HTML when `parse_mode` is "HTML".
    text: str
    parse_mode: str | None = None
    reply_to_message_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    #: The forum topic it was sent to (`message_thread_id`), if any.
    message_thread_id: int | None = None
    #: "text", "photo", "document" or "voice".
    kind: str = "text"
    media: bytes | str | None = None
    edits: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def plain_text(self) -> str:
        """The text a user sees, markup removed."""
        return _plain_text(self.text) if self.parse_mode == "HTML" else self.text

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


class FakeTelegramBotAPI(FakeServer):
    """An aiohttp server implementing the Bot API methods a gateway plugin uses."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "duragent_test_bot",
        bot_first_name: str = "Duragent Test",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host=host, port=port)
        self.token = token
        self.bot_user: dict[str, Any] = {
            "id": int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.calls: list[RecordedCall] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self._bot_messages: list[BotMessage] = []
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._files: dict[str, tuple[str, bytes]] = {}
        self._webhook_task: asyncio.Task[None] | None = None
        self._methods: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "deletemessage": self._delete_message,
            "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
            "sendphoto": self._send_media("photo"),
            "senddocument": self._send_media("document"),
            "sendvoice": self._send_media("voice"),
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "close": self._ok,
            "logout": self._ok,
        }

    # ----------------------------------------------------------------- lifecycle

    @property
    def api_base(self) -> str:
        """The server's base URL, as `api_base` / `TELEGRAM_API_BASE` take it (`http://127.0.0.1:PORT`)."""
        return self.root_url

    def add_routes(self, app: web.Application) -> None:
        """The Bot API methods and file downloads."""
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    async def stop(self) -> None:
        """Stop delivering to a webhook, stop listening and close open connections."""
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        await super().stop()

    # ------------------------------------------------------------- the user's side

    def inject_message(
        self,
        chat_id: int,
        text: str,
        from_user: int | Mapping[str, Any],
        chat_type: str = "private",
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        message_thread_id: int | None = None,
        sender_chat: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user sends `text` to the bot; returns the message as the bot will receive it.

        Without `entities`, `@mentions` and `/commands` in the text are marked as Telegram does.
        `sender_chat` posts it on behalf of a chat: `from_user` is then Telegram's stand-in
        (GroupAnonymousBot for an anonymous admin, 777000 for a linked channel's post).
        """
        message = self._new_user_message(chat_id, from_user, chat_type, reply_to, message_thread_id)
        message["text"] = text
        if sender_chat is not None:
            message["sender_chat"] = dict(sender_chat)
        found = _entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        return self._deliver_message(message)

    def inject_photo(
        self,
        chat_id: int,
        data: bytes,
        from_user: int | Mapping[str, Any],
        caption: str | None = None,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A user sends a photo (as one size, like a small picture)."""
        message = self._new_user_message(chat_id, from_user, chat_type, None, None)
        file_id, unique_id = self._store_file(f"photos/file_{len(self._files)}.jpg", data)
        message["photo"] = [
            {
                "file_id": file_id,
                "file_unique_id": unique_id,
                "width": 90,
                "height": 90,
                "file_size": len(data),
            }
        ]
        if caption is not None:
            message["caption"] = caption
        return self._deliver_message(message)

    def inject_document(
        self,
        chat_id: int,
        data: bytes,
        from_user: int | Mapping[str, Any],
        file_name: str,
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A user sends a file."""
        message = self._new_user_message(chat_id, from_user, chat_type, None, None)
        file_id, unique_id = self._store_file(f"documents/{file_name}", data)
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        if caption is not None:
            message["caption"] = caption
        return self._deliver_message(message)

    def inject_voice(
        self,
        chat_id: int,
        data: bytes,
        from_user: int | Mapping[str, Any],
        duration: int = 1,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A user sends a voice note (OGG/Opus, as Telegram clients record them)."""
        message = self._new_user_message(chat_id, from_user, chat_type, None, None)
        file_id, unique_id = self._store_file(f"voice/file_{len(self._files)}.oga", data)
        message["voice"] = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self._deliver_message(message)

    def inject_sticker(
        self,
        chat_id: int,
        emoji: str | None,
        from_user: int | Mapping[str, Any],
        set_name: str | None = None,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A user sends a sticker (showing `emoji`, from the sticker set `set_name`)."""
        message = self._new_user_message(chat_id, from_user, chat_type, None, None)
        file_id, unique_id = self._store_file(f"stickers/file_{len(self._files)}.webp", b"RIFF sticker")
        sticker: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        if emoji is not None:
            sticker["emoji"] = emoji
        if set_name is not None:
            sticker["set_name"] = set_name
        message["sticker"] = sticker
        return self._deliver_message(message)

    def inject_video_note(
        self,
        chat_id: int,
        data: bytes,
        from_user: int | Mapping[str, Any],
        duration: int = 1,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A user sends a video note (the round video a Telegram client records; MPEG-4, no name)."""
        message = self._new_user_message(chat_id, from_user, chat_type, None, None)
        file_id, unique_id = self._store_file(f"video_notes/file_{len(self._files)}.mp4", data)
        message["video_note"] = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "length": 240,
            "duration": duration,
            "file_size": len(data),
        }
        return self._deliver_message(message)

    def press_button(
        self, chat_id: int, message_id: int, data: str, from_user: int | Mapping[str, Any]
    ) -> dict[str, Any]:
        """A user presses an inline keyboard button under the bot's message; returns the callback query."""
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        query = {
            "id": str(next(self._callback_ids)),
            "from": _user(from_user),
            "message": message,
            "chat_instance": f"instance-{chat_id}",
            "data": data,
        }
        self._push_update({"callback_query": query})
        return query

    # -------------------------------------------------------------- the bot's side

    def sent_messages(self, chat_id: int | None = None) -> list[BotMessage]:
        """Everything the bot sent (to one chat, or all), oldest first, deleted ones included."""
        return [m for m in self._bot_messages if chat_id is None or m.chat_id == chat_id]

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[BotMessage], bool] | None = None,
        within: float = 5.0,
    ) -> BotMessage:
        """The first message the bot sent to `chat_id` matching `predicate`, waiting up to `within` s."""

        return await self.wait_until(
            lambda: next((m for m in self.sent_messages(chat_id) if predicate is None or predicate(m)), None),
            within,
        )

    async def wait_for_call(self, method: str, count: int = 1, within: float = 5.0) -> list[RecordedCall]:
        """Wait until the bot has called `method` at least `count` times; returns those calls."""
        return await self.wait_until(
            lambda: found if len(found := self.calls_to(method)) >= count else None, within
        )

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The recorded calls of one method (case-insensitive), oldest first."""
        return [c for c in self.calls if c.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot (getUpdates offset) or delivered to its webhook."""
        return len(self._updates)

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int | None = 1,
        description: str | None = None,
        times: int = 1,
        html_page: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` fail with `status` (429 carries `retry_after`).

        `html_page=True` answers an HTML error page instead of Telegram's JSON, as the proxy in
        front of the Bot API does when Telegram itself is down (`502 Bad Gateway`).
        """
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}" if status == 429 else "Internal Server Error"
            )
        kind = _PageFailure if html_page else Failure
        failure = kind(status, retry_after if status == 429 else None, description)
        self._queue_failure(method.lower(), failure, times)

    # ------------------------------------------------------------------ internals

    def _new_user_message(
        self,
        chat_id: int,
        from_user: int | Mapping[str, Any],
        chat_type: str,
        reply_to: int | None,
        thread_id: int | None,
    ) -> dict[str, Any]:
        sender = _user(from_user)
        chat = self._chat(chat_id, chat_type, sender)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
        }
        if reply_to is not None:
            replied = self._messages.get((chat_id, reply_to))
            if replied is None:
                raise KeyError(f"no message {reply_to} in chat {chat_id}")
            message["reply_to_message"] = replied
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
            # As in Telegram: a message in a forum topic that replies to nothing else replies to
            # the service message that created the topic (whose id is the topic's id).
            message.setdefault("reply_to_message", self._topic_root(chat, thread_id, sender))
        return message

    def _topic_root(self, chat: dict[str, Any], thread_id: int, creator: dict[str, Any]) -> dict[str, Any]:
        key = (chat["id"], thread_id)
        if key not in self._messages:
            self._messages[key] = {
                "message_id": thread_id,
                "date": int(time.time()),
                "chat": chat,
                "from": creator,
                "message_thread_id": thread_id,
                "forum_topic_created": {"name": f"Topic {thread_id}", "icon_color": 7322096},
            }
        return self._messages[key]

    def _chat(self, chat_id: int, chat_type: str, sender: dict[str, Any]) -> dict[str, Any]:
        if chat_id not in self._chats:
            chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = sender.get("first_name", "User")
                if "username" in sender:
                    chat["username"] = sender["username"]
            else:
                chat["title"] = f"Test {chat_type} {chat_id}"
            self._chats[chat_id] = chat
        return self._chats[chat_id]

    def _deliver_message(self, message: dict[str, Any]) -> dict[str, Any]:
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        self._push_update({"message": message})
        return message

    def _push_update(self, payload: dict[str, Any]) -> None:
        self._updates.append({"update_id": next(self._update_ids), **payload})
        self.notify()

    def _store_file(self, path: str, data: bytes) -> tuple[str, str]:
        number = next(self._file_ids)
        file_id = f"file-{number}"
        self._files[file_id] = (path, data)
        return file_id, f"unique-{number}"

    def _record_bot_message(self, message: BotMessage) -> dict[str, Any]:
        self._bot_messages.append(message)
        payload: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": self._chats[message.chat_id],
            "from": self.bot_user,
        }
        if message.kind == "text":
            payload["text"] = message.plain_text
        else:
            payload.update(_media_payload(message))
        if message.reply_markup:
            payload["reply_markup"] = message.reply_markup
        if message.message_thread_id is not None:
            payload["message_thread_id"] = message.message_thread_id
            payload["is_topic_message"] = True
        if message.reply_to_message_id is not None:
            replied = self._messages.get((message.chat_id, message.reply_to_message_id))
            if replied is not None:
                payload["reply_to_message"] = replied
        self._messages[(message.chat_id, message.message_id)] = payload
        return payload

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return BotAPIError(401, "Unauthorized").response()
        method = request.match_info["method"]
        handler = self._methods.get(method.lower())
        if handler is None:
            return BotAPIError(404, "Not Found: method not found").response()
        params = await _read_params(request)
        self.calls.append(RecordedCall(method, params, time.monotonic()))
        self.notify()
        if (failure := self._next_failure(method.lower())) is not None:
            if isinstance(failure, _PageFailure):
                return _error_page(failure)
            retry_after = None if failure.retry_after is None else int(failure.retry_after)
            return BotAPIError(failure.status, failure.description or "", retry_after).response()
        try:
            result = await handler(params)
        except BotAPIError as error:
            return error.response()
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        for stored_path, data in self._files.values():
            if stored_path == path:
                return web.Response(body=data, content_type="application/octet-stream")
        return web.Response(status=404, text="Not Found")

    def _known_chat(self, params: dict[str, Any]) -> int:
        chat_id = _int(params, "chat_id")
        if chat_id not in self._chats:
            raise BotAPIError(400, "Bad Request: chat not found")
        return chat_id

    # ---------------------------------------------------------------- methods

    async def _ok(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False}

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url is not None:
            raise BotAPIError(
                409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook first"
            )
        offset = _int(params, "offset", 0)
        limit = _int(params, "limit", 100)
        timeout = float(params.get("timeout", 0) or 0)
        # An offset confirms every update before it: Telegram forgets them.
        while self._updates and self._updates[0]["update_id"] < offset:
            self._updates.popleft()
        if not self._updates and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await self.wait_until(lambda: bool(self._updates or self.webhook_url) or None, timeout)
        return list(itertools.islice(self._updates, limit))

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._known_chat(params)
        text = str(params.get("text", ""))
        parse_mode = params.get("parse_mode") or None
        _check_text(text, parse_mode)
        message = BotMessage(
            message_id=next(self._message_ids),
            chat_id=chat_id,
            text=text,
            parse_mode=parse_mode,
            reply_to_message_id=_reply_to(params),
            reply_markup=_reply_markup(params),
            message_thread_id=_thread(params),
        )
        payload = self._record_bot_message(message)
        self.notify()
        return payload

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._known_chat(params)
        message = self._bot_message(chat_id, _int(params, "message_id"))
        text = str(params.get("text", ""))
        parse_mode = params.get("parse_mode") or None
        _check_text(text, parse_mode)
        if text == message.text and parse_mode == message.parse_mode:
            raise BotAPIError(400, "Bad Request: message is not modified")
        message.edits.append(message.text)
        message.text, message.parse_mode = text, parse_mode
        if (markup := _reply_markup(params)) is not None:
            message.reply_markup = markup
        self.notify()
        return self._record_edit(message)

    def _record_edit(self, message: BotMessage) -> dict[str, Any]:
        payload = self._messages[(message.chat_id, message.message_id)]
        payload["text"] = message.plain_text
        payload["edit_date"] = int(time.time())
        return payload

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = self._known_chat(params)
        message_id = _int(params, "message_id")
        try:
            message = self._bot_message(chat_id, message_id)
        except BotAPIError:
            raise BotAPIError(400, "Bad Request: message to delete not found") from None
        message.deleted = True
        self.notify()
        return True

    def _bot_message(self, chat_id: int, message_id: int) -> BotMessage:
        for message in self._bot_messages:
            if message.chat_id == chat_id and message.message_id == message_id and not message.deleted:
                return message
        raise BotAPIError(400, "Bad Request: message to edit not found")

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = self._known_chat(params)
        self.chat_actions.append((chat_id, str(params.get("action", ""))))
        self.notify()
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        self.callback_answers.append(params)
        self.notify()
        return True

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params.get("file_id", ""))
        if file_id not in self._files:
            raise BotAPIError(400, "Bad Request: invalid file_id")
        path, data = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f"unique-{file_id}",
            "file_size": len(data),
            "file_path": path,
        }

    def _send_media(self, kind: str) -> Handler:
        async def send(params: dict[str, Any]) -> dict[str, Any]:
            chat_id = self._known_chat(params)
            caption = str(params.get("caption", ""))
            parse_mode = params.get("parse_mode") or None
            if caption:
                _check_text(caption, parse_mode, limit=1024)
            media = params.get(kind)
            if media is None:
                raise BotAPIError(400, f"Bad Request: there is no {kind} in the request")
            message = BotMessage(
                message_id=next(self._message_ids),
                chat_id=chat_id,
                text=caption,
                parse_mode=parse_mode,
                reply_to_message_id=_reply_to(params),
                reply_markup=_reply_markup(params),
                message_thread_id=_thread(params),
                kind=kind,
                media=media,
            )
            payload = self._record_bot_message(message)
            self.notify()
            return payload

        return send

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url", ""))
        if not url:
            return await self._delete_webhook(params)
        if _truthy(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook_url = url
        self.webhook_secret = params.get("secret_token") or None
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._deliver_to_webhook())
        self.notify()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        if _truthy(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook_url = None
        self.webhook_secret = None
        self.notify()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _deliver_to_webhook(self) -> None:
        """POST queued updates, in order, to the webhook until it is deleted; retry failures."""
        async with aiohttp.ClientSession() as session:
            while self.webhook_url is not None:
                if not self._updates:
                    await self.next_change()
                    continue
                update = self._updates[0]
                headers = {SECRET_HEADER: self.webhook_secret} if self.webhook_secret else {}
                try:
                    async with session.post(self.webhook_url, json=update, headers=headers) as response:
                        delivered = response.status < 300
                except aiohttp.ClientError:
                    delivered = False
                if delivered and self._updates and self._updates[0] is update:
                    self._updates.popleft()
                elif not delivered:
                    await asyncio.sleep(0.2)


@dataclass(frozen=True)
class _PageFailure(Failure):
    """A failure answered as an HTML page, not as the Bot API's JSON."""


def _error_page(failure: Failure) -> web.Response:
    title = f"{failure.status} {failure.description}"
    body = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return web.Response(status=failure.status, text=body, content_type="text/html")


def _media_payload(message: BotMessage) -> dict[str, Any]:
    """The media fields of a sent photo/document/voice, as Telegram echoes them back."""
    file = {"file_id": f"sent-{message.message_id}", "file_unique_id": f"sent-unique-{message.message_id}"}
    payloads: dict[str, dict[str, Any]] = {
        "photo": {"photo": [{**file, "width": 1, "height": 1}]},
        "document": {"document": file},
        "voice": {"voice": {**file, "duration": 1}},
    }
    payload = payloads[message.kind]
    if message.text:
        payload["caption"] = message.plain_text
    return payload


def _user(value: int | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, int):
        return {"id": value, "is_bot": False, "first_name": f"User{value}"}
    return {"is_bot": False, "first_name": f"User{value['id']}", **value}


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _entities(text: str) -> list[dict[str, Any]]:
    """Mentions and bot commands, with offsets in UTF-16 code units as Telegram counts them."""
    found = [(m, "mention") for m in _MENTION.finditer(text)]
    found += [(m, "bot_command") for m in _COMMAND.finditer(text)]
    entities = [
        {
            "type": kind,
            "offset": _utf16_length(text[: match.start()]),
            "length": _utf16_length(match.group()),
        }
        for match, kind in found
    ]
    return sorted(entities, key=lambda entity: entity["offset"])


class _TelegramHTML(HTMLParser):
    """Checks markup the way Telegram's HTML parse mode does and collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            raise BotAPIError(400, f'Bad Request: can\'t parse entities: unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise BotAPIError(400, f'Bad Request: can\'t parse entities: unexpected end tag "{tag}"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse_html(text: str) -> str:
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    if parser.open:
        raise BotAPIError(400, f"Bad Request: can't parse entities: can't find end tag \"{parser.open[-1]}\"")
    return "".join(parser.text)


def _plain_text(text: str) -> str:
    try:
        return _parse_html(text)
    except BotAPIError:
        return html.unescape(re.sub(r"<[^>]*>", "", text))


def _check_text(text: str, parse_mode: str | None, limit: int = MESSAGE_LIMIT) -> None:
    visible = _parse_html(text) if parse_mode == "HTML" else text
    if _BLANK.fullmatch(visible):
        raise BotAPIError(400, "Bad Request: message text is empty")
    if _utf16_length(visible) > limit:
        raise BotAPIError(400, "Bad Request: message is too long")


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Parameters from the query string and a JSON, url-encoded or multipart body."""
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = value.file.read()
        else:
            params[key] = str(value)
    return params


def _int(params: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None:
        raise BotAPIError(400, f"Bad Request: {key} is empty")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BotAPIError(400, f"Bad Request: invalid {key}") from None


def _reply_markup(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The inline keyboard, refused as Telegram refuses it when a button's data exceeds 64 bytes."""
    markup = _json_param(params, "reply_markup")
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise BotAPIError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def _json_param(params: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """A structured parameter: form bodies carry it as a JSON string, JSON bodies as an object."""
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BotAPIError(400, f"Bad Request: can't parse {key} JSON object") from None
    if not isinstance(value, dict):
        raise BotAPIError(400, f"Bad Request: {key} must be an object")
    return value


def _reply_to(params: Mapping[str, Any]) -> int | None:
    if (parameters := _json_param(params, "reply_parameters")) is not None:
        return int(parameters["message_id"])
    if params.get("reply_to_message_id") not in (None, ""):
        return _int(params, "reply_to_message_id")
    return None


def _thread(params: Mapping[str, Any]) -> int | None:
    return _int(params, "message_thread_id") if params.get("message_thread_id") else None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


class _PrivateChat:
    """The console's chat: user `user`'s private chat with the bot (its id is the user's)."""

    def __init__(self, telegram: FakeTelegramBotAPI, user: int):
        self.telegram, self.user = telegram, user

    def bot_messages(self) -> list[ShownMessage]:
        """What the bot sent to the chat, markup removed, with its inline keyboard."""
        return [
            ShownMessage(
                id=str(message.message_id),
                text=message.plain_text,
                buttons=tuple(Button(b["text"], str(b.get("callback_data", ""))) for b in message.buttons),
                deleted=message.deleted,
            )
            for message in self.telegram.sent_messages(self.user)
        ]

    def say(self, text: str) -> None:
        """A private message from the user."""
        self.telegram.inject_message(chat_id=self.user, text=text, from_user=self.user)

    def press(self, message: ShownMessage, button: Button) -> None:
        """A callback query from the user."""
        self.telegram.press_button(self.user, int(message.id), button.data, from_user=self.user)


def main(argv: list[str] | None = None) -> None:
    """Run the fake by hand, to point a bot at it; with `--chat USER_ID`, chat with the bot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8902)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument(
        "--chat",
        type=int,
        metavar="USER_ID",
        help="type messages to the bot as this user (a private chat) and see its replies",
    )
    arguments = parser.parse_args(argv)
    telegram = FakeTelegramBotAPI(token=arguments.token, port=arguments.port)

    def announce() -> str:
        said = f"Fake Telegram Bot API on {telegram.api_base} (token {arguments.token})"
        if arguments.chat is not None:
            said += f"\nyou are user {arguments.chat}: type a message to the bot; /press N presses a button"
        return said

    chat = _PrivateChat(telegram, arguments.chat) if arguments.chat is not None else None
    console = (lambda: chat_console(telegram, chat)) if chat is not None else None
    asyncio.run(telegram.serve_until_interrupted(announce, console))


if __name__ == "__main__":
    main()
