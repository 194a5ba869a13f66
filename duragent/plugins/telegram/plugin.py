"""The Telegram gateway plugin: Telegram Bot API (through aiogram 3) <-> the gateway protocol.

Runs as its own process (`duragent-gateway-telegram`) started by `duragent serve`. It receives
updates by long polling (default) or a webhook (`mode: webhook`), turns each into a
`message_received` / `callback_query` event (a forum topic is a chat of its own,
`<chat id>:<topic id>`), and carries out send/edit/delete/typing commands,
converting the agent's Markdown to Telegram HTML in chunks of at most 4096 characters.
Photos, documents and voice notes are downloaded into a private folder and passed on in the
event's `metadata` (`file_path`, `file_name`, `mime_type`, `size`) for Duragent to store as
artifacts; their captions are the text. The bot token is never logged: every log line and
error text is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import html
import logging
import os
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
    User,
)
from aiohttp import web

from duragent.errors import ConfigError
from duragent.gateways.chunking import EMPTY_REPLY_NOTE, as_typed
from duragent.gateways.downloads import DownloadFolder, not_fetched
from duragent.gateways.protocol import (
    AnswerCallbackQuery,
    DeleteMessage,
    EditMessage,
    InlineKeyboard,
    SendMedia,
    SendMessage,
    SendTyping,
)
from duragent.gateways.sdk import (
    GatewayPlugin,
    PlatformError,
    PlatformUnreachable,
    SecretRedactor,
    doubling_wait,
    int_setting,
    refuse_unknown_keys,
    seconds_setting,
)
from duragent.plugins.telegram.chunks import TELEGRAM_TEXT_LIMIT, split_telegram_html
from duragent.plugins.telegram.markdown import markdown_to_telegram_html

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
API_BASE_ENV = "TELEGRAM_API_BASE"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CAPTION_LIMIT = 1024
#: Attempts at one Bot API call that Telegram answers with 429 before giving up.
RATE_LIMIT_ATTEMPTS = 5
#: Attempts at one Bot API call that fails on the way (the network, a 5xx, the HTML error page
#: of the proxy in front of Telegram), waiting 1, 2, 4 s between them: an agent's reply is sent
#: once, and would otherwise be lost to a blip.
TRANSIENT_ATTEMPTS = 4
#: The first wait after such a failure (`retry_backoff`), also polling's after a network error;
#: it doubles for each next one, polling's up to BACKOFF_MAX_SECONDS.
BACKOFF_FIRST_SECONDS = 1.0
MAX_RETRY_BACKOFF_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 60.0
_ALLOWED_UPDATES = ["message", "channel_post", "callback_query"]
#: What BotFather hands out: the bot's numeric id, a colon, the secret (`123456789:AA...`).
_TOKEN_SHAPE = re.compile(r"^\d+:\S+$")
_CHAT_TYPES = {"private": "dm", "group": "group", "supergroup": "group", "channel": "channel"}
#: What Telegram strips before deciding a text is empty ("message text is empty"): whitespace
#: and the invisible characters (zero-width space and joiners, direction marks, word joiner,
#: BOM, Hangul fillers, braille blank).
_BLANK = re.compile(
    r"[\s\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2800\u3164\ufeff\uffa0]*"
)

log = logging.getLogger("duragent.gateway.telegram")
T = TypeVar("T")


@dataclass(frozen=True)
class TelegramSettings:
    """The plugin's `config:` map from duragent.yaml, with environment fallbacks applied."""

    bot_token: str
    api_base: str | None = None
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout: int = 30
    webhook_url: str | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8081
    webhook_path: str = "/telegram/webhook"
    secret_token: str | None = None
    download_dir: str | None = None
    #: Seconds before a failed call (or poll) is tried again; doubled for each next try.
    retry_backoff: float = BACKOFF_FIRST_SECONDS

    @classmethod
    def from_config(cls, config: dict[str, Any], environ: dict[str, str]) -> TelegramSettings:
        """Read the config map; `bot_token` and `api_base` fall back to their environment variables."""
        refuse_unknown_keys(config, [field.name for field in fields(cls)])
        token = str(config.get("bot_token") or environ.get(TOKEN_ENV, "")).strip()
        if not token:
            raise ConfigError(f"no bot token: set `bot_token` in the gateway's config or `{TOKEN_ENV}`")
        if not _TOKEN_SHAPE.match(token):
            # Never quote the value: it may be a real token pasted with a typo.
            raise ConfigError(
                f"{_token_source(config)} is not a bot token: BotFather's look like 123456789:AA..."
                " (the bot's number, a colon, then the secret, no spaces)"
            )
        mode = str(config.get("mode", "polling"))
        if mode not in ("polling", "webhook"):
            raise ConfigError(f"mode must be polling or webhook, not {mode!r}")
        webhook_url = config.get("webhook_url")
        if mode == "webhook" and not webhook_url:
            raise ConfigError("mode: webhook needs `webhook_url`, the public HTTPS address Telegram posts to")
        return cls(
            bot_token=token,
            api_base=config.get("api_base") or environ.get(API_BASE_ENV) or None,
            mode="webhook" if mode == "webhook" else "polling",
            # 0 would be short polling: a request after request, as fast as Telegram answers.
            poll_timeout=int_setting(config, "poll_timeout", 30, minimum=1, maximum=3600),
            webhook_url=str(webhook_url) if webhook_url else None,
            webhook_host=str(config.get("webhook_host", "127.0.0.1")),
            webhook_port=int_setting(config, "webhook_port", 8081, minimum=1, maximum=65535),
            webhook_path=str(config.get("webhook_path", "/telegram/webhook")),
            secret_token=config.get("secret_token") or None,
            download_dir=config.get("download_dir") or None,
            retry_backoff=seconds_setting(
                config, "retry_backoff", BACKOFF_FIRST_SECONDS, maximum=MAX_RETRY_BACKOFF_SECONDS
            ),
        )


class TelegramPlugin(GatewayPlugin):
    """A Telegram bot speaking the Duragent gateway protocol."""

    name = "telegram"
    capabilities = ("media", "edit", "delete", "typing", "reply", "inline_keyboard", "split", "admission")

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        super().__init__()
        self.environ = dict(os.environ if environ is None else environ)
        self.settings: TelegramSettings | None = None
        self._bot: Bot | None = None
        self._me: User | None = None
        self._connected = False
        self._poller: asyncio.Task[None] | None = None
        self._webhook_runner: web.AppRunner | None = None
        self._seen_updates: deque[int] = deque(maxlen=1000)
        self._update_tasks: set[asyncio.Task[None]] = set()
        #: Webhook mode: the last update task of each chat, which the chat's next one waits for.
        self._chat_tails: dict[int | str, asyncio.Task[None]] = {}
        self._downloads: DownloadFolder | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def bot(self) -> Bot:
        """The aiogram Bot (available once started)."""
        if self._bot is None:
            raise PlatformError("not_connected", "the bot has not started")
        return self._bot

    async def on_start(self) -> None:
        """Check the token with getMe, then start receiving updates (polling or webhook)."""
        settings = TelegramSettings.from_config(self.config, self.environ)
        self.settings = settings
        SecretRedactor(settings.bot_token).install()
        api = TelegramAPIServer.from_base(settings.api_base) if settings.api_base else None
        session = AiohttpSession(api=api) if api else AiohttpSession()
        # A long poll holds the request open for poll_timeout; allow for that plus slow networks.
        session.timeout = settings.poll_timeout + 30
        self._bot = Bot(settings.bot_token, session=session)
        try:
            self._me = await self._get_me()
        except BaseException:
            await session.close()  # on_shutdown does not run after a failed start
            raise
        self._connected = True
        self._downloads = DownloadFolder(
            settings.download_dir, prefix="duragent-telegram-", environ=self.environ
        )
        log.info("connected as @%s (%s mode)", self._me.username, settings.mode)
        if settings.mode == "webhook":
            await self._start_webhook(settings)
        else:
            await self._call(lambda: self.bot.delete_webhook(drop_pending_updates=False))
            self._poller = asyncio.create_task(self._poll_forever(settings.poll_timeout))
            self._poller.add_done_callback(self._poller_ended)

    async def _get_me(self) -> User:
        """getMe, retried briefly by `_call`: a flaky network at boot should not cost a restart cycle."""
        try:
            return await self._call(lambda: self.bot.get_me())
        except TelegramUnauthorizedError:
            raise ConfigError(
                f"Telegram refused the bot token in {_token_source(self.config)} (401 Unauthorized):"
                " copy it again from @BotFather (/token); revoking it there makes the old one invalid"
            ) from None
        except PlatformError as error:
            text = self._redact(f"cannot reach Telegram: {error.message}")
            if error.code == "not_connected":  # no network yet (after a power cut): waited out
                raise PlatformUnreachable(text) from None
            raise ConnectionError(text) from None

    async def on_shutdown(self) -> None:
        """Stop receiving, let in-flight updates finish briefly, close the HTTP session."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._webhook_runner is not None:
            await self._webhook_runner.cleanup()
        if self._update_tasks:
            await asyncio.wait(set(self._update_tasks), timeout=2)
        if self._bot is not None:
            await self._bot.session.close()
        if self._downloads is not None:
            self._downloads.close()

    def is_connected(self) -> bool:
        """Whether the last Bot API exchange succeeded."""
        return self._connected

    @property
    def _retry_backoff(self) -> float:
        """The first wait before a failed call or poll is tried again (`retry_backoff`)."""
        return self.settings.retry_backoff if self.settings else BACKOFF_FIRST_SECONDS

    # ------------------------------------------------------------------ receiving

    async def _poll_forever(self, poll_timeout: int) -> None:
        """getUpdates in a loop; network trouble backs off (with jitter) and never ends the loop."""
        offset: int | None = None
        failures = 0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset,
                    timeout=poll_timeout,
                    allowed_updates=_ALLOWED_UPDATES,
                    request_timeout=poll_timeout + 30,
                )
            except TelegramRetryAfter as error:
                await asyncio.sleep(error.retry_after)
                continue
            except TelegramUnauthorizedError:
                message = (
                    f"Telegram refused the bot token in {_token_source(self.config)} (401 Unauthorized)"
                    " while running: was it revoked in @BotFather? Set the current one"
                )
                log.debug("%s", message)  # the host logs the fatal error it is sent
                await self.error("unauthorized", message, fatal=True)
                self.request_stop(message)
                return
            except (TelegramAPIError, ClientDecodeError, aiohttp.ClientError, OSError) as error:
                # ClientDecodeError: an HTML error page (502 from the proxy in front of Telegram).
                self._connected = False
                failures += 1
                delay = doubling_wait(self._retry_backoff, failures, BACKOFF_MAX_SECONDS)
                hint = " (is a webhook set, or another poller running?)" if _is_conflict(error) else ""
                log.warning("getUpdates failed: %s%s; retry in %.1f s", self._redact(str(error)), hint, delay)
                await asyncio.sleep(delay)
                continue
            if not self._connected:
                log.info("connection to Telegram restored")
            self._connected = True
            failures = 0
            for update in updates:
                offset = update.update_id + 1
                await self._handle_update(update)

    async def _start_webhook(self, settings: TelegramSettings) -> None:
        secret = settings.secret_token or secrets.token_urlsafe(32)
        app = web.Application()
        app.router.add_post(settings.webhook_path, self._webhook_handler(secret))
        self._webhook_runner = web.AppRunner(app, access_log=None)
        await self._webhook_runner.setup()
        await web.TCPSite(self._webhook_runner, settings.webhook_host, settings.webhook_port).start()
        await self._call(
            lambda: self.bot.set_webhook(
                url=str(settings.webhook_url),
                secret_token=secret,
                allowed_updates=_ALLOWED_UPDATES,
            )
        )
        log.info(
            "webhook listening on %s:%s%s",
            settings.webhook_host,
            settings.webhook_port,
            settings.webhook_path,
        )

    def _webhook_handler(self, secret: str) -> Any:
        async def receive(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), secret.encode()):
                log.warning("webhook call without the right secret token from %s", request.remote)
                return web.Response(status=401, text="wrong secret token")
            try:
                update = Update.model_validate(await request.json(), context={"bot": self.bot})
            except ValueError as error:
                log.warning("webhook body is not a Telegram update: %s", error)
                return web.Response(status=400, text="not an update")
            # Answer at once (Telegram retries slow webhooks); handle the update in the background.
            self._schedule(update)
            return web.Response(text="ok")

        return receive

    def _schedule(self, update: Update) -> None:
        """Handle an update in the background, after the previous one of its chat.

        Chats proceed side by side, but within a chat a photo still being downloaded is not
        overtaken by the question about it sent next.
        """
        key = _chat_of(update)
        previous = self._chat_tails.get(key)
        task = asyncio.create_task(self._handle_after(previous, update))
        self._chat_tails[key] = task
        self._update_tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._update_tasks.discard(finished)
            if self._chat_tails.get(key) is finished:
                del self._chat_tails[key]

        task.add_done_callback(done)

    async def _handle_after(self, previous: asyncio.Task[None] | None, update: Update) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # how it ended is its own business
        await self._handle_update(update)

    def _poller_ended(self, poller: asyncio.Task[None]) -> None:
        """A receive loop that died of an error nobody foresaw leaves a bot that hears nothing
        while it looks connected: stop, failed, so the server starts the plugin again."""
        if poller.cancelled() or poller.exception() is None:
            return
        error = poller.exception()
        log.error("polling Telegram stopped: %s", self._redact(repr(error)), exc_info=error)
        self._connected = False
        self.request_stop("polling stopped on an unexpected error", failed=True)

    async def _handle_update(self, update: Update) -> None:
        """Forward one update as an event; a failure here is logged and skips only this update."""
        if update.update_id in self._seen_updates:
            return  # a webhook retry of something already handled
        self._seen_updates.append(update.update_id)
        try:
            if update.message is not None:
                await self._forward_message(update.message)
            elif update.channel_post is not None:
                await self._forward_message(update.channel_post)
            elif update.callback_query is not None:
                await self._forward_callback(update.callback_query)
        except (TelegramAPIError, ClientDecodeError, PlatformError, aiohttp.ClientError, OSError) as error:
            log.error("could not forward update %s: %s", update.update_id, self._redact(str(error)))

    async def _forward_message(self, message: Message) -> None:
        sender = _sender(message)
        chat_type = _CHAT_TYPES.get(message.chat.type, message.chat.type)
        chat_id = _place(message)
        routing: dict[str, Any] = {
            "channel": "telegram",
            "chat_type": chat_type,
            "chat_id": chat_id,
            "sender_id": sender["id"],
        }
        if chat_id != str(message.chat.id):
            routing["thread_id"] = str(message.message_thread_id)
            routing["parent_id"] = str(message.chat.id)
        content, metadata = await self._content(message, fetch=self.may_be_answered(routing))
        if content is None:
            return  # polls, games, service messages...: nothing an agent can read
        replied = message.reply_to_message
        if replied is not None and routing.get("thread_id") == str(replied.message_id):
            replied = None  # in a forum topic, every message "replies" to the topic's first one
        await self.message_received(
            message_id=str(message.message_id),
            chat_id=chat_id,
            sender=sender,
            content=content,
            routing=routing,
            reply_to=str(replied.message_id) if replied is not None else None,
            mentions_bot=self._mentions_bot(message),
            reply_to_bot=bool(
                replied and replied.from_user and self._me and replied.from_user.id == self._me.id
            ),
            timestamp=message.date.isoformat(),
            metadata=metadata,
        )

    async def _forward_callback(self, query: CallbackQuery) -> None:
        if query.message is None or query.data is None:
            await self._call(lambda: self.bot.answer_callback_query(query.id))
            return
        await self.callback_query(
            callback_query_id=query.id,
            chat_id=_place(query.message),
            sender=_user_sender(query.from_user),
            message_id=str(query.message.message_id),
            data=query.data,
        )

    def _mentions_bot(self, message: Message) -> bool:
        """An @mention of the bot, a text mention of its user, or a /command@bot addressed to it."""
        me = self._me
        text = message.text or message.caption or ""
        entities: list[MessageEntity] = list(message.entities or message.caption_entities or [])
        if me is None or not text:
            return False
        handle = f"@{me.username or ''}".lower()
        for entity in entities:
            if entity.type == "text_mention" and entity.user is not None and entity.user.id == me.id:
                return True
            if entity.type == "mention" and entity.extract_from(text).lower() == handle:
                return True
            if entity.type == "bot_command" and entity.extract_from(text).lower().endswith(handle):
                return True
        return False

    async def _content(
        self, message: Message, *, fetch: bool
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The protocol `content` of a message, and `metadata` naming its file (downloaded if `fetch`)."""
        if message.text is not None:
            return {"type": "text", "text": message.text}, None
        if message.sticker is not None:
            # A sticker is how many people say "thanks" or "ok": pass on what it shows.
            shows = message.sticker.emoji or message.sticker.set_name or "sticker"
            return {"type": "text", "text": f"[sticker: {shows}]"}, None
        if message.location is not None:
            location = message.location
            return {"type": "location", "latitude": location.latitude, "longitude": location.longitude}, None
        if message.contact is not None:
            contact = message.contact
            name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
            return {"type": "contact", "name": name, "phone": contact.phone_number}, None
        media = _media_of(message)
        if media is None:
            return None, None
        media_type, file_id, file_name, mime_type = media
        content: dict[str, Any] = {"type": "media", "media_type": media_type}
        if message.caption:
            content["caption"] = message.caption
        if not fetch:
            return content, not_fetched(file_name, mime_type)
        return content, await self._download(file_id, file_name, mime_type)

    async def _download(self, file_id: str, file_name: str, mime_type: str) -> dict[str, Any]:
        """Fetch a file into the download folder; on failure say why instead of dropping the message."""
        assert self._downloads is not None
        try:
            file = await self._call(lambda: self.bot.get_file(file_id))
            if file.file_path is None:
                raise PlatformError("platform_error", "Telegram gave no path for the file")
            target = self._downloads.new_file(file_name)
            await self.bot.download_file(file.file_path, destination=target, timeout=120)
        except (TelegramAPIError, PlatformError, aiohttp.ClientError, OSError) as error:
            reason = self._redact(str(error))
            log.warning("could not download %s: %s", file_name, reason)
            return {"file_name": file_name, "mime_type": mime_type, "download_error": reason}
        return {
            "file_path": str(target),
            "file_name": file_name,
            "mime_type": mime_type,
            "size": target.stat().st_size,
        }

    # ------------------------------------------------------------------ commands

    async def on_send_message(self, cmd: SendMessage) -> str | None:
        """Send Markdown as Telegram HTML in ordered chunks; returns the last chunk's message id."""
        chunks = _html_chunks(cmd.content)
        chat_id, thread_id = _chat_and_thread(cmd.chat_id)
        last_id: int | None = None
        for index, chunk in enumerate(chunks):
            first, last = index == 0, index == len(chunks) - 1
            reply = _reply_parameters(cmd.reply_to) if first else None
            markup = _keyboard(cmd.inline_keyboard) if last else None
            last_id = await self._send_html(chat_id, thread_id, chunk, reply, markup)
        return str(last_id)

    async def _send_html(
        self,
        chat_id: int | str,
        thread_id: int | None,
        chunk: str,
        reply: ReplyParameters | None,
        markup: InlineKeyboardMarkup | None,
    ) -> int:
        try:
            sent = await self._call(
                lambda: self.bot.send_message(
                    chat_id,
                    chunk,
                    message_thread_id=thread_id,
                    parse_mode="HTML",
                    reply_parameters=reply,
                    reply_markup=markup,
                )
            )
        except PlatformError as error:
            if "can't parse entities" not in error.message:
                raise
            # Our converter should never produce this; if Telegram disagrees, the words still arrive.
            log.warning("Telegram refused the HTML (%s); sending plain text", error.message)
            sent = await self._call(
                lambda: self.bot.send_message(
                    chat_id,
                    _visible_text(chunk),
                    message_thread_id=thread_id,
                    parse_mode=None,
                    reply_parameters=reply,
                    reply_markup=markup,
                )
            )
        return sent.message_id

    async def on_send_media(self, cmd: SendMedia) -> str | None:
        """Send a photo, voice note or document (from a URL or base64 data) with an optional caption."""
        chat_id, thread_id = _chat_and_thread(cmd.chat_id)
        mime_type = cmd.media.mime_type or ""
        if cmd.media.source == "url":
            payload: str | BufferedInputFile = cmd.media.url
        else:
            try:
                data = base64.b64decode(cmd.media.data, validate=True)
            except ValueError:
                raise PlatformError("invalid_request", "media data is not valid base64") from None
            payload = BufferedInputFile(data, filename=cmd.media.filename or "file")
        caption, rest = _caption_chunks(cmd.caption)
        if mime_type.startswith("image/") and mime_type != "image/gif":
            sent = await self._call(
                lambda: self.bot.send_photo(
                    chat_id, payload, message_thread_id=thread_id, caption=caption, parse_mode="HTML"
                )
            )
        elif mime_type == "audio/ogg":
            sent = await self._call(
                lambda: self.bot.send_voice(
                    chat_id, payload, message_thread_id=thread_id, caption=caption, parse_mode="HTML"
                )
            )
        else:
            sent = await self._call(
                lambda: self.bot.send_document(
                    chat_id, payload, message_thread_id=thread_id, caption=caption, parse_mode="HTML"
                )
            )
        for chunk in rest:  # what the caption could not hold follows the file, in order
            await self._send_html(chat_id, thread_id, chunk, None, None)
        return str(sent.message_id)

    async def on_send_typing(self, cmd: SendTyping) -> None:
        """Show "typing..." (Telegram shows it for about 5 s or until the next message)."""
        chat_id, thread_id = _chat_and_thread(cmd.chat_id)
        # Tried once: the chat's reply waits behind this command, and the running turn sends
        # typing again in a few seconds anyway, so a flood limit or a blip is not waited out.
        await self._call(
            lambda: self.bot.send_chat_action(chat_id, "typing", message_thread_id=thread_id),
            retry=False,
        )

    async def on_edit_message(self, cmd: EditMessage) -> None:
        """Replace a sent message's text (only the first 4096 characters fit in one message)."""
        chunks = _html_chunks(cmd.content)
        try:
            await self._call(
                lambda: self.bot.edit_message_text(
                    text=chunks[0],
                    chat_id=_chat_and_thread(cmd.chat_id)[0],
                    message_id=int(cmd.message_id),
                    parse_mode="HTML",
                )
            )
        except PlatformError as error:
            if "message is not modified" not in error.message:
                raise

    async def on_delete_message(self, cmd: DeleteMessage) -> None:
        """Delete a message."""
        chat_id = _chat_and_thread(cmd.chat_id)[0]
        await self._call(lambda: self.bot.delete_message(chat_id, int(cmd.message_id)))

    async def on_answer_callback_query(self, cmd: AnswerCallbackQuery) -> None:
        """Acknowledge a button press, with the toast text if given."""
        await self._call(lambda: self.bot.answer_callback_query(cmd.callback_query_id, text=cmd.text))

    # ------------------------------------------------------------------ Bot API calls

    async def _call(self, request: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """Make a Bot API call, honouring 429 retry_after and retrying failures on the way
        (unless `retry` is false); Telegram errors become PlatformError.

        `request` makes the call afresh each time, so a failed call can be repeated.
        """
        rate_limit_attempts = RATE_LIMIT_ATTEMPTS if retry else 1
        transient_attempts = TRANSIENT_ATTEMPTS if retry else 1
        rate_limited = transient_failures = 0
        while True:
            try:
                result = await request()
            except TelegramRetryAfter as error:
                rate_limited += 1
                if rate_limited == rate_limit_attempts:
                    raise PlatformError(
                        "rate_limited", f"Telegram asked to retry after {error.retry_after} s"
                    ) from None
                log.info("rate limited by Telegram; retrying in %s s", error.retry_after)
                await asyncio.sleep(error.retry_after)
                continue
            except TelegramUnauthorizedError:
                raise
            except (TelegramNetworkError, TelegramServerError, ClientDecodeError) as error:
                # A resent message may, rarely, arrive twice (Telegram cannot tell it from a new
                # one): better than an answer that never arrives.
                self._connected = not isinstance(error, TelegramNetworkError)
                reason = self._redact(_short_reason(error))
                transient_failures += 1
                if transient_failures == transient_attempts:
                    code = "not_connected" if isinstance(error, TelegramNetworkError) else "platform_error"
                    raise PlatformError(code, reason) from None
                delay = self._retry_backoff * 2 ** (transient_failures - 1)
                log.warning("Telegram call failed (%s); retrying in %.1f s", reason, delay)
                await asyncio.sleep(delay)
                continue
            except TelegramAPIError as error:
                self._connected = True  # Telegram answered: the connection is fine
                raise PlatformError(_error_code(error), self._redact(error.message)) from None
            self._connected = True
            return result

    def _redact(self, text: str) -> str:
        token = self.settings.bot_token if self.settings else self.environ.get(TOKEN_ENV, "")
        return text.replace(token, "<bot-token>") if token else text


def _html_chunks(markdown: str) -> list[str]:
    """Telegram HTML for `markdown` in chunks, leaving out any that would show nothing.

    Telegram refuses an empty message, and the user would see no reply: Markdown that renders
    to nothing is sent as typed, and a reply of only invisible characters (U+200B) as a note.
    """
    chunks = split_telegram_html(markdown_to_telegram_html(markdown), TELEGRAM_TEXT_LIMIT)
    chunks = [chunk for chunk in chunks if _shows_text(chunk)]
    if chunks:
        return chunks
    typed = as_typed(markdown)
    if _BLANK.fullmatch(typed):
        typed = EMPTY_REPLY_NOTE
    return split_telegram_html(html.escape(typed, quote=False), TELEGRAM_TEXT_LIMIT)


def _caption_chunks(markdown: str | None) -> tuple[str | None, list[str]]:
    """(the caption, the messages following the file): a caption holds 1024 characters, and the
    rest of a longer one is not lost. One of only invisible characters is none (Telegram would
    refuse it as empty, and the file with it)."""
    if not markdown:
        return None, []
    html_text = markdown_to_telegram_html(markdown)
    chunks = split_telegram_html(html_text, TELEGRAM_TEXT_LIMIT, first_limit=CAPTION_LIMIT)
    chunks = [chunk for chunk in chunks if _shows_text(chunk)]
    return (chunks[0], chunks[1:]) if chunks else (None, [])


def _shows_text(chunk: str) -> bool:
    """Whether Telegram HTML `chunk` has text Telegram does not count as empty."""
    return not _BLANK.fullmatch(_visible_text(chunk))


def _chat_of(update: Update) -> int | str:
    """The chat an update belongs to (its own key for one without a chat)."""
    message: Message | InaccessibleMessage | None = update.message or update.channel_post
    if message is None and update.callback_query is not None:
        message = update.callback_query.message
    return message.chat.id if message is not None else f"update-{update.update_id}"


def _short_reason(error: TelegramAPIError | ClientDecodeError) -> str:
    """What went wrong, without the whole HTML error page a ClientDecodeError carries."""
    if isinstance(error, ClientDecodeError):
        return f"Telegram answered something that is not JSON ({error.message})"
    return error.message


def _token_source(config: dict[str, Any]) -> str:
    """Where the token came from, for an error message: the config key or the variable.

    In backticks, so the server can add which variable of duragent.yaml, and where, set it
    (`env: {TELEGRAM_BOT_TOKEN: ${HOME_BOT_TOKEN}}`).
    """
    return "`bot_token`" if config.get("bot_token") else f"`{TOKEN_ENV}`"


def _is_conflict(error: BaseException) -> bool:
    return isinstance(error, TelegramConflictError)


def _error_code(error: TelegramAPIError) -> str:
    message = error.message.lower()
    if isinstance(error, TelegramNetworkError):
        return "not_connected"
    if "chat not found" in message:
        return "chat_not_found"
    if "message to" in message and "not found" in message:
        return "message_not_found"
    if isinstance(error, TelegramForbiddenError):
        return "chat_not_found" if "blocked" in message or "kicked" in message else "platform_error"
    if isinstance(error, TelegramBadRequest):
        return "invalid_request"
    return "platform_error"


def _place(message: Message | InaccessibleMessage) -> str:
    """The protocol chat id: a forum topic is a chat of its own, `<chat id>:<topic id>`."""
    if isinstance(message, Message) and message.is_topic_message and message.message_thread_id:
        return f"{message.chat.id}:{message.message_thread_id}"
    return str(message.chat.id)


def _chat_and_thread(value: str) -> tuple[int | str, int | None]:
    """(Telegram chat id, forum topic) of a protocol chat id; channels may be addressed as @name."""
    chat, _, thread = value.partition(":")
    try:
        chat_id: int | str = int(chat)
    except ValueError:
        return value, None
    return chat_id, int(thread) if thread.isdigit() else None


def _reply_parameters(reply_to: str | None) -> ReplyParameters | None:
    if not reply_to or not reply_to.lstrip("-").isdigit():
        return None
    # The reply still goes out if the original was deleted meanwhile.
    return ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)


def _keyboard(keyboard: InlineKeyboard | None) -> InlineKeyboardMarkup | None:
    if keyboard is None or not keyboard.rows:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=button.text, callback_data=button.callback_data) for button in row]
            for row in keyboard.rows
        ]
    )


def _user_sender(user: User) -> dict[str, Any]:
    display_name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return {"id": str(user.id), "username": user.username, "display_name": display_name or None}


def _sender(message: Message) -> dict[str, Any]:
    # Channel posts, anonymous group admins and a linked channel's posts speak as a chat; the
    # user Telegram puts in `from` for the last two (GroupAnonymousBot, "Telegram") is a stand-in.
    if message.from_user is not None and message.sender_chat is None:
        return _user_sender(message.from_user)
    chat = message.sender_chat or message.chat
    return {"id": str(chat.id), "username": chat.username, "display_name": chat.title}


def _media_of(message: Message) -> tuple[str, str, str, str] | None:
    """(media_type, file_id, file_name, mime_type) of a photo, document, voice, audio or video (note)."""
    number = message.message_id
    if message.photo:
        largest = message.photo[-1]
        return "photo", largest.file_id, f"photo-{number}.jpg", "image/jpeg"
    if message.document is not None:
        document = message.document
        mime_type = document.mime_type or "application/octet-stream"
        return "document", document.file_id, document.file_name or f"document-{number}", mime_type
    if message.voice is not None:
        return "voice", message.voice.file_id, f"voice-{number}.ogg", message.voice.mime_type or "audio/ogg"
    if message.audio is not None:
        audio = message.audio
        return "audio", audio.file_id, audio.file_name or f"audio-{number}", audio.mime_type or "audio/mpeg"
    if message.video is not None:
        video = message.video
        return (
            "video",
            video.file_id,
            video.file_name or f"video-{number}.mp4",
            video.mime_type or "video/mp4",
        )
    if message.video_note is not None:
        # The round video a client records in place of a voice note: always MPEG-4.
        return "video", message.video_note.file_id, f"video-note-{number}.mp4", "video/mp4"
    return None


def _visible_text(chunk: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", chunk))
