"""A platform fake run by hand (`python -m duragent.testing.fake_... --user ID`) with pipes: type
lines into its console and wait for what it prints (shared by the fakes' console tests)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any


class ConsoleProcess:
    """`python -m <module> <args>` with its stdin and stdout piped."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        #: Every line it printed so far.
        self.printed: list[str] = []

    @classmethod
    async def start(cls, module: str, *args: str) -> ConsoleProcess:
        """Run the module (`--port 0` is up to the caller)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def type(self, line: str) -> None:
        """Type one line, as a person at the console would."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def printed_line(self, containing: str, within: float = 30.0) -> str:
        """The first line printed (already or next) that contains `containing`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while not any(containing in line for line in self.printed):
                line = await self.process.stdout.readline()
                if not line:
                    raise EOFError(f"the console exited; it printed:\n{''.join(self.printed)}")
                self.printed.append(line.decode(errors="replace"))
        return next(line for line in self.printed if containing in line)

    async def stop(self) -> int:
        """Interrupt it (SIGTERM, as Ctrl-C would) and return its exit code."""
        if self.process.returncode is None:
            self.process.terminate()
        return await self.process.wait()


@dataclass
class Exchange:
    """What `dm_and_press` saw: the plugin's event for the typed line, the console's line listing
    the buttons, the plugin's event for the press, and the console's line with its answer."""

    received: dict[str, Any]
    buttons: str
    pressed: dict[str, Any]
    answer: str


async def dm_and_press(console: ConsoleProcess, plugin: Any, typed: str) -> Exchange:
    """Type `typed` at the console; have the plugin (`start_ready_plugin`'s) answer it with an
    "Allow once" button; press it at the console; answer the press with "Running"."""
    await console.type(typed)
    received = await plugin.event("message_received", within=15)
    keyboard = {"rows": [[{"text": "Allow once", "callback_data": "approve:c1:allow_once"}]]}
    await plugin.request(
        {
            "type": "send_message",
            "chat_id": received["chat_id"],
            "content": "May I run **ls**?",
            "reply_to": received["message_id"],
            "inline_keyboard": keyboard,
        }
    )
    buttons = await console.printed_line("[1] Allow once")
    await console.type("/press 1")
    pressed = await plugin.event("callback_query", within=15)
    answer = {"callback_query_id": pressed["callback_query_id"], "text": "Running"}
    await plugin.request({"type": "answer_callback_query", **answer})
    return Exchange(received, buttons, pressed, await console.printed_line("Running"))
