"""A person's chat with a bot, typed by hand through a platform fake (`python -m ... --chat/--user`).

Each fake says what its chat looks like with a `ConsoleChat`: the bot's messages there (text,
buttons, deleted or not), how a typed line reaches the bot and how a button is pressed. The
console does the rest the same way for every platform: lines read from stdin are messages to
the bot, `/press N` presses the Nth button last shown, and the bot's messages are printed once
they stop changing (again when edited later), their buttons numbered.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import threading
from dataclasses import dataclass
from typing import Protocol

from duragent.testing.fake_server import FakeServer

#: How long a bot message must stay unedited before the console prints it (a streamed reply is
#: edited many times a second; a person wants its settled text once).
CONSOLE_SETTLE_SECONDS = 0.4


@dataclass(frozen=True)
class Button:
    """A button under a bot message: what it says and what pressing it sends."""

    label: str
    data: str


@dataclass(frozen=True)
class ShownMessage:
    """A bot message as the person sees it."""

    id: str
    text: str
    buttons: tuple[Button, ...] = ()
    deleted: bool = False
    #: Said after `bot` when it is printed, e.g. "only you can see this".
    note: str = ""


class ConsoleChat(Protocol):
    """One person's chat with the bot on a platform fake."""

    def bot_messages(self) -> list[ShownMessage]:
        """The bot's messages in the chat, oldest first, deleted ones included."""
        ...

    def say(self, text: str) -> None:
        """The person sends `text` to the bot."""
        ...

    def press(self, message: ShownMessage, button: Button) -> None:
        """The person presses `button` under `message`."""
        ...


async def chat_console(server: FakeServer, chat: ConsoleChat) -> None:
    """Run the chat on stdin and stdout until cancelled (it goes on printing after stdin ends)."""
    lines = _stdin_lines()
    shown: dict[str, str] = {}
    pressable: ShownMessage | None = None  # the last message shown with buttons

    async def print_settled() -> None:
        nonlocal pressable
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONSOLE_SETTLE_SECONDS):
                    await server.next_change()
                    continue
            for message in chat.bot_messages():
                looks = f"{message.text}{message.buttons}{message.deleted}"
                if pressable is not None and message.id == pressable.id:
                    # (its keyboard gone, there is nothing to press any more)
                    pressable = None if message.deleted or not message.buttons else message
                if message.deleted or shown.get(message.id) == looks:
                    continue
                _print_message(message, edited=message.id in shown)
                shown[message.id] = looks
                if message.buttons:
                    pressable = message

    printer = asyncio.create_task(print_settled())
    try:
        while (line := await lines.get()) is not None:
            pressed = re.fullmatch(r"/press\s+(\d+)", line.strip())
            buttons = pressable.buttons if pressable is not None else ()
            if pressed and pressable is not None and 1 <= int(pressed[1]) <= len(buttons):
                chat.press(pressable, buttons[int(pressed[1]) - 1])
            elif pressed:
                print(f"no button {pressed[1]} is shown", flush=True)
            elif line.strip():
                chat.say(line)
        await asyncio.Event().wait()  # stdin ended: go on serving (and printing) until interrupted
    finally:
        printer.cancel()


def _stdin_lines() -> asyncio.Queue[str | None]:
    """Lines typed (or piped) on stdin, then None at its end."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:  # a thread: stdin may be a terminal, a pipe or a file
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_stdin, name="fake-chat-console", daemon=True).start()
    return lines


def _print_message(message: ShownMessage, *, edited: bool) -> None:
    notes = ", ".join(note for note in ("edited" if edited else "", message.note) if note)
    print(f"bot{f' ({notes})' if notes else ''}: {message.text}", flush=True)
    if message.buttons:
        labels = "  ".join(f"[{n}] {button.label}" for n, button in enumerate(message.buttons, 1))
        print(f"  {labels}   (/press N)", flush=True)
