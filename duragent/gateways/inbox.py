"""Chat messages taken from a platform whose turn has not been stored yet, kept on disk.

A plugin confirms a message to its platform as soon as it passed it on (Telegram's getUpdates
offset, Slack's envelope ack), so the platform never delivers it again; the router then holds it
for the debounce window before its turn is stored in the session, and holds group talk that did
not address the bot as context for the chat's next turn while a turn runs (or while the server
stops). `PendingInbox` keeps both in `<data_dir>/gateways/pending.json` meanwhile, so a restart
(or a crash) loses none: the next start submits the turns and holds the context again.

The file is written and flushed to the disk when a message is added, before the handler
returns; saves asked for while one is being written are coalesced into one write. Dropping an
entry whose message the session stored rewrites the file at once but does not flush it: a crash
of the server leaves the dropped entry out all the same (the write is in the system's cache),
and one the machine's crash brings back is found in its session by the next start and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from duragent.gateways.protocol import MessageReceived
from duragent.stores.filesystem.atomic import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingTurn:
    """Messages of one sender in one chat, for one agent, not yet submitted as a turn."""

    gateway: str
    agent: str
    #: The texts so far, in order (joined into one turn when submitted).
    texts: tuple[str, ...]
    #: The last message: whom the turn answers and which message the reply replies to.
    message: MessageReceived

    def to_json(self) -> dict[str, object]:
        """The entry as stored in pending.json."""
        return {
            "gateway": self.gateway,
            "agent": self.agent,
            "texts": list(self.texts),
            "message": self.message.model_dump(mode="json", exclude_none=True),
        }

    @classmethod
    def from_json(cls, value: object) -> PendingTurn:
        """Parse one stored entry (ValueError naming what is wrong)."""
        if not isinstance(value, dict):
            raise ValueError("an entry is not an object")
        texts = value.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("`texts` is not a list of strings")
        try:
            message = MessageReceived.model_validate(value.get("message"))
        except ValidationError as exc:
            raise ValueError(f"`message` is not a message_received event: {exc}") from None
        return cls(str(value.get("gateway", "")), str(value.get("agent", "")), tuple(texts), message)


@dataclass(frozen=True)
class HeldContext:
    """Group talk of one chat that did not address the bot, held for the chat's next turn."""

    gateway: str
    chat_id: str
    agent: str
    #: The messages as the agent will read them (`Name: text`), in order.
    texts: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """The entry as stored in pending.json."""
        return {
            "kind": "context",
            "gateway": self.gateway,
            "chat_id": self.chat_id,
            "agent": self.agent,
            "texts": list(self.texts),
        }

    @classmethod
    def from_json(cls, value: dict[str, object]) -> HeldContext:
        """Parse one stored entry of kind `context` (ValueError naming what is wrong)."""
        texts = value.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("`texts` is not a list of strings")
        fields = [value.get(name) for name in ("gateway", "chat_id", "agent")]
        if not all(isinstance(field, str) for field in fields):
            raise ValueError("a context entry lacks `gateway`, `chat_id` or `agent`")
        return cls(str(fields[0]), str(fields[1]), str(fields[2]), tuple(texts))


PendingEntry = PendingTurn | HeldContext


def _parse_entry(value: object) -> PendingEntry:
    if isinstance(value, dict) and value.get("kind") == "context":
        return HeldContext.from_json(value)
    return PendingTurn.from_json(value)  # entries without a `kind` are turns (the first format)


class PendingInbox:
    """The stored set of pending turns and held context, rewritten whole (it is small) on every change."""

    def __init__(self, path: Path, *, redact: Callable[[Any], Any] | None = None):
        self.path = path
        #: The secret guard's: what waits here is stored as the session will store it, secrets
        #: redacted (what a restart submits from here is the redacted text, as the log holds it).
        self._redact = redact
        self._lock = asyncio.Lock()
        #: The newest body asked for and its number, the newest save that must reach the disk,
        #: and the number of the last one written.
        self._wanted = ""
        self._asked = 0
        self._asked_durable = 0
        self._written = 0

    async def save(self, entries: Sequence[PendingEntry], *, durable: bool = True) -> None:
        """Store exactly `entries` (write, rename; `durable`: flushed to the disk first).

        A save that finds another one writing waits for it, then writes the newest entries once
        for every save that waited meanwhile (flushed if any of them must be): one fsync for a
        burst of messages.
        """
        stored = [entry.to_json() for entry in entries]
        if self._redact is not None:
            stored = [self._redact(entry) for entry in stored]
        self._wanted = json.dumps(stored, ensure_ascii=False, indent=1)
        self._asked += 1
        mine = self._asked
        if durable:
            self._asked_durable = mine
        async with self._lock:
            if self._written >= mine:
                return  # a write that started after this save was asked for covered it
            asked, body = self._asked, self._wanted
            flush = self._asked_durable > self._written
            await asyncio.to_thread(write_state_file, self.path, body, durable=flush)
            self._written = asked

    async def load(self) -> list[PendingEntry]:
        """The stored entries; a file that cannot be read is set aside (renamed), never overwritten."""
        try:
            text = await asyncio.to_thread(read_state_file, self.path)
        except OSError as exc:
            log.error("gateways: cannot read %s (%s); its messages are not answered", self.path, exc)
            return []
        if not text:
            return []
        try:
            entries = json.loads(text)
            if not isinstance(entries, list):
                raise ValueError("the file is not a JSON list")
            return [_parse_entry(entry) for entry in entries]
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            with contextlib.suppress(OSError):  # left in place, it is overwritten by the next save
                await asyncio.to_thread(os.replace, self.path, aside)
            log.error(
                "gateways: %s: %s; moved it to %s, its messages are not answered", self.path, exc, aside
            )
            return []


def read_state_file(path: Path) -> str:
    """A gateway state file (pending.json, sessions.json) as text; "" when there is none yet."""
    return path.read_text(encoding="utf-8") if path.exists() else ""


def write_state_file(path: Path, body: str, *, durable: bool = True) -> None:
    """Replace a gateway state file with `body` at once: UTF-8 whatever the locale (chat text is
    anything); `durable`: flushed to the disk with its rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ignored_by_git(path.parent)
    write_atomic(path, body.encode("utf-8"), durable=durable)


def _ignored_by_git(folder: Path) -> None:
    """Ignore `folder` in the data repository: what it holds is this machine's state (which
    session each chat talks to, messages not stored yet), not history (a folder that ignores
    itself, like run/, whatever the repository's own .gitignore says)."""
    ignore = folder / ".gitignore"
    if not ignore.exists():  # (one stat a write: a folder removed meanwhile gets it again)
        ignore.write_text("*\n", encoding="utf-8")
