"""The Slack gateway plugin: a Slack app (through slack-bolt and slack_sdk) <-> the gateway protocol.

Runs as its own process (`duragent-gateway-slack`) started by `duragent serve`. By default it
receives events over Socket Mode (a websocket the app opens with its xapp- token: nothing to
expose to the internet; slack_sdk reconnects when Slack asks or the connection drops);
`mode: http` serves the Events API and interactivity on a local HTTP port instead, with every
request's signature checked. Messages become `message_received` events (a thread is a chat of
its own: `<channel>:<thread_ts>`), button presses `callback_query` events. Replies are
converted to mrkdwn and posted in pieces within Slack's section limit (3,000 characters);
approval buttons are Block Kit buttons whose presses are acknowledged at once and answered with
an ephemeral message only the presser sees. Files people share are downloaded (with the bot
token, only from Slack's file host or the configured API host) for Duragent to store as
artifacts. A 429 is waited out (`Retry-After`) and retried. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.web.async_client import AsyncWebClient

from duragent.errors import ConfigError
from duragent.gateways.chat_commands import command_addressed_to, command_after_mention
from duragent.gateways.chat_order import ChatOrder
from duragent.gateways.chunking import as_typed, split_message, split_then_convert
from duragent.gateways.downloads import MAX_DOWNLOAD_MB, DownloadFolder, not_fetched, too_large
from duragent.gateways.protocol import (
    AnswerCallbackQuery,
    DeleteMessage,
    EditMessage,
    InlineKeyboard,
    SendMedia,
    SendMessage,
)
from duragent.gateways.sdk import (
    GatewayPlugin,
    PlatformError,
    PlatformUnreachable,
    SecretRedactor,
    int_setting,
    refuse_unknown_keys,
    seconds_setting,
)
from duragent.plugins.slack import markup
from duragent.plugins.slack.mrkdwn import escape, markdown_to_mrkdwn

BOT_TOKEN_ENV = "SLACK_BOT_TOKEN"
APP_TOKEN_ENV = "SLACK_APP_TOKEN"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
API_BASE_ENV = "SLACK_API_BASE"
#: A section block's text limit; every piece of a reply fits one.
SLACK_TEXT_LIMIT = 3000
#: How long a stop waits for messages still being passed on (a file downloading): Duragent
#: kills a plugin 5 s after `shutdown`, in-flight commands may take 3 of them.
IN_FLIGHT_GRACE_SECONDS = 1.5
#: Attempts at a call Slack answers with 429 before giving up.
RATE_LIMIT_RETRIES = 5
#: Retries of a call that fails on the way (Slack unreachable, a 5xx), after about 1, 2 and 4 s:
#: an agent's reply is sent once, and would otherwise be lost to a blip.
TRANSIENT_RETRIES = 3
#: The first wait before such a retry (`retry_backoff`); it doubles for each next one.
RETRY_BACKOFF_SECONDS = 1.0
MAX_RETRY_BACKOFF_SECONDS = 10.0
#: How long start-up waits for auth.test (retries included) before it reports Slack out of reach:
#: well within the 30 s Duragent gives a plugin to be ready, so the cause is said.
AUTH_TEST_WITHIN_SECONDS = 20.0
#: Where Slack serves files shared in conversations (the bot token is sent nowhere else).
SLACK_FILE_HOST = "files.slack.com"
_WANTED_SUBTYPES = (None, "file_share", "thread_broadcast")
#: What Slack answers a call made with a token it will not take.
_REFUSED_TOKEN = ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "not_allowed_token_type")
_CHAT_TYPES = {"im": "dm", "mpim": "group", "channel": "group", "group": "group"}
#: How a member is mentioned in a message's text: `<@U0123>` (older clients: `<@U0123|ada>`).
_MEMBER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")

log = logging.getLogger("duragent.gateway.slack")


@dataclass(frozen=True)
class SlackSettings:
    """The plugin's `config:` map from duragent.yaml, with environment fallbacks applied."""

    bot_token: str
    app_token: str | None = None
    mode: Literal["socket", "http"] = "socket"
    signing_secret: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 3000
    http_path: str = "/slack/events"
    api_base: str | None = None
    download_dir: str | None = None
    max_download_mb: int = MAX_DOWNLOAD_MB
    #: The first wait (seconds) before a failed call is tried again; it doubles for each retry.
    retry_backoff: float = RETRY_BACKOFF_SECONDS

    @classmethod
    def from_config(cls, config: dict[str, Any], environ: dict[str, str]) -> SlackSettings:
        """Read the config map; tokens, the signing secret and `api_base` fall back to the environment."""
        refuse_unknown_keys(config, [field.name for field in fields(cls)])
        bot_token = str(config.get("bot_token") or environ.get(BOT_TOKEN_ENV, "")).strip()
        if not bot_token:
            raise ConfigError(
                f"no bot token: set `bot_token` (xoxb-...) in the gateway's config or {BOT_TOKEN_ENV}"
            )
        mode = str(config.get("mode", "socket"))
        if mode not in ("socket", "http"):
            raise ConfigError(f"mode must be socket or http, not {mode!r}")
        app_token = str(config.get("app_token") or environ.get(APP_TOKEN_ENV, "")).strip() or None
        if mode == "socket" and app_token is None:
            raise ConfigError(
                f"Socket Mode needs the app-level token (xapp-...): set `app_token` or {APP_TOKEN_ENV} "
                "(or use mode: http with a signing secret)"
            )
        secret = str(config.get("signing_secret") or environ.get(SIGNING_SECRET_ENV, "")).strip() or None
        if mode == "http" and secret is None:
            raise ConfigError(
                f"mode: http needs `signing_secret` or {SIGNING_SECRET_ENV} to check Slack's requests"
            )
        _check_token_kinds(bot_token, app_token)
        api_base = config.get("api_base") or environ.get(API_BASE_ENV) or None
        if api_base is not None and "://" not in str(api_base):
            raise ConfigError(f"api_base must be a URL like http://127.0.0.1:8904/api/, not {api_base!r}")
        http_path = str(config.get("http_path", "/slack/events"))
        if not http_path.startswith("/"):
            raise ConfigError(
                f"http_path must be a path starting with / (like /slack/events), not {http_path!r}"
            )
        return cls(
            bot_token=bot_token,
            app_token=app_token,
            mode="http" if mode == "http" else "socket",
            signing_secret=secret,
            http_host=str(config.get("http_host", "127.0.0.1")),
            http_port=int_setting(config, "http_port", 3000, minimum=1, maximum=65535),
            http_path=http_path,
            api_base=(str(api_base).rstrip("/") + "/") if api_base else None,
            download_dir=config.get("download_dir") or None,
            max_download_mb=int_setting(config, "max_download_mb", MAX_DOWNLOAD_MB, minimum=1),
            retry_backoff=seconds_setting(
                config, "retry_backoff", RETRY_BACKOFF_SECONDS, maximum=MAX_RETRY_BACKOFF_SECONDS
            ),
        )


class SlackPlugin(GatewayPlugin):
    """A Slack app speaking the Duragent gateway protocol."""

    name = "slack"
    capabilities = ("media", "edit", "delete", "inline_keyboard", "split", "admission")

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        super().__init__()
        self.environ = dict(os.environ if environ is None else environ)
        self.settings: SlackSettings | None = None
        self._client: AsyncWebClient | None = None
        self._app: AsyncApp | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._http: web.AppRunner | None = None
        self._redactor = SecretRedactor()
        self._bot_user_id = ""
        self._bot_name = ""
        self._names: dict[str, str | None] = {}
        self._channel_names: dict[str, str | None] = {}
        self._seen: deque[tuple[str, str]] = deque(maxlen=1000)
        self._presses: dict[str, tuple[str, str, str | None]] = {}
        self._downloads: DownloadFolder | None = None
        self._order = ChatOrder()
        #: Started: a token refused from now on was revoked while running (see `_token_refused`).
        self._running = False
        self._stopping_for_token = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def client(self) -> AsyncWebClient:
        """The Web API client (available once started)."""
        if self._client is None:
            raise PlatformError("not_connected", "the app has not started")
        return self._client

    async def on_start(self) -> None:
        """Check the bot token (auth.test), then receive events over Socket Mode or HTTP."""
        settings = SlackSettings.from_config(self.config, self.environ)
        self.settings = settings
        self._redactor = SecretRedactor(
            settings.bot_token, settings.app_token or "", settings.signing_secret or ""
        )
        self._redactor.install()
        options: dict[str, Any] = {"base_url": settings.api_base} if settings.api_base else {}
        self._client = AsyncWebClient(
            token=settings.bot_token,
            retry_handlers=[
                _RefusedTokenWatcher(self._token_refused),
                # A piece sent again may, rarely, arrive twice (Slack may have posted it before
                # failing): better than a reply that never arrives.
                _TransientFailureRetry(
                    max_retry_count=TRANSIENT_RETRIES,
                    interval_calculator=_transient_backoff(settings.retry_backoff),
                ),
                AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            ],
            **options,
        )
        identity = await self._auth_test()
        self._bot_user_id = str(identity.get("user_id", ""))
        self._bot_name = str(identity.get("user", "bot"))
        # Slack takes a message starting with "/" for one of its own slash commands (and refuses
        # it): the chat commands the bot lists are typed after its mention.
        self.command_prefix = f"@{self._bot_name} "
        self._downloads = DownloadFolder(
            settings.download_dir, prefix="duragent-slack-", environ=self.environ
        )
        # Bolt reads SLACK_BOT_TOKEN itself and, given our client too, warns at every start that
        # the token "will be unused": the client holds that very token.
        logging.getLogger("slack_bolt.AsyncApp").addFilter(_not_the_unused_token_warning)
        app = AsyncApp(
            client=self._client,
            signing_secret=settings.signing_secret or "",
            request_verification_enabled=settings.mode == "http",
        )
        app.event("message")(self._on_message_event)
        app.event("app_mention")(self._on_message_event)
        app.action(re.compile(".*"))(self._on_action)
        app.error(self._on_app_error)
        self._app = app
        if settings.mode == "http":
            await self._serve_http(app, settings)
        else:
            assert settings.app_token is not None
            await self._check_app_token(settings.app_token)
            self._socket = AsyncSocketModeHandler(app, settings.app_token)
            try:
                await self._socket.connect_async()  # type: ignore[no-untyped-call]
            except (SlackApiError, SlackRequestError, aiohttp.ClientError, OSError) as error:
                raise PlatformUnreachable(self._redact(f"cannot open Socket Mode: {error}")) from None
        log.info("connected as @%s (%s mode)", self._bot_name, settings.mode)
        self._running = True

    async def _auth_test(self) -> dict[str, Any]:
        """auth.test; the client retries a failure on the way (about 1, 2, 4 s): a flaky network
        at boot should not cost a restart cycle."""
        try:
            async with asyncio.timeout(AUTH_TEST_WITHIN_SECONDS):  # a network that silently drops packets
                response = await self.client.auth_test()
        except TimeoutError:
            raise PlatformUnreachable(
                f"cannot reach Slack: no answer to auth.test within {AUTH_TEST_WITHIN_SECONDS:.0f} s"
            ) from None
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code in _REFUSED_TOKEN:
                raise ConfigError(
                    f"Slack refused the bot token in {_source(self.config, 'bot_token', BOT_TOKEN_ENV)}"
                    f" ({code}): copy the xoxb- token again from OAuth & Permissions (reinstalling"
                    " the app makes a new one)"
                ) from None
            text = self._redact(f"cannot reach Slack: {code or error}")
            raise _api_failure(text, error.response.status_code) from None
        except (SlackRequestError, aiohttp.ClientError, OSError) as error:
            raise PlatformUnreachable(self._redact(f"cannot reach Slack: {error}")) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def _check_app_token(self, app_token: str) -> None:
        """Ask for a Socket Mode URL once: slack_sdk retries a refused app token for ever."""
        try:
            await self.client.apps_connections_open(app_token=app_token)
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code in _REFUSED_TOKEN:
                raise ConfigError(
                    f"Slack refused the app-level token in {_source(self.config, 'app_token', APP_TOKEN_ENV)}"
                    f" ({code}): it must be an xapp- token with the connections:write scope"
                    " (Basic Information > App-Level Tokens)"
                ) from None
            text = self._redact(f"cannot open Socket Mode: {code or error}")
            raise _api_failure(text, error.response.status_code) from None
        except (SlackRequestError, aiohttp.ClientError, OSError) as error:
            raise PlatformUnreachable(self._redact(f"cannot open Socket Mode: {error}")) from None

    async def _token_refused(self, method: str, code: str) -> None:
        """A token Slack no longer takes while the app runs (revoked, regenerated, the app
        uninstalled): one fatal error naming where it is set, and a stop. Else Socket Mode
        retries for ever and every event fails its authorization, a bot that hears nothing."""
        if not self._running or self._stopping_for_token:
            return
        self._stopping_for_token = True
        if method == "apps.connections.open":
            token = f"app-level token (xapp-) in {_source(self.config, 'app_token', APP_TOKEN_ENV)}"
        else:
            token = f"bot token (xoxb-) in {_source(self.config, 'bot_token', BOT_TOKEN_ENV)}"
        message = (
            f"Slack refused the {token} ({code}) while running: was it revoked or regenerated,"
            " or the app uninstalled? Set the current one"
        )
        log.debug("%s", message)  # the host logs the fatal error it is sent
        await self.error("unauthorized", message, fatal=True)
        self.request_stop(message)

    async def _serve_http(self, app: AsyncApp, settings: SlackSettings) -> None:
        """HTTP Events mode: Bolt's aiohttp app (signature checks included) on the local port."""
        web_app = app.web_app(path=settings.http_path, port=settings.http_port)
        self._http = web.AppRunner(web_app, access_log=None)
        await self._http.setup()
        try:
            await web.TCPSite(self._http, settings.http_host, settings.http_port).start()
        except OSError as error:
            await self._http.cleanup()
            self._http = None
            raise ConfigError(
                f"cannot listen on {settings.http_host}:{settings.http_port} (`http_host`, `http_port`"
                f" in the gateway's config): {error.strerror or error}"
            ) from None
        log.info(
            "events and interactivity on http://%s:%s%s",
            settings.http_host,
            settings.http_port,
            settings.http_path,
        )

    async def on_shutdown(self) -> None:
        """Finish passing on the messages in hand (briefly: Slack was told they arrived and will
        not send them again), close the websocket or the HTTP server, then the Web API session."""
        await self._order.settle(IN_FLIGHT_GRACE_SECONDS)
        if self._socket is not None:
            with contextlib.suppress(Exception):  # closing a half-open websocket must not stop the exit
                await self._socket.close_async()  # type: ignore[no-untyped-call]
        if self._http is not None:
            await self._http.cleanup()
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()
        if self._downloads is not None:
            self._downloads.close()

    def is_connected(self) -> bool:
        """Whether Socket Mode's websocket is open (HTTP mode: the server is listening)."""
        if self._socket is not None:
            session = getattr(self._socket.client, "current_session", None)
            return session is not None and not session.closed
        return self._http is not None

    async def _on_app_error(self, error: Exception) -> None:
        log.error("handling a Slack event failed: %s", self._redact(str(error)))

    # ------------------------------------------------------------------ receiving

    async def _on_message_event(self, event: dict[str, Any]) -> None:
        """Bolt: a `message` or `app_mention` event (the same message may come as both)."""
        if event.get("subtype") not in _WANTED_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return  # edits, joins, other bots and ourselves: nothing an agent should answer
        seen = (str(event.get("channel")), str(event.get("ts")))
        if seen in self._seen:
            return
        self._seen.append(seen)
        # Bolt runs each event in a task of its own: a text must not overtake the file shared
        # before it while the file downloads.
        await self._order.in_turn(_chat_of(event), lambda: self._forward_logged(event))

    async def _forward_logged(self, event: dict[str, Any]) -> None:
        try:
            await self._forward_message(event)
        except (SlackApiError, aiohttp.ClientError, OSError) as error:
            log.error("could not forward message %s: %s", event.get("ts"), self._redact(str(error)))

    async def _forward_message(self, event: dict[str, Any]) -> None:
        channel = str(event["channel"])
        channel_type = str(event.get("channel_type") or ("im" if channel.startswith("D") else "channel"))
        user = str(event["user"])
        thread_ts = event.get("thread_ts")
        chat_id = _chat_of(event)
        routing: dict[str, Any] = {
            "channel": "slack",
            "chat_type": _CHAT_TYPES.get(channel_type, "group"),
            "chat_id": chat_id,
            "sender_id": user,
            "team_id": str(event.get("team") or ""),
        }
        if thread_ts:
            routing["thread_id"] = str(thread_ts)
            routing["parent_id"] = channel
        text = await self._readable(str(event.get("text") or ""))
        content, metadata = await self._content(event, text, fetch=self.may_be_answered(routing))
        if content == {"type": "text", "text": ""}:
            # Attachments of another app alone, a shared message...: no turn for an empty text.
            log.info("message %s has no text or file; not forwarded", event["ts"])
            return
        await self.message_received(
            message_id=str(event["ts"]),
            chat_id=chat_id,
            sender={"id": user, "username": None, "display_name": await self._display_name(user)},
            content=content,
            routing=routing,
            reply_to=str(thread_ts) if thread_ts and thread_ts != event["ts"] else None,
            mentions_bot=self._mentions_me(str(event.get("text") or "")),
            reply_to_bot=bool(thread_ts) and event.get("parent_user_id") == self._bot_user_id,
            timestamp=datetime.fromtimestamp(float(event["ts"]), UTC).isoformat(),
            metadata=metadata,
        )

    def _mentions_me(self, text: str) -> bool:
        """Whether the message's text mentions the bot, or is a command addressed to it by name
        (` /reset@duragent`), which Slack does not mark as a mention."""
        return f"<@{self._bot_user_id}>" in text or command_addressed_to(text, self._bot_name)

    async def _readable(self, text: str) -> str:
        """Slack's markup as the user saw it: the bot's mention as @name, other members' as
        @display name (the agent cannot tell who `<@U0123>` is), channels as #name, links, group
        mentions and e-mail addresses as they read (see duragent.plugins.slack.markup), entities
        unescaped.

        Slack refuses a message starting with "/" that is not one of its slash commands ("/reset is
        not a valid command"), so `@bot /reset` (or ` /reset`) is how a chat command is typed:
        it arrives as `/reset`.
        """
        command = command_after_mention(text, [f"<@{self._bot_user_id}>"])
        if command is not None:
            text = command
        text = text.replace(f"<@{self._bot_user_id}>", f"@{self._bot_name}")
        names = {member: await self._display_name(member) for member in _MEMBER_MENTION.findall(text)}
        text = _MEMBER_MENTION.sub(lambda found: f"@{names[found[1]]}" if names[found[1]] else found[0], text)
        channels = {channel: await self._channel_name(channel) for channel in markup.CHANNEL.findall(text)}
        return markup.as_read(text, channels)

    async def _display_name(self, user: str) -> str | None:
        """The member's name (users.info, cached); None if Slack will not say."""
        if user not in self._names:
            try:
                info = (await self.client.users_info(user=user)).get("user") or {}
            except (SlackApiError, SlackRequestError, aiohttp.ClientError, OSError) as error:
                log.info("users.info %s failed: %s", user, self._redact(str(error)))
                return None
            profile = info.get("profile") or {}
            self._names[user] = (
                profile.get("display_name") or info.get("real_name") or info.get("name") or None
            )
        return self._names[user]

    async def _channel_name(self, channel: str) -> str | None:
        """The channel's name (conversations.info, cached); None if Slack will not say (the bot
        lacks the `channels:read` scope, or is not in a private channel)."""
        if channel not in self._channel_names:
            try:
                info = (await self.client.conversations_info(channel=channel)).get("channel") or {}
            except SlackApiError as error:  # Slack's answer (`missing_scope`): asked once, not per message
                log.info("conversations.info %s failed: %s", channel, self._redact(str(error)))
                info = {}
            except (SlackRequestError, aiohttp.ClientError, OSError) as error:
                log.info("conversations.info %s failed: %s", channel, self._redact(str(error)))
                return None
            self._channel_names[channel] = info.get("name") or None
        return self._channel_names[channel]

    async def _content(
        self, event: dict[str, Any], text: str, *, fetch: bool
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The protocol `content` and the `metadata` of its first file (downloaded if `fetch`)."""
        files = event.get("files") or []
        if not files:
            return {"type": "text", "text": text}, None
        file = files[0]
        if len(files) > 1:
            text = f"{text}\n[{len(files) - 1} more file(s) not forwarded: one file per message]".strip()
        mimetype = str(file.get("mimetype") or "application/octet-stream")
        content: dict[str, Any] = {"type": "media", "media_type": _media_type(mimetype)}
        if text:
            content["caption"] = text
        if not fetch:
            return content, not_fetched(str(file.get("name") or "file"), mimetype)
        return content, await self._download(file, mimetype)

    async def _download(self, file: dict[str, Any], mimetype: str) -> dict[str, Any]:
        """Fetch a shared file with the bot token; on failure say why instead of dropping the message."""
        assert self._downloads is not None
        name = str(file.get("name") or "file")
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        if not self._may_send_token_to(url):
            return {
                "file_name": name,
                "mime_type": mimetype,
                "download_error": "file is not on Slack's file host",
            }
        limit = self.settings.max_download_mb if self.settings else MAX_DOWNLOAD_MB
        size = file.get("size")
        refused = too_large(size if isinstance(size, int) else None, limit)
        if refused is not None:  # the whole file is held in memory while it is fetched
            log.warning("not downloading %s: %s", name, refused)
            return {"file_name": name, "mime_type": mimetype, "size": size, "download_error": refused}
        target = self._downloads.new_file(name)
        headers = {"Authorization": f"Bearer {self.client.token}"}
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=120)) as response,
            ):
                response.raise_for_status()
                data = await response.read()
            await asyncio.to_thread(target.write_bytes, data)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            reason = self._redact(str(error))
            log.warning("could not download %s: %s", name, reason)
            return {"file_name": name, "mime_type": mimetype, "download_error": reason}
        return {"file_path": str(target), "file_name": name, "mime_type": mimetype, "size": len(data)}

    def _may_send_token_to(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        allowed = {SLACK_FILE_HOST}
        if self.settings is not None and self.settings.api_base:
            allowed.add(urlsplit(self.settings.api_base).hostname or "")
        return host in allowed

    async def _on_action(self, ack: Any, body: dict[str, Any]) -> None:
        """Bolt: a button was pressed; acknowledge at once (Slack allows 3 s), then forward it."""
        await ack()
        actions = body.get("actions") or []
        if not actions or body.get("type") != "block_actions":
            return
        channel = str(
            (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        )
        message = body.get("message") or {}
        # A message with a thread under it carries its own ts as thread_ts: it is still in the
        # channel's chat, not in its thread's.
        thread_ts = message.get("thread_ts") if message.get("thread_ts") != message.get("ts") else None
        chat_id = f"{channel}:{thread_ts}" if thread_ts else channel
        user = str((body.get("user") or {}).get("id"))
        press_id = f"{message.get('ts')}:{actions[0].get('action_ts')}"
        self._presses[press_id] = (channel, user, thread_ts)
        if len(self._presses) > 1000:
            self._presses.pop(next(iter(self._presses)))
        await self.callback_query(
            callback_query_id=press_id,
            chat_id=chat_id,
            sender={"id": user, "username": (body.get("user") or {}).get("username"), "display_name": None},
            message_id=str(message.get("ts")),
            data=str(actions[0].get("value") or ""),
        )

    # ------------------------------------------------------------------ commands

    async def on_send_message(self, cmd: SendMessage) -> str | None:
        """Post mrkdwn in ordered pieces (buttons under the last); returns the last piece's ts."""
        pieces = _mrkdwn_pieces(cmd.content)
        channel, thread_ts = _place(cmd.chat_id)
        last = ""
        for index, piece in enumerate(pieces):
            options: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
            if index == len(pieces) - 1 and cmd.inline_keyboard is not None:
                options["blocks"] = [_section(piece), *_actions(cmd.inline_keyboard)]
            response = await self._call(self.client.chat_postMessage(channel=channel, text=piece, **options))
            last = str(response.get("ts"))
        return last

    async def on_send_media(self, cmd: SendMedia) -> str | None:
        """Upload a file (base64 data) with the caption; a URL is posted as a link Slack unfurls.

        A caption over the section limit is cut like a reply (never inside `&amp;`): its first
        pieces go out as messages, the last with the file."""
        channel, thread_ts = _place(cmd.chat_id)
        pieces = split_then_convert(cmd.caption or "", SLACK_TEXT_LIMIT, markdown_to_mrkdwn)
        caption = pieces.pop() if pieces else ""
        if cmd.media.source != "url":
            try:
                data = base64.b64decode(cmd.media.data, validate=True)
            except ValueError:
                raise PlatformError("invalid_request", "media data is not valid base64") from None
        for piece in pieces:
            await self._call(self.client.chat_postMessage(channel=channel, text=piece, thread_ts=thread_ts))
        if cmd.media.source == "url":
            text = f"{caption}\n<{cmd.media.url}>".strip()
            response = await self._call(
                self.client.chat_postMessage(channel=channel, text=text, thread_ts=thread_ts)
            )
            return str(response.get("ts"))
        filename = cmd.media.filename or "file"
        response = await self._call(
            self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                content=data,
                filename=filename,
                title=filename,
                initial_comment=caption or None,
            )
        )
        file = response.get("file") or {}
        return str(file.get("id") or "")

    async def on_edit_message(self, cmd: EditMessage) -> None:
        """Replace a posted message's text (the first 3,000 characters)."""
        pieces = _mrkdwn_pieces(cmd.content)
        channel, _ = _place(cmd.chat_id)
        await self._call(
            self.client.chat_update(channel=channel, ts=cmd.message_id, text=pieces[0], blocks=[])
        )

    async def on_delete_message(self, cmd: DeleteMessage) -> None:
        """Delete a message the bot posted."""
        channel, _ = _place(cmd.chat_id)
        await self._call(self.client.chat_delete(channel=channel, ts=cmd.message_id))

    async def on_answer_callback_query(self, cmd: AnswerCallbackQuery) -> None:
        """Tell the presser (only them) what their press did, as an ephemeral message."""
        press = self._presses.pop(cmd.callback_query_id, None)
        if press is None:
            raise PlatformError("invalid_request", f"unknown button press {cmd.callback_query_id}")
        if not cmd.text:
            return  # the press was acknowledged when it arrived
        channel, user, thread_ts = press
        options: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        await self._call(self.client.chat_postEphemeral(channel=channel, user=user, text=cmd.text, **options))

    # ------------------------------------------------------------------ Web API calls

    async def _call(self, request: Any) -> Any:
        """Await one Web API call; Slack's errors become PlatformError (429s were already retried)."""
        try:
            return await request
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if error.response.status_code == 429 or code == "ratelimited":
                raise PlatformError("rate_limited", "Slack kept answering 429 Too Many Requests") from None
            raise PlatformError(_error_code(code), self._redact(code or str(error))) from None
        except (SlackRequestError, aiohttp.ClientError, OSError, TimeoutError) as error:
            raise PlatformError("not_connected", self._redact(f"cannot reach Slack: {error}")) from None

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)


class _RefusedTokenWatcher(AsyncRetryHandler):
    """Retries nothing: sees every Web API answer, also those of the clients Bolt makes for each
    event (they copy the retry handlers) and of Socket Mode's reconnects, which only log theirs,
    and tells `on_refused(method, error)` of a refused token."""

    def __init__(self, on_refused: Callable[[str, str], Awaitable[None]]):
        super().__init__()
        self._on_refused = on_refused

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        body = response.body if response is not None else None
        if isinstance(body, dict) and body.get("ok") is False and body.get("error") in _REFUSED_TOKEN:
            await self._on_refused(urlsplit(request.url).path.rsplit("/", 1)[-1], str(body["error"]))
        return False


class _TransientFailureRetry(AsyncRetryHandler):
    """Retries a call that failed on the way: Slack unreachable or dropping the connection, or a
    5xx from Slack (or a proxy in front of it)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code >= 500:
            reason = f"HTTP {response.status_code}"
        elif isinstance(error, aiohttp.ClientConnectionError):
            reason = str(error) or type(error).__name__
        else:
            return False
        method = urlsplit(request.url).path.rsplit("/", 1)[-1]
        log.warning("Slack call %s failed (%s); retrying", method, reason)
        return True


class _ScaledJitter(Jitter):
    """Adds up to `most` seconds at random, so plugins that lost Slack together retry apart."""

    def __init__(self, most: float):
        self.most = most

    def recalculate(self, duration: float) -> float:
        return duration + random.uniform(0, self.most)


def _transient_backoff(first: float) -> BackoffRetryIntervalCalculator:
    """`first`, twice and four times it between attempts (1, 2, 4 s by default), each plus up
    to `first` of jitter."""
    return BackoffRetryIntervalCalculator(backoff_factor=first, jitter=_ScaledJitter(first))


def _api_failure(text: str, status: int) -> Exception:
    """Slack's servers failing (a 5xx, after the retries) pass like a network outage; other answers do not."""
    return PlatformUnreachable(text) if status >= 500 else ConnectionError(text)


def _not_the_unused_token_warning(record: logging.LogRecord) -> bool:
    return record.getMessage() != warning_client_prioritized_and_token_skipped()


def _source(config: dict[str, Any], key: str, variable: str) -> str:
    """Where a secret came from, for an error message: the config key or the variable."""
    return f"`{key}`" if config.get(key) else variable


def _check_token_kinds(bot_token: str, app_token: str | None) -> None:
    """Refuse tokens pasted into each other's key, which Slack would only answer invalid_auth."""
    if bot_token.startswith("xapp-"):
        raise ConfigError(
            "`bot_token` holds an app-level token (xapp-...): it takes the bot token (xoxb-...), "
            "and `app_token` the xapp- one"
        )
    if app_token is not None and app_token.startswith("xox"):
        raise ConfigError(
            f"`app_token` holds a {app_token[:4]}- token: it takes the app-level token (xapp-...), "
            "and `bot_token` the xoxb- one"
        )


def _chat_of(event: dict[str, Any]) -> str:
    """The chat id of a message event: its channel, or `<channel>:<thread_ts>` in a thread."""
    channel, thread_ts = str(event["channel"]), event.get("thread_ts")
    return f"{channel}:{thread_ts}" if thread_ts else channel


def _mrkdwn_pieces(markdown: str) -> list[str]:
    """mrkdwn for `markdown` in pieces; Markdown that renders to nothing is sent as typed (Slack
    refuses an empty message, and the user would see no reply)."""
    pieces = split_then_convert(markdown, SLACK_TEXT_LIMIT, markdown_to_mrkdwn)
    return pieces or split_message(escape(as_typed(markdown)), SLACK_TEXT_LIMIT)


def _place(chat_id: str) -> tuple[str, str | None]:
    """(channel, thread_ts) of a chat id: `C123` or `C123:1700000000.000100`."""
    channel, _, thread_ts = chat_id.partition(":")
    return channel, thread_ts or None


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _actions(keyboard: InlineKeyboard) -> list[dict[str, Any]]:
    blocks = []
    for row_number, row in enumerate(keyboard.rows[:20]):
        elements = []
        for index, button in enumerate(row[:25]):
            element: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": button.text[:75]},
                "action_id": f"duragent-{row_number}-{index}",
                "value": button.callback_data[:2000],
            }
            if button.callback_data.endswith(":deny"):
                element["style"] = "danger"
            elif index == 0:
                element["style"] = "primary"
            elements.append(element)
        blocks.append({"type": "actions", "block_id": f"duragent-actions-{row_number}", "elements": elements})
    return blocks


def _media_type(mimetype: str) -> str:
    kind = mimetype.split("/")[0]
    return {"image": "photo", "audio": "audio", "video": "video"}.get(kind, "document")


def _error_code(code: str) -> str:
    if code in ("channel_not_found", "not_in_channel", "is_archived", "thread_not_found"):
        return "chat_not_found"
    if code in ("message_not_found", "cant_update_message", "cant_delete_message"):
        return "message_not_found"
    if code in ("invalid_auth", "not_authed", "token_revoked", "missing_scope", "account_inactive"):
        return "unauthorized"
    if code in ("msg_too_long", "no_text", "invalid_blocks", "invalid_arguments"):
        return "invalid_request"
    return "platform_error"
