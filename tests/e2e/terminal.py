"""A command of ours in a real pseudo-terminal, and what a person sees on it (escape codes removed)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pexpect

DURAGENT = [sys.executable, "-m", "duragent"]
#: Longest wait for anything to show or start: generous, so a loaded 2-core machine passes too.
PATIENCE = 60.0
#: The question the terminal asks about a tool call waiting for approval.
APPROVAL_QUESTION = r"allow once / always / deny \(y/a/n\)\?"
#: How long a prompt is given to take the keyboard once it shows.
SETTLE_SECONDS = 0.2
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|[\x08\r]")


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a client in the terminal: the test's, a fake API key, a plain terminal."""
    env = dict(os.environ)
    env.update(
        OPENAI_API_KEY="test-key",
        PROMPT_TOOLKIT_NO_CPR="1",
        NO_COLOR="1",
        DURAGENT_CLIENT_ID="terminal-one",
        TERM="xterm",
    )
    env.update(extra)
    return env


def _interruptible() -> None:
    """In the child before exec: Ctrl-C interrupts, as in a person's terminal.

    A test run started in the background by a shell without job control (`pytest ... &` in a
    script, some CI runners) inherits SIGINT ignored, and an ignored signal stays ignored across
    exec: the client would never see the Ctrl-C these tests press.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A command running in a pseudo-terminal, and everything it has shown (escapes removed)."""

    def __init__(self, args: list[str], cwd: Path, *, program: list[str] = DURAGENT, **env: str):
        self.child = pexpect.spawn(
            program[0],
            [*program[1:], *args],
            cwd=str(cwd),
            env=client_env(**env),
            encoding="utf-8",
            timeout=PATIENCE,
            dimensions=(40, 160),
            preexec_fn=_interruptible,
        )
        self.seen = ""

    def expect(self, pattern: str) -> str:
        """Wait until the screen shows `pattern` (a regex) after what was already matched."""
        deadline = time.monotonic() + PATIENCE
        while True:
            match = re.search(pattern, self.seen)
            if match:
                shown, self.seen = self.seen[: match.end()], self.seen[match.end() :]
                return shown
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} never appeared; screen so far:\n{self.seen}")
            try:
                chunk = self.child.read_nonblocking(4096, timeout=min(remaining, 0.2))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise AssertionError(
                    f"{pattern!r} never appeared before exit; screen:\n{self.seen}"
                ) from None
            self.seen += ANSI.sub("", chunk)

    def prompt(self) -> None:
        """Wait for the input prompt, then let prompt_toolkit take the keyboard."""
        self.expect("›")
        self._settle()

    def question(self) -> None:
        """Wait for the approval question (y/a/n), then let prompt_toolkit take the keyboard."""
        self.expect(APPROVAL_QUESTION)
        self._settle()

    def _settle(self) -> None:
        # prompt_toolkit draws its prompt a moment before it reads the keyboard, and gives no
        # signal that it does: a key pressed in between can be lost
        time.sleep(SETTLE_SECONDS)

    def type(self, line: str) -> None:
        self.child.send(line + "\r")

    def finish(self) -> str:
        """Everything shown until the program exits; asserts it exited with status 0."""
        rest = self.child.read()
        self.child.close()
        self.seen += ANSI.sub("", rest)
        assert self.child.exitstatus == 0, self.seen
        return self.seen
