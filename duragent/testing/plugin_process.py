"""A gateway plugin run as Duragent runs it, driven line by line from a test.

    async with await PluginProcess.start(sys.executable, "my_plugin.py", config={"token": "t"}) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        answer = await plugin.request(SendMessage(request_id="r1", chat_id="42", content="hi"))

The plugin gets `DURAGENT_GATEWAY_CONFIGURE=1` and a `configure` command first, exactly as under
`duragent serve`. Its stdout is read as protocol events (a line Duragent would skip lands in
`bad_lines`), its stderr is collected as its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from duragent.gateways.protocol import (
    AnswerCallbackQuery,
    CommandError,
    CommandOk,
    Configure,
    DeleteMessage,
    EditMessage,
    Event,
    ProtocolError,
    SendMedia,
    SendMessage,
    Shutdown,
    UnknownEvent,
    encode,
    parse_event,
)
from duragent.gateways.sdk import CONFIGURE_ENV

AnyEvent = Event | UnknownEvent
#: The commands a plugin answers with `command_ok` / `command_error`.
RequestCommand = SendMessage | SendMedia | EditMessage | DeleteMessage | AnswerCallbackQuery


class PluginProcess:
    """One running plugin subprocess: write commands to it, wait for its events."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        #: Every event read so far, in order.
        self.events: list[AnyEvent] = []
        #: stdout lines that are not protocol messages (Duragent logs and skips them), with why.
        self.bad_lines: list[tuple[bytes, str]] = []
        self._log = bytearray()
        self._seen = 0  # events already offered to a `wait_for`
        self._stderr = asyncio.create_task(self._collect_stderr())

    @classmethod
    async def start(
        cls,
        *command: str,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> PluginProcess:
        """Start `command` with the server's environment plus `env`, and send `configure`."""
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {}), CONFIGURE_ENV: "1"},
            cwd=cwd,
            limit=4 * 1024 * 1024,  # read past the 1 MiB line limit, to report oversized lines
        )
        plugin = cls(process)
        await plugin.send(Configure(config=dict(config or {})))
        return plugin

    @property
    def log(self) -> str:
        """What the plugin wrote to stderr so far."""
        return self._log.decode("utf-8", "replace")

    async def send(self, command: BaseModel | bytes) -> None:
        """Write one command (a protocol model, or a raw line to test bad input)."""
        assert self.process.stdin is not None
        line = encode(command) if isinstance(command, BaseModel) else command
        self.process.stdin.write(line if line.endswith(b"\n") else line + b"\n")
        await self.process.stdin.drain()

    async def wait_for(self, predicate: Callable[[AnyEvent], bool], within: float = 5.0) -> AnyEvent:
        """The first event not yet waited past that satisfies `predicate`.

        Raises TimeoutError (with the plugin's log) when none comes within `within` seconds, and
        EOFError when the plugin closes its stdout first.
        """
        async with asyncio.timeout(within):
            while True:
                while self._seen < len(self.events):
                    event = self.events[self._seen]
                    self._seen += 1
                    if predicate(event):
                        return event
                if not await self._read_event():
                    raise EOFError(f"the plugin closed its stdout; its log:\n{self.log}")

    async def request(self, command: RequestCommand, within: float = 5.0) -> CommandOk | CommandError:
        """Send a command with a `request_id` and wait for its `command_ok` / `command_error`."""
        request_id = command.request_id
        await self.send(command)
        answer = await self.wait_for(
            lambda event: isinstance(event, CommandOk | CommandError) and event.request_id == request_id,
            within,
        )
        assert isinstance(answer, CommandOk | CommandError)
        return answer

    async def stop(self, within: float = 5.0) -> int:
        """Send `shutdown`, close stdin and wait for the exit code (SIGKILL after `within` s)."""
        if self.process.returncode is None and self.process.stdin is not None:
            with contextlib.suppress(ConnectionError):
                await self.send(Shutdown())
            self.process.stdin.close()
        return await self.wait_exit(within)

    async def wait_exit(self, within: float = 5.0) -> int:
        """Read the remaining events and wait for the exit code (SIGKILL after `within` s)."""
        try:
            async with asyncio.timeout(within):
                while await self._read_event():
                    pass
                code = await self.process.wait()
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr
        return code

    async def _read_event(self) -> bool:
        """Read stdout up to the next event (recording bad lines); False at EOF."""
        assert self.process.stdout is not None
        while True:
            try:
                line = await self.process.stdout.readline()
            except ValueError as exc:  # a line over the reader's 4 MiB limit (it is dropped)
                self.bad_lines.append((b"", str(exc)))
                continue
            if not line:
                return False
            if not line.strip():
                continue
            try:
                self.events.append(parse_event(line.rstrip(b"\n")))
            except ProtocolError as exc:
                self.bad_lines.append((line, str(exc)))
                continue
            return True

    async def _collect_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(64 * 1024):
            self._log += chunk

    async def __aenter__(self) -> PluginProcess:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
