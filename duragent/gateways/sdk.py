"""The plugin SDK: subclass GatewayPlugin, fill in the handlers, call `run()`.

The base class owns the stdio framing: it reads commands from stdin, calls the matching
`on_*` handler, answers `command_ok` / `command_error`, answers `ping` with `pong`, and shuts
down gracefully on a `shutdown` command, stdin EOF (Duragent went away) or SIGTERM.
Commands for one chat are handled in order (so chunks of a long reply stay ordered); chats
are handled concurrently. Logs go to stderr; stdout carries only protocol lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, BinaryIO

from duragent.errors import ConfigError, DuragentError
from duragent.gateways.framing import iter_lines
from duragent.gateways.protocol import (
    PROTOCOL_VERSION,
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
#: How long in-flight commands may take to finish once shutdown begins.
SHUTDOWN_GRACE_SECONDS = 5.0


class PlatformError(DuragentError):
    """Raised by a handler when the platform refused a command; becomes `command_error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.log = logging.getLogger(f"duragent.gateway.{self.name}")
        self._started_at = time.monotonic()
        self._write_lock: asyncio.Lock | None = None
        self._out: BinaryIO = sys.stdout.buffer
        self._stopping: asyncio.Event | None = None
        self._stop_reason = "stopped"
        self._chat_queues: dict[str, asyncio.Queue[Command]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- handlers to override

    async def on_configure(self, config: dict[str, Any]) -> None:
        """Receive the `config:` map from duragent.yaml (before `on_start`); stored as `self.config`."""
        self.config = config

    async def on_start(self) -> None:
        """Connect to the platform; `ready` is sent when this returns (raise to fail startup)."""

    async def on_send_message(self, cmd: SendMessage) -> str | None:
        """Send text; return the platform message id."""
        raise PlatformError("not_implemented", "send_message is not supported")

    async def on_send_media(self, cmd: SendMedia) -> str | None:
        """Send a photo or file; return the platform message id."""
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

    def is_connected(self) -> bool:
        """Whether the platform is reachable right now (reported in `pong`)."""
        return True

    # ---------------------------------------------------------------- emitting events

    async def emit(self, event: Event) -> None:
        """Write one event line to stdout (safe to call from any task)."""
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        line = encode(event)
        async with self._write_lock:
            # A thread keeps a slow reader on the other end from blocking the event loop.
            await asyncio.to_thread(self._write_line, line)

    def _write_line(self, line: bytes) -> None:
        try:
            self._out.write(line)
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            self.log.warning("cannot write to Duragent (%s); stopping", exc)
            self.request_stop("stdout closed")

    async def message_received(self, **fields: Any) -> None:
        """Emit `message_received` built from keyword fields (nested models or plain dicts)."""
        await self.emit(MessageReceived.model_validate(fields))

    async def callback_query(self, **fields: Any) -> None:
        """Emit `callback_query` built from keyword fields."""
        await self.emit(CallbackQuery.model_validate(fields))

    async def error(self, code: str, message: str, *, fatal: bool = False) -> None:
        """Emit an `error` event not tied to a command."""
        await self.emit(Error(code=code, message=message, fatal=fatal))

    @property
    def uptime_seconds(self) -> int:
        """Whole seconds since the plugin object was created."""
        return int(time.monotonic() - self._started_at)

    def request_stop(self, reason: str = "stopped") -> None:
        """Begin a graceful shutdown (as if `shutdown` had been received)."""
        self._stop_reason = reason
        if self._stopping is not None:
            self._stopping.set()

    # ---------------------------------------------------------------- running

    def run(self) -> None:
        """Run the plugin on this process's stdin/stdout until shutdown; exits non-zero on failure."""
        if not logging.getLogger().handlers:
            logging.basicConfig(
                stream=sys.stderr,
                level=os.environ.get("DURAGENT_LOG_LEVEL", "INFO").upper(),
                format=f"%(asctime)s %(levelname)s [{self.name}] %(message)s",
            )
        code = asyncio.run(self.serve(sys.stdin.buffer, sys.stdout.buffer))
        if code:
            raise SystemExit(code)

    async def serve(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """Speak the protocol over the given binary streams; returns the process exit code."""
        self._out = stdout
        self._stopping = asyncio.Event()
        self._write_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        reader = await _open_reader(stdin)
        commands: asyncio.Queue[Command | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(reader, commands))
        try:
            return await self._lifecycle(commands)
        finally:
            pump.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)

    async def _lifecycle(self, commands: asyncio.Queue[Command | None]) -> int:
        assert self._stopping is not None
        configure: Configure | None = None
        if os.environ.get(CONFIGURE_ENV) == "1":
            first = await self._next(commands)
            if first is None:
                return 0
            if isinstance(first, Configure):
                configure = first
            else:
                self.log.warning("expected `configure` first, got %r; starting unconfigured", first.type)
                await commands.put(first)  # handle it after `ready`, in order
        try:
            # A config refused in on_configure (a typo'd key) is a startup failure like any other:
            # one fatal error naming it, not a traceback and a bare exit.
            if configure is not None:
                await self.on_configure(configure.config)
            await self.on_start()
        except Exception as exc:  # any startup failure is reported, then we exit 1
            self.log.error("startup failed: %s", exc)
            await self.error("startup_failed", str(exc), fatal=True)
            return 1
        await self.emit(
            Ready(gateway=self.name, version=PROTOCOL_VERSION, capabilities=list(self.capabilities))
        )
        while True:
            command = await self._next(commands)
            if command is None or isinstance(command, Shutdown):
                if isinstance(command, Shutdown):
                    self._stop_reason = "shutdown requested"
                break
            self._dispatch(command)
        await self._finish()
        return 0

    async def _next(self, commands: asyncio.Queue[Command | None]) -> Command | None:
        """The next command, or None once stop was requested or stdin reached EOF."""
        assert self._stopping is not None
        getter = asyncio.ensure_future(commands.get())
        stopper = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def _pump(self, reader: asyncio.StreamReader, commands: asyncio.Queue[Command | None]) -> None:
        async for line in iter_lines(reader, on_oversize=self._log_oversize):
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
                self._spawn(self.emit(pong))
                continue
            await commands.put(command)
        self._stop_reason = "stdin closed"
        await commands.put(None)

    def _log_oversize(self, size: int) -> None:
        self.log.warning("skipping an oversized command line (%d bytes)", size)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def wrapper() -> None:
            await work

        task = asyncio.create_task(wrapper())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, command: Command) -> None:
        chat_id = getattr(command, "chat_id", None)
        if chat_id is None:
            self._spawn(self._handle(command))
            return
        queue = self._chat_queues.get(chat_id)
        if queue is None:
            queue = asyncio.Queue()
            self._chat_queues[chat_id] = queue
            self._spawn(self._chat_worker(chat_id, queue))
        queue.put_nowait(command)

    async def _chat_worker(self, chat_id: str, queue: asyncio.Queue[Command]) -> None:
        """Handle one chat's commands in arrival order; ends when the queue runs dry."""
        while True:
            try:
                command = queue.get_nowait()
            except asyncio.QueueEmpty:
                del self._chat_queues[chat_id]
                return
            await self._handle(command)

    async def _handle(self, command: Command) -> None:
        request_id: str | None = getattr(command, "request_id", None)
        try:
            message_id = await self._call_handler(command)
        except PlatformError as exc:
            self.log.warning("%s failed: %s", command.type, exc)
            if request_id is not None:
                await self.emit(CommandError(request_id=request_id, code=exc.code, message=exc.message))
            return
        except Exception as exc:  # a handler bug must answer, not leave Duragent waiting
            self.log.exception("%s failed", command.type)
            if request_id is not None:
                await self.emit(CommandError(request_id=request_id, code="platform_error", message=str(exc)))
            return
        if request_id is not None:
            await self.emit(CommandOk(request_id=request_id, message_id=message_id))

    async def _call_handler(self, command: Command) -> str | None:
        handlers: dict[type[Any], Callable[[Any], Awaitable[str | None]]] = {
            SendMessage: self.on_send_message,
            SendMedia: self.on_send_media,
            SendTyping: self.on_send_typing,
            EditMessage: self.on_edit_message,
            DeleteMessage: self.on_delete_message,
            AnswerCallbackQuery: self.on_answer_callback_query,
            Configure: self._reconfigure,
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

    async def _reconfigure(self, command: Configure) -> None:
        await self.on_configure(command.config)

    async def _finish(self) -> None:
        """Let in-flight commands finish (bounded), then on_shutdown, then `shutdown`."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        try:
            await self.on_shutdown()
        finally:
            await self.emit(ShutdownEvent(reason=self._stop_reason))


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
