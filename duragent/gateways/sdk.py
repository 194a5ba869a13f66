"""The plugin SDK: subclass GatewayPlugin, fill in the handlers, call `run()`.

The base class owns the stdio framing: it reads commands from stdin, calls the matching
`on_*` handler, answers `command_ok` / `command_error`, answers `ping` with `pong`, and shuts
down gracefully on a `shutdown` command, stdin EOF (Duragent went away) or SIGTERM.
Commands for one chat are handled in order (so chunks of a long reply stay ordered); chats
are handled concurrently. Logs go to stderr; stdout carries only protocol lines (`run()` points
`sys.stdout` at stderr, so a stray print() cannot corrupt them). The base class's own state is
name-mangled (`__x`), so a subclass may use any `_name` for its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, BinaryIO

from duragent.durations import format_duration, parse_duration
from duragent.errors import ConfigError, DuragentError
from duragent.gateways.framing import iter_lines
from duragent.gateways.protocol import (
    PROTOCOL_VERSION,
    Admission,
    AnswerCallbackQuery,
    CallbackQuery,
    Command,
    CommandError,
    CommandOk,
    Configure,
    DeleteMessage,
    EditMessage,
    Error,
    Event,
    MessageReceived,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    SendMedia,
    SendMessage,
    SendTyping,
    Shutdown,
    ShutdownEvent,
    encode,
    parse_command,
)

#: Set by Duragent's manager: a `configure` command comes first, wait for it before `on_start`.
CONFIGURE_ENV = "DURAGENT_GATEWAY_CONFIGURE"
#: How long in-flight commands may take to finish once shutdown begins: Duragent SIGKILLs a plugin
#: 5 s after `shutdown`, and on_shutdown needs the rest to disconnect.
SHUTDOWN_GRACE_SECONDS = 3.0


class PlatformError(DuragentError):
    """Raised by a handler when the platform refused a command; becomes `command_error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PlatformUnreachable(PlatformError):
    """The platform cannot be reached (the network is down, its servers fail): a condition that
    passes. Raised by `on_start`, it fails startup with a fatal `error` of code `not_connected`,
    which Duragent keeps retrying instead of counting it toward a crash loop."""

    def __init__(self, message: str) -> None:
        super().__init__("not_connected", message)


def int_setting(
    config: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """Whole-number setting `key` of a plugin's `config:` map (absent: `default`).

    Anything else (`soon`, `8080a`, an empty value, out of range) is a ConfigError naming the key,
    so the plugin's startup error says which line of duragent.yaml to fix.
    """
    value = config.get(key, default)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    bounds = f"from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
    if number is None or number < minimum or (maximum is not None and number > maximum):
        raise ConfigError(f"`{key}` must be a whole number {bounds}, not {value!r}")
    return number


def seconds_setting(config: Mapping[str, Any], key: str, default: float, *, maximum: float) -> float:
    """Duration setting `key` of a plugin's `config:` map in seconds (`1s`, `200ms`, `2m`, or a
    number of seconds; absent: `default`), above 0 and at most `maximum`.

    Anything else is a ConfigError naming the key, like `int_setting`'s.
    """
    value = config.get(key, default)
    try:
        seconds = parse_duration(value).total_seconds()
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= maximum:
        most = format_duration(timedelta(seconds=maximum))
        raise ConfigError(
            f"`{key}` must be a duration above 0 and at most {most} (like 1s or 500ms), not {value!r}"
        )
    return seconds


def doubling_wait(first: float, failures: int, most: float) -> float:
    """Seconds to wait after the `failures`-th failure in a row: `first` doubling up to `most`,
    each within 20% either way, so many bots do not retry in lockstep."""
    return min(most, first * 2.0 ** min(failures - 1, 30)) * random.uniform(0.8, 1.2)


def refuse_unknown_keys(config: Mapping[str, Any], known: Iterable[str]) -> None:
    """A ConfigError for the first key of `config` not in `known`, with the closest known key.

    A key the plugin does not read is a typo (`http_prot`) it would otherwise silently ignore,
    running on its default while the operator believes the setting took.
    """
    names = list(known)
    for key in config:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise ConfigError(
                f"unknown key `{key}` in the gateway's config: {hint}(it takes {', '.join(names)})"
            )


class SecretRedactor(logging.Filter):
    """Replaces secrets (bot tokens) in every log record, whoever logs it (the platform library, us)."""

    def __init__(self, *secrets: str, placeholder: str = "<bot-token>"):
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)
        self.placeholder = placeholder

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by the placeholder."""
        for secret in self.secrets:
            text = text.replace(secret, self.placeholder)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True

    def install(self) -> None:
        """Filter every handler of the root logger (where the plugin's stderr logging goes)."""
        for handler in logging.getLogger().handlers:
            handler.addFilter(self)


class GatewayPlugin:
    """Base class of a gateway plugin process; override the `on_*` handlers you support."""

    name: str = "gateway"
    capabilities: tuple[str, ...] = ()
    #: Sent in `ready`: what people type before a chat command here (set it in `on_start` when it
    #: names the bot, `@duragent `); empty where `/reset` can be typed as it is.
    command_prefix: str = ""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        #: Whose messages the server could answer (None: it did not say, as older servers):
        #: see `may_be_answered`. Kept current by the server's `admission` commands.
        self.admission: Admission | None = None
        self.log = logging.getLogger(f"duragent.gateway.{self.name}")
        self.__started_at = time.monotonic()
        self.__write_lock: asyncio.Lock | None = None
        self.__out: BinaryIO = sys.stdout.buffer
        self.__stopping: asyncio.Event | None = None
        self.__stop_reason = "stopped"
        self.__failed = False  # exit non-zero once stopped (`restart: on_failure` restarts it)
        self.__chat_queues: dict[str, asyncio.Queue[Command]] = {}
        self.__tasks: set[asyncio.Task[None]] = set()
        self.__started = False  # `ready` sent

    # ---------------------------------------------------------------- handlers to override

    async def on_configure(self, config: dict[str, Any]) -> None:
        """Receive the `config:` map from duragent.yaml (before `on_start`); stored as `self.config`."""
        self.config = config

    async def on_start(self) -> None:
        """Connect to the platform; `ready` is sent when this returns (raise to fail startup).

        Stopped meanwhile (`shutdown`, SIGTERM, stdin EOF), it is cancelled: clean up in its
        `finally`, as on_shutdown is called only for a plugin that started.
        """

    async def on_send_message(self, cmd: SendMessage) -> str | int | None:
        """Send text; return the platform message id (a number is sent as its string)."""
        raise PlatformError("not_implemented", "send_message is not supported")

    async def on_send_media(self, cmd: SendMedia) -> str | int | None:
        """Send a photo or file; return the platform message id (a number is sent as its string)."""
        raise PlatformError("not_implemented", "send_media is not supported")

    async def on_send_typing(self, cmd: SendTyping) -> None:
        """Show a typing indicator (best effort: errors are only logged)."""

    async def on_edit_message(self, cmd: EditMessage) -> None:
        """Replace a sent message's text."""
        raise PlatformError("not_implemented", "edit_message is not supported")

    async def on_delete_message(self, cmd: DeleteMessage) -> None:
        """Delete a message."""
        raise PlatformError("not_implemented", "delete_message is not supported")

    async def on_answer_callback_query(self, cmd: AnswerCallbackQuery) -> None:
        """Acknowledge a button press (show `cmd.text` as a toast if given)."""

    async def on_shutdown(self) -> None:
        """Disconnect from the platform; called once, after in-flight commands finished."""

    def may_be_answered(self, routing: Mapping[str, Any]) -> bool:
        """Whether a message with this `routing` could reach an agent; False for a stranger.

        Check it before fetching a file the message carries: a stranger's message must cost the
        bot nothing (it is passed on without the file, and the server turns it away). True when
        the server did not say whom it answers."""
        return self.admission is None or self.admission.admits(routing)

    def is_connected(self) -> bool:
        """Whether the platform is reachable right now (reported in `pong`)."""
        return True

    # ---------------------------------------------------------------- emitting events

    async def emit(self, event: Event) -> None:
        """Write one event line to stdout (safe to call from any task)."""
        if self.__write_lock is None:
            self.__write_lock = asyncio.Lock()
        line = encode(event)
        async with self.__write_lock:
            # A thread keeps a slow reader on the other end from blocking the event loop.
            await asyncio.to_thread(self.__write_line, line)

    def __write_line(self, line: bytes) -> None:
        try:
            self.__out.write(line)
            self.__out.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            self.log.warning("cannot write to Duragent (%s); stopping", exc)
            self.request_stop("stdout closed")

    async def message_received(self, **fields: Any) -> None:
        """Emit `message_received` built from keyword fields (nested models or plain dicts)."""
        _warn_unknown_fields(self.log, MessageReceived, fields)
        await self.emit(MessageReceived.model_validate(fields))

    async def callback_query(self, **fields: Any) -> None:
        """Emit `callback_query` built from keyword fields."""
        _warn_unknown_fields(self.log, CallbackQuery, fields)
        await self.emit(CallbackQuery.model_validate(fields))

    async def error(self, code: str, message: str, *, fatal: bool = False) -> None:
        """Emit an `error` event not tied to a command. The host logs it (a fatal one once, with
        the restart it leads to), so the plugin need not log it too."""
        await self.emit(Error(code=code, message=message, fatal=fatal))

    @property
    def uptime_seconds(self) -> int:
        """Whole seconds since the plugin object was created."""
        return int(time.monotonic() - self.__started_at)

    def request_stop(self, reason: str = "stopped", *, failed: bool = False) -> None:
        """Begin a graceful shutdown (as if `shutdown` had been received); with `failed`, the
        process then exits 1, so `restart: on_failure` starts it again (a receive loop that died
        of something unforeseen), where a stop the plugin meant (a revoked token) exits 0."""
        self.__stop_reason = reason
        self.__failed = self.__failed or failed
        if self.__stopping is not None:
            self.__stopping.set()

    # ---------------------------------------------------------------- running

    def run(self) -> None:
        """Run the plugin on this process's stdin/stdout until shutdown; exits non-zero on failure."""
        if not logging.getLogger().handlers:
            logging.basicConfig(
                stream=sys.stderr,
                level=os.environ.get("DURAGENT_LOG_LEVEL", "INFO").upper(),
                format=f"%(asctime)s %(levelname)s [{self.name}] %(message)s",
            )
        protocol_out = sys.stdout.buffer
        # stdout carries only protocol lines: a stray print() (the plugin's, or a library's) goes
        # to the log instead of corrupting them.
        sys.stdout = sys.stderr
        code = asyncio.run(self.serve(sys.stdin.buffer, protocol_out))
        if code:
            raise SystemExit(code)

    async def serve(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """Speak the protocol over the given binary streams; returns the process exit code."""
        self.__out = stdout
        self.__stopping = asyncio.Event()
        self.__write_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        reader = await _open_reader(stdin)
        commands: asyncio.Queue[Command | None] = asyncio.Queue()
        pump = asyncio.create_task(self.__pump(reader, commands))
        try:
            return await self.__lifecycle(commands)
        finally:
            pump.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)

    async def __lifecycle(self, commands: asyncio.Queue[Command | None]) -> int:
        assert self.__stopping is not None
        configure: Configure | None = None
        if os.environ.get(CONFIGURE_ENV) == "1":
            first = await self.__next(commands)
            if first is None:
                return 0
            if isinstance(first, Configure):
                configure = first
            else:
                self.log.warning("expected `configure` first, got %r; starting unconfigured", first.type)
                await commands.put(first)  # handle it after `ready`, in order
        starting = asyncio.ensure_future(self.__start(configure))
        stopper = asyncio.ensure_future(self.__stopping.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not starting.done():
            # Stopped while connecting (a platform that does not answer): on_start is cancelled,
            # so its own cleanup runs and the plugin exits now, not at Duragent's SIGKILL.
            starting.cancel()
            await asyncio.wait({starting})
        if starting.cancelled():
            self.log.info("stopped while starting (%s)", self.__stop_reason)
            await self.emit(ShutdownEvent(reason=self.__stop_reason))
            return 0
        failure = starting.exception()
        if isinstance(failure, Exception):  # any startup failure is reported, then we exit 1
            # A refused setting is the operator's to fix and says it all; anything else is a bug
            # whose traceback the plugin's author needs (and whose text may be empty).
            traceback = None if isinstance(failure, DuragentError) else failure
            if isinstance(failure, PlatformUnreachable):
                code, reason = failure.code, failure.message
            else:
                code, reason = "startup_failed", _describe(failure)
            # (the host logs the error it is sent, naming the variables behind the settings;
            # a line here too would say it twice on each restart)
            self.log.log(
                logging.ERROR if traceback else logging.DEBUG,
                "startup failed: %s",
                reason,
                exc_info=traceback,
            )
            await self.error(code, reason, fatal=True)
            return 1
        if failure is not None:
            raise failure
        self.__started = True
        await self.emit(
            Ready(
                gateway=self.name,
                version=PROTOCOL_VERSION,
                capabilities=list(self.capabilities),
                command_prefix=self.command_prefix,
            )
        )
        while True:
            command = await self.__next(commands)
            if command is None or isinstance(command, Shutdown):
                if isinstance(command, Shutdown):
                    self.__stop_reason = "shutdown requested"
                break
            self.__dispatch(command)
        await self.__finish()
        return 1 if self.__failed else 0

    async def __start(self, configure: Configure | None) -> None:
        """on_configure then on_start: a config refused in on_configure (a typo'd key) is a
        startup failure like any other, one fatal error naming it, not a traceback and a bare exit."""
        if configure is not None:
            self.admission = configure.admission
            await self.on_configure(configure.config)
        await self.on_start()

    async def __next(self, commands: asyncio.Queue[Command | None]) -> Command | None:
        """The next command, or None once stop was requested or stdin reached EOF."""
        assert self.__stopping is not None
        getter = asyncio.ensure_future(commands.get())
        stopper = asyncio.ensure_future(self.__stopping.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def __pump(self, reader: asyncio.StreamReader, commands: asyncio.Queue[Command | None]) -> None:
        async for line in iter_lines(reader, on_oversize=self.__log_oversize):
            try:
                command = parse_command(line)
            except ProtocolError as exc:
                self.log.warning("skipping a command line: %s", exc)
                continue
            if isinstance(command, Ping):
                # Answered here, not queued, so liveness never waits behind a slow send.
                pong = Pong(
                    request_id=command.request_id,
                    uptime_seconds=self.uptime_seconds,
                    connected=self.is_connected(),
                )
                self.__spawn(self.emit(pong))
                continue
            if isinstance(command, Shutdown) and not self.__started:
                self.request_stop("shutdown requested")  # nothing else is read before `ready`
            await commands.put(command)
        self.__stop_reason = "stdin closed"
        await commands.put(None)
        if not self.__started:
            self.request_stop("stdin closed")

    def __log_oversize(self, size: int) -> None:
        self.log.warning("skipping an oversized command line (%d bytes)", size)

    def __spawn(self, work: Awaitable[None]) -> None:
        async def wrapper() -> None:
            await work

        task = asyncio.create_task(wrapper())
        self.__tasks.add(task)
        task.add_done_callback(self.__tasks.discard)

    def __dispatch(self, command: Command) -> None:
        chat_id = getattr(command, "chat_id", None)
        if chat_id is None:
            self.__spawn(self.__handle(command))
            return
        queue = self.__chat_queues.get(chat_id)
        if queue is None:
            queue = asyncio.Queue()
            self.__chat_queues[chat_id] = queue
            self.__spawn(self.__chat_worker(chat_id, queue))
        queue.put_nowait(command)

    async def __chat_worker(self, chat_id: str, queue: asyncio.Queue[Command]) -> None:
        """Handle one chat's commands in arrival order; ends when the queue runs dry."""
        while True:
            try:
                command = queue.get_nowait()
            except asyncio.QueueEmpty:
                del self.__chat_queues[chat_id]
                return
            await self.__handle(command)

    async def __handle(self, command: Command) -> None:
        request_id: str | None = getattr(command, "request_id", None)
        answer: CommandOk | CommandError
        try:
            message_id = _message_id_text(command.type, await self.__call_handler(command))
            answer = CommandOk(request_id=request_id or "", message_id=message_id)
        except PlatformError as exc:
            self.log.warning("%s failed: %s", command.type, exc)
            answer = CommandError(request_id=request_id or "", code=exc.code, message=exc.message)
        except Exception as exc:  # a handler bug must answer, not leave Duragent waiting
            self.log.exception("%s failed", command.type)
            answer = CommandError(request_id=request_id or "", code="platform_error", message=_describe(exc))
        if request_id is not None:
            await self.emit(answer)

    async def __call_handler(self, command: Command) -> str | int | None:
        handlers: dict[type[Any], Callable[[Any], Awaitable[str | int | None]]] = {
            SendMessage: self.on_send_message,
            SendMedia: self.on_send_media,
            SendTyping: self.on_send_typing,
            EditMessage: self.on_edit_message,
            DeleteMessage: self.on_delete_message,
            AnswerCallbackQuery: self.on_answer_callback_query,
            Configure: self.__reconfigure,
            Admission: self.__admit,
        }
        handler = handlers.get(type(command))
        if handler is None:
            raise PlatformError("invalid_request", f"unexpected command {command.type!r}")
        if isinstance(command, SendTyping):
            try:
                await self.on_send_typing(command)
            except (PlatformError, OSError) as exc:
                self.log.info("typing indicator failed: %s", exc)
            return None
        return await handler(command)

    async def __reconfigure(self, command: Configure) -> None:
        if command.admission is not None:
            self.admission = command.admission
        await self.on_configure(command.config)

    async def __admit(self, command: Admission) -> None:
        self.admission = command

    async def __finish(self) -> None:
        """Let in-flight commands finish (bounded), then on_shutdown, then `shutdown`."""
        if self.__tasks:
            _, pending = await asyncio.wait(set(self.__tasks), timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        try:
            await self.on_shutdown()
        finally:
            await self.emit(ShutdownEvent(reason=self.__stop_reason))


def _message_id_text(command: str, message_id: object) -> str | None:
    """A handler's returned message id as the protocol's string (platforms often number them)."""
    if message_id is None or isinstance(message_id, str):
        return message_id
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        return str(message_id)
    raise TypeError(
        f"on_{command} returned {message_id!r}: return the platform's message id as a string, or None"
    )


def _warn_unknown_fields(
    log: logging.Logger, model: type[MessageReceived | CallbackQuery], fields: Mapping[str, Any]
) -> None:
    """Log a field the event does not have (a typo Duragent ignores), with the one it likely meant."""
    names = [name for name in model.model_fields if name != "type"]
    for key in fields:
        if key not in names and (model.__name__, key) not in _WARNED_FIELDS:
            _WARNED_FIELDS.add((model.__name__, key))
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            log.warning("%s has no field `%s`%s: Duragent ignores it", model.__name__, key, hint)


#: (event, field) pairs already warned about: once each, not on every message.
_WARNED_FIELDS: set[tuple[str, str]] = set()


def _describe(exc: BaseException) -> str:
    """An exception's text, or its class name when it has none (`TimeoutError()`)."""
    return str(exc) or type(exc).__name__


async def _open_reader(stream: BinaryIO) -> asyncio.StreamReader:
    """An asyncio reader over `stream`: a pipe transport when possible, else a feeding thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    except (ValueError, OSError):
        # Regular files and some terminals can't be pipe transports; read them in a thread.
        threading.Thread(target=_feed, args=(stream, reader, loop), daemon=True).start()
    return reader


def _feed(stream: BinaryIO, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
    # A stream closed under us (OSError/ValueError) is EOF like any other.
    with contextlib.suppress(OSError, ValueError):
        while chunk := stream.read(64 * 1024):
            loop.call_soon_threadsafe(reader.feed_data, chunk)
    with contextlib.suppress(RuntimeError):  # loop already closed at interpreter exit
        loop.call_soon_threadsafe(reader.feed_eof)
