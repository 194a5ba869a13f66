"""Keys typed while a turn is drawn: kept off the screen, handed to the next prompt; Ctrl-D detaches.

While events are drawn the terminal does not echo (the keys would land inside the reply) and has
no line editing (so Ctrl-D is a key, not end-of-file). The keys are read as they come and parsed
like prompt_toolkit parses them; when following ends they become the next prompt's type-ahead
(a line typed ahead, Enter included, is sent once the turn is over, as in a shell). Bracketed
paste stays on, so text pasted meanwhile is inserted whole, never sent by its newlines. Ctrl-D with
nothing typed since the last Enter leaves at once, as it does at the prompt, instead of waiting
for the turn to end. Ctrl-C still sends SIGINT (the terminal's signals stay on).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prompt_toolkit.input import Input
    from prompt_toolkit.key_binding import KeyPress


#: The terminal's bracketed paste mode (the paste arrives between markers, newlines and all).
PASTE_ON, PASTE_OFF = "\x1b[?2004h", "\x1b[?2004l"


class HeldKeys:
    """The keyboard of a terminal while a turn is drawn (POSIX, a TTY on stdin)."""

    def __init__(self, prompt_input: Input, on_detach: Callable[[], None]):
        from prompt_toolkit.input.vt100_parser import Vt100Parser

        self.fd = sys.stdin.fileno()
        self.prompt_input = prompt_input
        self.on_detach = on_detach
        self._parser = Vt100Parser(self._key)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._keys: list[KeyPress] = []
        self._typed_on_line = False
        self._saved: list[int | list[bytes | int]] | None = None

    @contextlib.contextmanager
    def held(self, *, typed: bool = False) -> Iterator[None]:
        """Hold the keyboard for the duration of the block; hand the keys on afterwards.
        `typed`: the line the keys continue already holds text (a draft), so Ctrl-D does not leave."""
        self._typed_on_line = typed
        self._start()
        try:
            yield
        finally:
            self._stop()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Give the keyboard back for a block (a question asked with prompt_toolkit) inside `held`."""
        self._stop()
        try:
            yield
        finally:
            self._start()

    def _start(self) -> None:
        import termios

        self._saved = termios.tcgetattr(self.fd)
        quiet = list(self._saved)
        local_modes = self._saved[3]
        assert isinstance(local_modes, int)
        quiet[3] = local_modes & ~(termios.ECHO | termios.ICANON)
        termios.tcsetattr(self.fd, termios.TCSANOW, quiet)
        self._paste_mode(PASTE_ON)
        asyncio.get_running_loop().add_reader(self.fd, self._read)

    def _stop(self) -> None:
        import termios

        from prompt_toolkit.input.typeahead import store_typeahead

        asyncio.get_running_loop().remove_reader(self.fd)
        self._paste_mode(PASTE_OFF)
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None
        self._parser.flush()
        store_typeahead(self.prompt_input, self._keys)
        self._keys = []

    @staticmethod
    def _paste_mode(switch: str) -> None:
        if sys.stdout.isatty():
            sys.stdout.write(switch)
            sys.stdout.flush()

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the terminal is gone (its window closed): nothing more will come
            asyncio.get_running_loop().remove_reader(self.fd)
            return
        self._parser.feed(self._decoder.decode(data))

    def _key(self, press: KeyPress) -> None:
        from prompt_toolkit.keys import Keys

        if press.key == Keys.ControlD and not self._typed_on_line:
            self.on_detach()
            return
        self._keys.append(press)
        if press.key in (Keys.ControlM, Keys.ControlJ):
            self._typed_on_line = False
        elif press.key != Keys.CPRResponse:
            self._typed_on_line = True
