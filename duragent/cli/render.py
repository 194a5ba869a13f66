"""How a session looks in a terminal: streamed tokens, Markdown replies, tool lines, approvals.

On a TTY: a spinner while the model thinks, tokens as they arrive, the finished reply re-drawn
as Markdown (rich) when it fits on the screen, colours unless NO_COLOR. Anywhere else (a pipe,
a file): plain text, one thing per line, no escape codes, so the output greps and pipes well.
Only the standard library is imported here; rich is loaded when a reply is drawn as Markdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import unicodedata
from typing import Any, TextIO

from duragent.terminal_text import printable

#: What the terminal says under a reply the model cut off at its output token limit.
TRUNCATED = "the reply was cut off at the model's output token limit (model.max_output_tokens)"
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_INTERVAL = 0.08
#: Columns between a terminal's tab stops.
TAB_STOP = 8
#: Longest the arguments of a tool line get before they are cut with "…".
TOOL_ARGUMENTS_WIDTH = 60
#: Signs that a reply is Markdown worth re-drawing (plain prose is left as streamed).
_MARKDOWN_SIGNS = ("```", "**", "__", "# ", "\n- ", "\n* ", "\n1. ", "`", "|", "](", "> ")
_STYLES = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def short_arguments(tool: str, arguments: dict[str, Any], width: int = TOOL_ARGUMENTS_WIDTH) -> str:
    """A tool call's arguments in one short line: the command of bash-like tools, else key=value."""
    for key in ("command", "cmd", "path", "query", "url", "action"):
        value = arguments.get(key)
        if isinstance(value, str) and value:
            text = value if len(arguments) == 1 or key == "command" else _pairs(arguments)
            break
    else:
        text = _pairs(arguments)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _pairs(arguments: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items()
    )


def rows_used(text: str, columns: int) -> int:
    """Terminal rows `text` occupies when written from column 0 on a screen `columns` wide."""
    return sum(_line_rows(line, max(columns, 1)) for line in text.split("\n"))


def _line_rows(line: str, columns: int) -> int:
    """Rows of one line: a tab moves to the next tab stop but never past the last column (it
    does not wrap), and a wide character that does not fit at the end of a row starts the next."""
    rows, column = 1, 0
    for char in line:
        if char == "\t":
            if column < columns:
                column = min((column // TAB_STOP + 1) * TAB_STOP, columns - 1)
            continue
        width = 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if column + width > columns:
            rows, column = rows + 1, 0
        column += width
    return rows


def fit(text: str, cells: int) -> str:
    """`text` cut with "…" to take at most `cells` terminal columns (one line, no tabs)."""
    used = 0
    for at, char in enumerate(text):
        used += 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if used > cells:
            return text[: max(at - 1, 0)] + "…" if cells > 0 else ""
    return text


def looks_like_markdown(text: str) -> bool:
    """Whether re-drawing `text` as Markdown would change how it looks."""
    return any(sign in "\n" + text for sign in _MARKDOWN_SIGNS)


class Renderer:
    """Writes a session's events to a terminal (or a pipe) as a person reads them.

    (A plain class, not a dataclass: this module is imported on the way to `chat`'s prompt, where
    building a dataclass costs ~3M instructions, ~1 ms.)
    """

    def __init__(
        self,
        out: TextIO | None = None,
        tty: bool | None = None,
        color: bool | None = None,
        markdown: bool = True,
    ):
        self.out = sys.stdout if out is None else out
        self.tty = self.out.isatty() if tty is None else tty
        self.color = (bool(self.tty) and "NO_COLOR" not in os.environ) if color is None else color
        self.markdown = markdown
        self._streamed: list[str] = []
        #: Lines were printed below the streamed text (a notice: the server stopped, reconnected):
        #: it can no longer be erased by moving up over it, which would erase those lines instead.
        self._buried = False
        self._open_tool: str | None = None
        self._tool_lines: dict[str, str] = {}
        self._spinner: asyncio.Task[None] | None = None
        self._spinner_shown = False
        #: The tool of the call that started last and has no result yet (the spinner names it).
        self._running_tool: str | None = None
        self._at_line_start = True

    # --- low level ---------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Write raw text (the spinner is cleared first)."""
        if not text:
            return
        self._clear_spinner()
        self.out.write(text)
        self.out.flush()
        self._at_line_start = text.endswith("\n")

    def line(self, text: str, style: str | None = None) -> None:
        """One line of text, on a line of its own, styled when colours are on (control
        characters in it are shown as escapes: it may come from the model or a tool)."""
        self._end_open_line()
        self._buried = bool(self._streamed)
        text = printable(text)
        if style and self.color:
            codes = ";".join(_STYLES[s] for s in style.split())
            text = f"\x1b[{codes}m{text}\x1b[0m"
        self.write(text + "\n")

    def _end_open_line(self) -> None:
        self._clear_spinner()
        if self._open_tool is not None:
            self._open_tool = None
        if not self._at_line_start:
            self.write("\n")

    # --- spinner -----------------------------------------------------------------------------

    def start_spinner(self, label: str | None = None) -> None:
        """Show a spinner until the next output (TTY only): `running TOOL` while a tool call is
        open, else `thinking`."""
        if not self.tty or self._spinner is not None:
            return
        if label is None:
            label = f"running {printable(self._running_tool)}" if self._running_tool else "thinking"
        self._end_open_line()
        self._spinner = asyncio.get_running_loop().create_task(self._spin(label))

    async def _spin(self, label: str) -> None:
        for n in range(10**9):
            # One row, as wide as the terminal is now: a carriage return and `ESC [K` redraw and
            # erase only the row the cursor is on.
            columns = shutil.get_terminal_size((80, 24)).columns
            self.out.write("\r" + fit(f"{SPINNER_FRAMES[n % len(SPINNER_FRAMES)]} {label}…", columns - 1))
            self.out.flush()
            self._spinner_shown = True
            await asyncio.sleep(SPINNER_INTERVAL)

    def stop_spinner(self) -> None:
        """Remove the spinner (no-op when none runs)."""
        self._clear_spinner()

    def _clear_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.cancel()
            self._spinner = None
        if self._spinner_shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._spinner_shown = False

    # --- the conversation --------------------------------------------------------------------

    def user(self, content: str) -> None:
        """A user message (shown when replaying; typed ones are already on screen)."""
        first, *rest = content.splitlines() or [""]
        self.line(f"> {first}", "bold")
        for more in rest:
            self.line(f"  {more}", "bold")

    def token(self, text: str) -> None:
        """A piece of the reply, written as it arrives."""
        if self._open_tool is not None or (not self._streamed and not self._at_line_start):
            self._end_open_line()
        text = printable(text)
        self._streamed.append(text)
        self.write(text)

    def reply(self, content: str, *, final: bool = True) -> None:
        """The assistant's message is complete: re-draw streamed text as Markdown, or print it whole."""
        streamed, erasable = "".join(self._streamed), not self._buried
        self._streamed.clear()
        self._buried = False
        if not streamed:
            if content.strip():
                self._end_open_line()
                self._print_reply(content)
            return
        redraw = final and self.tty and self.markdown and erasable and looks_like_markdown(content)
        if redraw and self._erase(streamed):
            self._print_reply(content)
            return
        if not self._at_line_start:
            self.write("\n")

    def streaming(self) -> bool:
        """Whether reply text was streamed since the last complete message."""
        return bool(self._streamed)

    def discard_streamed(self) -> None:
        """The text streamed since the last message came from an attempt that died
        (`attempt_restarted`): erase it, or say it is void when it can no longer be erased."""
        streamed, erasable = "".join(self._streamed), not self._buried
        self._streamed.clear()
        self._buried = False
        self._clear_spinner()
        if not streamed or (self.tty and erasable and self._erase(streamed)):
            return
        self.line("↻ the reply restarted; the text above is void", "dim")

    def _erase(self, streamed: str) -> bool:
        """Move the cursor back over `streamed` and clear it; False when it scrolled off the screen."""
        size = shutil.get_terminal_size((80, 24))
        rows = rows_used(streamed, size.columns)
        if rows >= size.lines - 1:
            return False
        up = rows - 1
        self.write("\r" + (f"\x1b[{up}A" if up else "") + "\x1b[J")
        self._at_line_start = True
        return True

    def _print_reply(self, content: str) -> None:
        content = printable(content)
        if not (self.tty and self.markdown):
            self.write(content if content.endswith("\n") else content + "\n")
            return
        from rich.console import Console
        from rich.markdown import Markdown

        console = Console(
            file=self.out, force_terminal=True, no_color=not self.color, highlight=False, soft_wrap=False
        )
        console.print(Markdown(content))
        self._at_line_start = True

    def tool_call(self, call_id: str, tool: str, arguments: dict[str, Any]) -> None:
        """A tool call starts: on a TTY a spinner says `running TOOL` until `tool_result` writes its line."""
        self.known_call(call_id, tool, arguments)
        self._running_tool = tool
        if self.tty:
            # The spinner names the tool while it runs; its line is written whole with the outcome.
            self._end_open_line()
            with contextlib.suppress(RuntimeError):  # no event loop: no spinner
                self.start_spinner()

    def known_call(self, call_id: str, tool: str, arguments: dict[str, Any]) -> None:
        """Remember what a call does, for its result's line (its `tool_call` may predate the replay:
        an approval asked before this terminal attached names it too)."""
        text = f"⚙ {tool} {short_arguments(tool, arguments)}".rstrip()
        if not text.endswith("…"):  # cut arguments already end in one
            text += " …"
        self._tool_lines[call_id] = text

    def tool_result(
        self, call_id: str, tool: str, ok: bool, duration_ms: int | None, content: str = ""
    ) -> None:
        """A tool call ended: `ok 12 ms`, `failed 3 ms`, `denied` or `cancelled` (a call the
        runtime stopped shows no time: one a crash left open has no duration to show, and a
        cancelled one's `duration_ms` is how long it ran before it was stopped)."""
        outcome = "ok" if ok else "failed"
        if not ok and content.startswith(("denied", "cancelled")):
            outcome = content.split(":", 1)[0].split()[0]
        timed = duration_ms is not None and outcome in ("ok", "failed")
        verdict = f"{outcome} {duration_ms} ms" if timed else outcome
        if outcome == "failed" and (reason := _failure_reason(content)):
            verdict += f": {reason}"  # (an interrupted call, arguments not JSON, `[exit code 1]`)
        style = "green" if ok else "red"
        head = self._tool_lines.pop(call_id, f"⚙ {tool} …")
        self._running_tool = None
        if self.tty and self._open_tool == call_id:
            self._open_tool = None
            self.write(" " + self._styled(verdict, style) + "\n")
        else:
            self.line(f"{head} {verdict}", style if self.color else None)

    def approval(self, tool: str, command: str) -> None:
        """A tool call waits for a decision."""
        self.line(f"⚠ approval needed: {tool} {command}".rstrip(), "yellow bold")

    def notice(self, text: str) -> None:
        """Something about the session (status changes, hints)."""
        self.line(text, "dim")

    def error(self, text: str) -> None:
        """A failed turn or request."""
        self.line(text, "red")

    def _styled(self, text: str, style: str) -> str:
        if not self.color:
            return text
        codes = ";".join(_STYLES[s] for s in style.split())
        return f"\x1b[{codes}m{text}\x1b[0m"

    def close(self) -> None:
        """Finish any open line and stop the spinner."""
        with contextlib.suppress(RuntimeError):
            self._end_open_line()


#: How much of a failed tool call's reason its line shows.
_REASON_CHARS = 80


def _failure_reason(content: str) -> str:
    """The last line a failed call's result has (a tool's last words, `[exit code 1]`, why the
    runtime stopped it), safe for a terminal and cut to `_REASON_CHARS`."""
    from duragent.terminal_text import printable, shortened

    last = next((line.strip() for line in reversed(content.splitlines()) if line.strip()), "")
    return shortened(printable(last), _REASON_CHARS)
