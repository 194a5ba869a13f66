"""Chat messages taken from a platform whose turn has not been stored yet, kept on disk.

A plugin confirms a message to its platform as soon as it passed it on (Telegram's getUpdates
offset, Slack's envelope ack), so the platform never delivers it again; the router then holds it
for the debounce window before its turn is stored in the session. `PendingInbox` keeps those
messages in `<data_dir>/gateways/pending.json` meanwhile, so a restart (or a crash) in the window
loses none: the next start submits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from duragent.gateways.protocol import MessageReceived

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


class PendingInbox:
    """The stored set of pending turns, rewritten whole (it is small) on every change."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = asyncio.Lock()

    async def save(self, turns: list[PendingTurn]) -> None:
        """Store exactly `turns` (durably: write, fsync, rename)."""
        body = json.dumps([turn.to_json() for turn in turns], ensure_ascii=False, indent=1)
        async with self._lock:
            await asyncio.to_thread(_write_durably, self.path, body)

    async def load(self) -> list[PendingTurn]:
        """The stored turns; a file that cannot be read is set aside (renamed), never overwritten."""
        try:
            text = await asyncio.to_thread(_read_text, self.path)
        except OSError as exc:
            log.error("gateways: cannot read %s (%s); its messages are not answered", self.path, exc)
            return []
        if not text:
            return []
        try:
            entries = json.loads(text)
            if not isinstance(entries, list):
                raise ValueError("the file is not a JSON list")
            return [PendingTurn.from_json(entry) for entry in entries]
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            with contextlib.suppress(OSError):  # left in place, it is overwritten by the next save
                await asyncio.to_thread(os.replace, self.path, aside)
            log.error(
                "gateways: %s: %s; moved it to %s, its messages are not answered", self.path, exc, aside
            )
            return []


def _read_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _write_durably(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
