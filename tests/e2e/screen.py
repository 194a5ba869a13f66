"""A terminal's screen, from what a program wrote to it: enough of a VT100 to tell what stays shown.

The terminal tests read the output of a command in a pseudo-terminal with its escape codes
removed (`tests.e2e.terminal`); what is left on screen after the cursor moved back and erased
is another thing, which only a model of the screen tells.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(
    r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b[=>()][0-9A-B]?|[\x00-\x1f]|[^\x00-\x1f\x1b]+"
)


class Screen:
    """What a VT100 terminal `columns` wide and `lines` high shows after some output (rows
    scrolled off kept): text, wrapping, tabs, carriage return, new line, cursor up and erasing.
    Other escape sequences (colours, modes) change nothing it tells."""

    def __init__(self, columns: int, lines: int) -> None:
        self.columns, self.lines = columns, lines
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, output: str) -> None:
        """Write `output` (as the terminal received it: a new line is `\r\n`)."""
        for match in _CONTROL.finditer(output):
            piece = match.group()
            if match.group(2):
                self._csi(match.group(1), match.group(2))
            elif piece == "\r":
                self.col = 0
            elif piece == "\n":
                self._down()
            elif piece == "\t":
                self.col = min((self.col // 8 + 1) * 8, self.columns - 1)
            elif piece == "\x08":
                self.col = max(self.col - 1, 0)
            elif not piece.startswith("\x1b") and piece >= " ":
                for char in piece:
                    self._put(char)

    def text(self) -> str:
        """Every row shown, top to bottom, without trailing blanks."""
        return "\n".join("".join(row).rstrip() for row in self.rows).strip("\n")

    def _put(self, char: str) -> None:
        if self.col >= self.columns:  # the pending wrap of a full row
            self.col = 0
            self._down()
        row = self.rows[self.row]
        row.extend(" " * (self.col + 1 - len(row)))
        row[self.col] = char
        self.col += 1

    def _down(self) -> None:
        self.row += 1
        if self.row == len(self.rows):
            self.rows.append([])

    def _csi(self, argument: str, final: str) -> None:
        count = int(argument) if argument.isdigit() else 1
        top = max(len(self.rows) - self.lines, 0)
        if final == "A":
            self.row = max(self.row - count, top)
        elif final == "K":
            del self.rows[self.row][self.col :]
        elif final == "J" and argument in ("", "0"):
            del self.rows[self.row][self.col :]
            del self.rows[self.row + 1 :]
