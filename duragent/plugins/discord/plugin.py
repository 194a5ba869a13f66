"""The Discord gateway plugin: Discord (through discord.py 2) <-> the gateway protocol.

Runs as its own process (`duragent-gateway-discord`) started by `duragent serve`. It stays on
Discord's Gateway websocket (discord.py resumes dropped connections; the waits between its
reconnects are this plugin's, see `ReconnectBackoff`), turns each message into a
`message_received` event and each button press into a `callback_query`, and carries out
send/edit/delete/typing/media commands. Replies are converted to Discord Markdown and sent in
pieces of at most 2,000 characters; approval buttons are message components whose presses are
acknowledged at once (Discord allows three seconds) and answered with a message only the
presser sees. Attachments are downloaded into a private folder and passed on in the event's
`metadata` (`file_path`, `file_name`, `mime_type`, `size`) for Duragent to store as artifacts.
Rate limits (per-route buckets and 429 `retry_after`) are waited out by discord.py. The bot
token is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import discord
import discord.client
import yarl
from discord import ui
from discord.gateway import DiscordWebSocket
from discord.http import Route

from duragent.errors import ConfigError
from duragent.gateways.chat_commands import command_addressed_to, command_after_mention
from duragent.gateways.chat_order import ChatOrder
from duragent.gateways.chunking import as_typed, split_message
from duragent.gateways.downloads import MAX_DOWNLOAD_MB, DownloadFolder, not_fetched, too_large
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
)
from duragent.plugins.discord import mentions
from duragent.plugins.discord.markdown import markdown_to_discord

TOKEN_ENV = "DISCORD_BOT_TOKEN"
API_BASE_ENV = "DISCORD_API_BASE"
GATEWAY_URL_ENV = "DISCORD_GATEWAY_URL"
#: Discord's limit on one message's content.
DISCORD_TEXT_LIMIT = 2000
#: How long start-up (logging in, then the Gateway's READY) may take before it reports Discord
#: out of reach: well within the 30 s Duragent gives a plugin to be ready, so the cause is said.
READY_WITHIN_SECONDS = 20.0
#: How long a stop waits for messages still being passed on (a file downloading): Duragent
#: kills a plugin 5 s after `shutdown`, in-flight commands may take 3 of them.
IN_FLIGHT_GRACE_SECONDS = 1.5
#: Button presses waiting for Duragent's answer are forgotten after this (Discord's token lives 15 min).
INTERACTION_TTL_SECONDS = 14 * 60
#: Attempts at one REST call that fails on the way (Discord unreachable, a 503), waiting 1, 2,
#: 4 s between them: an agent's reply is sent once, and would otherwise be lost to a blip.
TRANSIENT_ATTEMPTS = 4
TRANSIENT_FIRST_DELAY_SECONDS = 1.0
#: Waits between attempts at the Gateway while it is out of reach: 1 s doubling to a minute.
RECONNECT_FIRST_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 60.0
#: How long the Gateway must stay up after a reconnect for the next outage to start from 1 s.
RECONNECT_STABLE_SECONDS = 60.0
#: Server errors discord.py already retries itself (five tries over 16 s): not tried again.
_RETRIED_BY_DISCORD_PY = frozenset({500, 502, 504, 524})

T = TypeVar("T")

log = logging.getLogger("duragent.gateway.discord")


def _reconnect_in_one_line(record: logging.LogRecord) -> bool:
    """discord.py logs each failed reconnect attempt at ERROR with its whole traceback (some 55
    lines, five of them in a 30-s outage): one warning line with the reason says the same."""
    if record.msg == "Attempting a reconnect in %.2fs" and record.exc_info and record.exc_info[1]:
        error = record.exc_info[1]
        reason = f"{type(error).__name__}: {error}".replace("%", "%%")  # (the message is a %-format)
        record.msg = f"Discord out of reach ({reason}); reconnecting in %.2fs"
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
    return True


@dataclass(frozen=True)
class DiscordSettings:
    """The plugin's `config:` map from duragent.yaml, with environment fallbacks applied."""

    bot_token: str
    api_base: str | None = None
    gateway_url: str | None = None
    download_dir: str | None = None
    max_download_mb: int = MAX_DOWNLOAD_MB

    @classmethod
    def from_config(cls, config: dict[str, Any], environ: dict[str, str]) -> DiscordSettings:
        """Read the config map; `bot_token`, `api_base` and `gateway_url` fall back to the environment."""
        refuse_unknown_keys(config, [field.name for field in fields(cls)])
        token = str(config.get("bot_token") or environ.get(TOKEN_ENV, "")).strip()
        if not token:
            raise ConfigError(f"no bot token: set `bot_token` in the gateway's config or {TOKEN_ENV}")
        api_base = config.get("api_base") or environ.get(API_BASE_ENV) or None
        gateway_url = config.get("gateway_url") or environ.get(GATEWAY_URL_ENV) or None
        for key, value in (("api_base", api_base), ("gateway_url", gateway_url)):
            if value is not None and "://" not in str(value):
                raise ConfigError(f"{key} must be a URL like http://127.0.0.1:8903, not {value!r}")
        return cls(
            bot_token=token,
            api_base=str(api_base).rstrip("/") if api_base else None,
            gateway_url=str(gateway_url) if gateway_url else None,
            download_dir=config.get("download_dir") or None,
            max_download_mb=int_setting(config, "max_download_mb", MAX_DOWNLOAD_MB, minimum=1),
        )


class DiscordPlugin(GatewayPlugin):
    """A Discord bot speaking the Duragent gateway protocol."""

    name = "discord"
    capabilities = ("media", "edit", "delete", "typing", "reply", "inline_keyboard", "split", "admission")

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        super().__init__()
        self.environ = dict(os.environ if environ is None else environ)
        self.settings: DiscordSettings | None = None
        self._client: discord.Client | None = None
        self._connection: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        #: On the Gateway now: READY or RESUMED came, and no disconnect since.
        self._online = False
        self._stopping = False
        self._redactor = SecretRedactor()
        self._interactions: dict[str, tuple[discord.Interaction, float]] = {}
        self._downloads: DownloadFolder | None = None
        self._order = ChatOrder()
        self._reconnects = ReconnectBackoff()

    # ------------------------------------------------------------------ lifecycle

    @property
    def client(self) -> discord.Client:
        """The discord.py client (available once started)."""
        if self._client is None:
            raise PlatformError("not_connected", "the bot has not started")
        return self._client

    async def on_start(self) -> None:
        """Log in (checks the token), connect to the Gateway and wait for READY."""
        settings = DiscordSettings.from_config(self.config, self.environ)
        self.settings = settings
        self._redactor = SecretRedactor(settings.bot_token)
        self._redactor.install()
        if settings.api_base:
            # discord.py reads its endpoints from these class attributes: a self-hosted or fake
            # Discord is reached without changing the library.
            Route.BASE = f"{settings.api_base}/api/v10"
        # The bot never joins voice: warnings at every start that voice libraries are missing
        # would only send its operator looking for a problem.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        # The reconnect loop in discord.py's Client.connect makes its backoff from this name; the
        # plugin's process runs one client, whose waits should be ours.
        discord.client.ExponentialBackoff = lambda: self._reconnects  # type: ignore[attr-defined,assignment,misc]
        logging.getLogger("discord.client").addFilter(_reconnect_in_one_line)
        intents = discord.Intents.default()
        intents.message_content = True
        # What the agent writes is often what someone asked it to write: it may ping the people it
        # names, never the whole channel or a role (bots usually hold the permission to).
        allowed = discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=False)
        client = discord.Client(intents=intents, allowed_mentions=allowed)
        self._client = client
        client.event(self.on_ready)
        client.event(self.on_resumed)
        client.event(self.on_disconnect)
        client.event(self.on_message)
        client.event(self.on_interaction)
        try:
            await self._connect(client, settings)
        except BaseException:
            # Else aiohttp reports the client's session "Unclosed" at exit, under the one error line.
            await self.on_shutdown()
            raise

    async def _connect(self, client: discord.Client, settings: DiscordSettings) -> None:
        """Log in (checks the token), open the Gateway and wait for READY."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WITHIN_SECONDS
        try:
            async with asyncio.timeout_at(deadline):  # a network that silently drops packets
                await client.login(settings.bot_token)
        except TimeoutError:
            raise PlatformUnreachable(
                f"cannot reach Discord: no answer to logging in within {READY_WITHIN_SECONDS:.0f} s"
            ) from None
        except discord.LoginFailure:
            raise ConfigError(
                f"Discord refused the bot token in {_token_source(self.config)} (401 Unauthorized):"
                " copy it again from the Developer Portal (Bot > Reset Token); resetting it there"
                " makes the old one invalid"
            ) from None
        except (discord.HTTPException, OSError) as error:
            raise PlatformUnreachable(self._redact(f"cannot reach Discord: {error}")) from None
        gateway = settings.gateway_url
        if gateway is None and settings.api_base:
            _, gateway, _ = await client.http.get_bot_gateway()
        if gateway is not None:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        self._downloads = DownloadFolder(
            settings.download_dir, prefix="duragent-discord-", environ=self.environ
        )
        self._connection = asyncio.create_task(self._stay_connected(client, settings.bot_token))
        self._connection.add_done_callback(self._connection_ended)
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait(
            {ready, self._connection}, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
        )
        if not self._ready.is_set():
            ready.cancel()
            failure = self._connection.exception() if self._connection.done() else None
            if isinstance(failure, ConfigError):
                raise failure  # Discord refused the bot: one error saying why
            if failure is not None:
                raise ConnectionError(self._redact(str(failure)))
            raise PlatformUnreachable(f"no READY from Discord's Gateway within {READY_WITHIN_SECONDS:.0f} s")

    async def _stay_connected(self, client: discord.Client, token: str) -> None:
        """discord.py's connect loop: resumes, reconnects with backoff; ends only on fatal errors."""
        try:
            await client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            await self._refused(
                "unauthorized",
                "Discord refused the Message Content intent: enable it for the bot in the "
                "Developer Portal (Bot > Privileged Gateway Intents)",
            )
        except (discord.ConnectionClosed, discord.LoginFailure) as error:
            if getattr(error, "code", 4004) == 4004:  # 4004: Authentication failed
                await self._refused(
                    "unauthorized",
                    f"Discord refused the bot token in {_token_source(self.config)}: was it reset in "
                    "the Developer Portal?",
                )
            else:
                await self._refused("platform_error", self._redact(f"Discord closed the connection: {error}"))

    async def _refused(self, code: str, message: str) -> None:
        """Discord will not have the bot: before READY a failed start (the start-up error says
        it), after it a fatal error and a stop."""
        if not self._ready.is_set():
            raise ConfigError(message)
        self._online = False
        log.debug("%s", message)  # the host logs the fatal error it is sent
        await self.error(code, message, fatal=True)
        self.request_stop(message)

    def _connection_ended(self, connection: asyncio.Task[None]) -> None:
        """A receive loop that died of an error nobody foresaw leaves a bot that hears nothing
        while it looks connected: stop, failed, so the server starts the plugin again."""
        if connection.cancelled() or connection.exception() is None or not self._ready.is_set():
            return  # stopped on purpose, a fatal error already reported, or start-up reports it
        error = connection.exception()
        log.error("receiving from Discord stopped: %s", self._redact(repr(error)), exc_info=error)
        self._online = False
        self.request_stop("receiving from Discord stopped on an unexpected error", failed=True)

    async def on_shutdown(self) -> None:
        """Finish passing on the messages in hand (briefly), leave the Gateway, close the session."""
        self._stopping = True
        # Discord will not send them again: the session ends with us.
        await self._order.settle(IN_FLIGHT_GRACE_SECONDS)
        if self._client is not None:
            await self._client.close()
        if self._connection is not None:
            self._connection.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connection
        if self._downloads is not None:
            self._downloads.close()

    def is_connected(self) -> bool:
        """Whether the Gateway websocket is up (discord.py's is_ready() stays true while it
        retries an unreachable Discord)."""
        return self._online and self._client is not None and not self._client.is_closed()

    async def on_ready(self) -> None:
        """discord.py: READY (and every guild's GUILD_CREATE) arrived."""
        user = self.client.user
        if not self._ready.is_set():
            log.info("connected as %s (%s)", user, user.id if user else "?")
        elif not self._online:
            log.info("connection to Discord restored (new session)")
        self._online = True
        self._reconnects.connected()
        self._ready.set()

    async def on_resumed(self) -> None:
        """discord.py: a dropped session was resumed (missed events follow)."""
        if not self._online:
            log.info("connection to Discord restored")
        self._online = True
        self._reconnects.connected()

    async def on_disconnect(self) -> None:
        """discord.py: the Gateway connection dropped; it is being retried with backoff."""
        if self._online and not self._stopping:
            log.warning("lost the connection to Discord's Gateway; reconnecting")
        self._online = False

    # ------------------------------------------------------------------ receiving

    async def on_message(self, message: discord.Message) -> None:
        """discord.py: a message in a channel the bot sees; forwards what people say."""
        if message.author.bot or message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # other bots (and ourselves), joins, pins...: nothing an agent should answer
        # discord.py runs each event in a task of its own: a text must not overtake the photo
        # sent before it while its file downloads.
        await self._order.in_turn(str(message.channel.id), lambda: self._forward_logged(message))

    async def _forward_logged(self, message: discord.Message) -> None:
        try:
            await self._forward_message(message)
        except (discord.HTTPException, OSError) as error:
            log.error("could not forward message %s: %s", message.id, self._redact(str(error)))

    async def _forward_message(self, message: discord.Message) -> None:
        me = self.client.user
        channel = message.channel
        in_guild = message.guild is not None
        routing: dict[str, Any] = {
            "channel": "discord",
            "chat_type": "group" if in_guild else "dm",
            "chat_id": str(channel.id),
            "sender_id": str(message.author.id),
        }
        if message.guild is not None:
            routing["guild_id"] = str(message.guild.id)
        parent_id = getattr(channel, "parent_id", None)
        if isinstance(channel, discord.Thread) and parent_id is not None:
            routing["thread_id"] = str(channel.id)
            routing["parent_id"] = str(parent_id)
        content, metadata = await self._content(message, fetch=self.may_be_answered(routing))
        if content == {"type": "text", "text": ""}:
            # An embed alone, a poll...: nothing the agent could read, and an empty turn to answer.
            log.info("message %s has no text, file or sticker; not forwarded", message.id)
            return
        reference = message.reference
        if reference is not None and reference.type == discord.MessageReferenceType.forward:
            reference = None  # a forward quotes a message, it does not reply to it
        replied = reference.resolved if reference is not None else None
        await self.message_received(
            message_id=str(message.id),
            chat_id=str(channel.id),
            sender=_sender(message.author),
            content=content,
            routing=routing,
            reply_to=str(reference.message_id) if reference and reference.message_id else None,
            mentions_bot=self._mentions_me(message),
            reply_to_bot=isinstance(replied, discord.Message)
            and me is not None
            and replied.author.id == me.id,
            timestamp=message.created_at.isoformat(),
            metadata=metadata,
        )

    def _mentions_me(self, message: discord.Message) -> bool:
        """Whether the message mentions the bot, or its own role in the server.

        Discord gives a bot a role of its name when it joins, and mention autocomplete offers it
        next to the bot: someone picking it means the bot just as much.
        """
        me = self.client.user
        if me is None:
            return False
        if any(user.id == me.id for user in message.mentions):
            return True
        if command_addressed_to(message.content, me.name):
            return True  # `/reset@botname`: Discord sees no mention in it, the router needs one
        own_role = message.guild.self_role if message.guild is not None else None
        return own_role is not None and own_role.id in message.raw_role_mentions

    def _own_mentions(self, message: discord.Message) -> list[str]:
        """How the message's text may write a mention of the bot: `<@id>`, `<@!id>` (older
        clients), or its own role in the server, `<@&id>` (see `_mentions_me`)."""
        me = self.client.user
        if me is None:
            return []
        forms = [f"<@{me.id}>", f"<@!{me.id}>"]
        own_role = message.guild.self_role if message.guild is not None else None
        if own_role is not None:
            forms.append(f"<@&{own_role.id}>")
        return forms

    async def _content(
        self, message: discord.Message, *, fetch: bool
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The protocol `content` (mentions of the bot spelled as @name, stickers by name, a
        forwarded message's text) and an attachment, downloaded if `fetch`."""
        stickers = [f"[sticker: {sticker.name}]" for sticker in message.stickers]
        text = " ".join([self._readable(message), *stickers]).strip()
        attachments = list(message.attachments)
        for snapshot in message.message_snapshots:
            # A forward: Discord sends the original's text and files in a snapshot, not in content.
            text = "\n".join(
                part for part in (text, f"[forwarded message]\n{snapshot.content}".strip()) if part
            )
            attachments += snapshot.attachments
        if not attachments:
            return {"type": "text", "text": text}, None
        attachment = attachments[0]
        others = len(attachments) - 1
        if others:
            text = f"{text}\n[{others} more attachment(s) not forwarded: one file per message]".strip()
        content: dict[str, Any] = {"type": "media", "media_type": _media_type(attachment.content_type)}
        if text:
            content["caption"] = text
        if not fetch:
            mime_type = attachment.content_type or "application/octet-stream"
            return content, not_fetched(Path(attachment.filename).name or "file", mime_type)
        return content, await self._download(attachment)

    def _readable(self, message: discord.Message) -> str:
        """The text with mentions shown as the user saw them: the bot's `<@id>` (or its role's)
        as `@name`, other people's as `@display name` (the agent cannot tell who `<@1234>` is),
        channels, roles, custom emoji and commands by name (duragent.plugins.discord.mentions).

        A chat command after the bot's mention (`@bot /reset`) arrives as the command alone, as
        the router reads commands: shown as `@name /reset`, it would reach the agent as talk.
        """
        text = message.content
        me = self.client.user
        if me is not None:
            forms = self._own_mentions(message)
            command = command_after_mention(text, forms)
            if command is not None:
                text = command
            for form in forms:
                text = text.replace(form, f"@{me.name}")
        for user in message.mentions:
            for form in (f"<@{user.id}>", f"<@!{user.id}>"):
                text = text.replace(form, f"@{user.display_name}")
        channels = {channel.id: channel.name for channel in message.channel_mentions}
        roles = {role.id: role.name for role in message.role_mentions}
        return mentions.as_read(text, channels=channels, roles=roles)

    async def _download(self, attachment: discord.Attachment) -> dict[str, Any]:
        """Fetch an attachment into the download folder; on failure say why instead of dropping it."""
        assert self._downloads is not None
        name = Path(attachment.filename).name or "file"
        mime_type = attachment.content_type or "application/octet-stream"
        limit = self.settings.max_download_mb if self.settings else MAX_DOWNLOAD_MB
        refused = too_large(attachment.size, limit)
        if refused is not None:  # discord.py holds the whole file in memory while saving it
            log.warning("not downloading %s: %s", name, refused)
            return {
                "file_name": name,
                "mime_type": mime_type,
                "size": attachment.size,
                "download_error": refused,
            }
        target = self._downloads.new_file(name)
        try:
            await attachment.save(target)
        except (discord.HTTPException, OSError) as error:
            reason = self._redact(str(error))
            log.warning("could not download %s: %s", name, reason)
            return {"file_name": name, "mime_type": mime_type, "download_error": reason}
        return {
            "file_path": str(target),
            "file_name": name,
            "mime_type": mime_type,
            "size": target.stat().st_size,
        }

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """discord.py: a button was pressed; acknowledge it now, answer when Duragent decides."""
        if interaction.type != discord.InteractionType.component or interaction.message is None:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        try:
            # Discord wants an answer within 3 s; the decision may take longer, so defer first.
            await interaction.response.defer(ephemeral=True, thinking=True)
        except (discord.HTTPException, OSError) as error:
            log.warning("could not acknowledge a button press: %s", self._redact(str(error)))
            return
        self._forget_old_interactions()
        self._interactions[str(interaction.id)] = (interaction, time.monotonic())
        await self.callback_query(
            callback_query_id=str(interaction.id),
            chat_id=str(interaction.channel_id),
            sender=_sender(interaction.user),
            message_id=str(interaction.message.id),
            data=custom_id,
        )

    def _forget_old_interactions(self) -> None:
        horizon = time.monotonic() - INTERACTION_TTL_SECONDS
        for key, (_, at) in list(self._interactions.items()):
            if at < horizon:
                del self._interactions[key]

    # ------------------------------------------------------------------ commands

    async def on_send_message(self, cmd: SendMessage) -> str | None:
        """Send Markdown as Discord Markdown in ordered pieces; returns the last piece's message id."""
        pieces = split_message(markdown_to_discord(cmd.content), DISCORD_TEXT_LIMIT)
        # Markdown rendering to nothing: sent as typed, not refused (the user would see no reply).
        pieces = pieces or split_message(as_typed(cmd.content), DISCORD_TEXT_LIMIT)
        channel = self._channel(cmd.chat_id)
        last: discord.Message | None = None
        for index, piece in enumerate(pieces):
            first, final = index == 0, index == len(pieces) - 1
            options: dict[str, Any] = {}
            if first and cmd.reply_to and cmd.reply_to.isdigit():
                options["reference"] = discord.MessageReference(
                    message_id=int(cmd.reply_to), channel_id=channel.id, fail_if_not_exists=False
                )
                options["mention_author"] = False
            if final and cmd.inline_keyboard is not None:
                options["view"] = _buttons(cmd.inline_keyboard)
            last = await self._call(functools.partial(channel.send, piece, **options))
        assert last is not None
        return str(last.id)

    async def on_send_media(self, cmd: SendMedia) -> str | None:
        """Send a file (base64 data) as an attachment, or a URL as a link Discord previews.

        A caption too long for one message is cut like a reply: its first pieces go out as
        messages, the last with the file (nothing is cut off)."""
        channel = self._channel(cmd.chat_id)
        pieces = split_message(markdown_to_discord(cmd.caption or ""), DISCORD_TEXT_LIMIT)
        data: bytes | None = None
        filename = "file"
        if cmd.media.source == "url":
            last = pieces.pop() if pieces else ""
            if len(last) + 1 + len(cmd.media.url) <= DISCORD_TEXT_LIMIT:
                caption = f"{last}\n{cmd.media.url}".strip()
            else:
                pieces.append(last)
                caption = cmd.media.url[:DISCORD_TEXT_LIMIT]
        else:
            try:
                data = base64.b64decode(cmd.media.data, validate=True)
            except ValueError:
                raise PlatformError("invalid_request", "media data is not valid base64") from None
            filename = cmd.media.filename or "file"
            caption = pieces.pop() if pieces else ""
        for piece in pieces:
            await self._call(functools.partial(channel.send, piece))

        def send_last() -> Awaitable[discord.Message]:
            if data is None:
                return channel.send(caption or None)
            # A fresh File each attempt: a sent one has been read to its end.
            file = discord.File(io.BytesIO(data), filename=filename)
            return channel.send(caption or None, file=file)

        sent = await self._call(send_last)
        return str(sent.id)

    async def on_send_typing(self, cmd: SendTyping) -> None:
        """Show "typing..." (Discord shows it for about 10 s or until the next message)."""
        # Tried once: the reply queued behind it must not wait, and a running turn sends it again.
        channel = self._channel(cmd.chat_id)
        await self._call(lambda: channel.typing().wrapped_typer(), retry=False)

    async def on_edit_message(self, cmd: EditMessage) -> None:
        """Replace a sent message's text (only the first 2,000 characters fit in one message)."""
        pieces = split_message(markdown_to_discord(cmd.content), DISCORD_TEXT_LIMIT)
        # Markdown rendering to nothing: sent as typed, not refused (the user would see no reply).
        pieces = pieces or split_message(as_typed(cmd.content), DISCORD_TEXT_LIMIT)
        message = self._channel(cmd.chat_id).get_partial_message(_snowflake(cmd.message_id, "message_id"))
        await self._call(lambda: message.edit(content=pieces[0]))

    async def on_delete_message(self, cmd: DeleteMessage) -> None:
        """Delete a message."""
        message = self._channel(cmd.chat_id).get_partial_message(_snowflake(cmd.message_id, "message_id"))
        await self._call(message.delete)

    async def on_answer_callback_query(self, cmd: AnswerCallbackQuery) -> None:
        """Tell the presser (only them) what their press did."""
        entry = self._interactions.pop(cmd.callback_query_id, None)
        if entry is None:
            raise PlatformError("invalid_request", f"unknown or expired button press {cmd.callback_query_id}")
        interaction, _ = entry
        await self._call(lambda: interaction.edit_original_response(content=cmd.text or "✓"))

    # ------------------------------------------------------------------ REST calls

    def _channel(self, chat_id: str) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(_snowflake(chat_id, "chat_id"))

    async def _call(self, request: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """Make one REST call, trying it again after a failure on the way (unless `retry` is
        false); Discord's errors become PlatformError (429s were already waited out).

        `request` makes the call afresh each time, so a failed call can be repeated.
        """
        attempts = TRANSIENT_ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._call_once(request)
            except _TransientFailure as failure:
                if attempt == attempts:
                    raise failure.error from None
                delay = TRANSIENT_FIRST_DELAY_SECONDS * 2 ** (attempt - 1)
                # A piece sent again may, rarely, arrive twice (Discord may have posted it before
                # failing): better than a reply that never arrives.
                log.warning("Discord call failed (%s); retrying in %.0f s", failure.error.message, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _call_once(self, request: Callable[[], Awaitable[T]]) -> T:
        try:
            return await request()
        except discord.NotFound as error:
            code = "message_not_found" if error.code in (10008, 10062) else "chat_not_found"
            raise PlatformError(code, self._redact(error.text or str(error))) from None
        except discord.Forbidden as error:
            raise PlatformError("unauthorized", self._redact(error.text or str(error))) from None
        except discord.RateLimited as error:
            raise PlatformError("rate_limited", f"Discord asked to wait {error.retry_after:.0f} s") from None
        except discord.HTTPException as error:
            statuses = {429: "rate_limited", 400: "invalid_request"}
            code = statuses.get(error.status, "platform_error")
            failed = PlatformError(code, self._redact(error.text or str(error)))
            if error.status >= 500 and error.status not in _RETRIED_BY_DISCORD_PY:
                raise _TransientFailure(failed) from None
            raise failed from None
        except (TimeoutError, OSError) as error:
            reason = self._redact(f"cannot reach Discord: {error}")
            raise _TransientFailure(PlatformError("not_connected", reason)) from None

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)


class ReconnectBackoff:
    """The waits between discord.py's attempts at an unreachable Gateway: 1 s doubling to a minute,
    each within 20% either way (bots must not retry in lockstep), as the Telegram plugin waits;
    back to 1 s once the Gateway has answered (READY or RESUMED) and stayed up for a minute.

    discord.py's own waits are drawn from 0 to 2**n s, n growing by one each attempt up to 10 and
    going back to 1 only after 34 quiet minutes: a few quick draws during a short outage could
    leave the bot waiting a minute, after a long one 17, for a Discord that was already back.
    Doubling waits keep the wait after an outage within about one and a half times its length.
    A connection that drops again within a minute of coming back goes on doubling.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = 0
        self._clock = clock
        self._up_since: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next attempt (discord.py calls this after each failure)."""
        if self._up_since is not None and self._clock() - self._up_since >= RECONNECT_STABLE_SECONDS:
            self.failures = 0
        self._up_since = None
        self.failures += 1
        return doubling_wait(RECONNECT_FIRST_SECONDS, self.failures, RECONNECT_MAX_SECONDS)

    def connected(self) -> None:
        """The Gateway answered (READY or RESUMED): once it stays up for a minute, the next outage
        starts again from 1 s. The minute runs from the first answer after the last failure: the
        resumes discord.py makes without a wait (Discord asked it to reconnect) do not restart it."""
        if self._up_since is None:
            self._up_since = self._clock()


class _TransientFailure(Exception):
    """A REST call failed on the way (unreachable, a server error): worth making again."""

    def __init__(self, error: PlatformError) -> None:
        super().__init__(error.message)
        self.error = error


def _token_source(config: dict[str, Any]) -> str:
    """Where the token came from, for an error message: the config key or the variable."""
    return "`bot_token`" if config.get("bot_token") else TOKEN_ENV


def _snowflake(value: str, field: str) -> int:
    if not value.isdigit():
        raise PlatformError("invalid_request", f"{field} must be a Discord id (digits), not {value!r}")
    return int(value)


def _buttons(keyboard: InlineKeyboard) -> ui.View:
    # Presses reach on_interaction whatever the view does; the view only carries the components.
    view = ui.View(timeout=None)
    for row_number, row in enumerate(keyboard.rows[:5]):
        for button in row[:5]:
            style = (
                discord.ButtonStyle.danger
                if button.callback_data.endswith("deny")
                else discord.ButtonStyle.primary
            )
            view.add_item(
                ui.Button(
                    label=button.text[:80], custom_id=button.callback_data[:100], style=style, row=row_number
                )
            )
    view.stop()  # nothing to dispatch to: keeps discord.py from holding the view for ever
    return view


def _sender(user: discord.User | discord.Member) -> dict[str, Any]:
    display_name = user.global_name or getattr(user, "nick", None) or None
    return {"id": str(user.id), "username": user.name, "display_name": display_name}


def _media_type(content_type: str | None) -> str:
    kind = (content_type or "").split("/")[0]
    return {"image": "photo", "audio": "audio", "video": "video"}.get(kind, "document")
