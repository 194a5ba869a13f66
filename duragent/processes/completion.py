"""A process's end, told to the session that started it: the `[process finished]` message.

The message is queued in the owning session like a user's (stored before anything else
happens, so a crash does not lose it). In `on_disconnect: continue` mode it starts a turn at
once, attended or not; in `pause` mode with nobody attached it waits for the next client. When
the session is a chat's (Telegram, ...), the chat follows it, so the turn's reply (and a
`notify_user`) reaches the chat as well as every attached client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from duragent.durations import format_duration
from duragent.errors import DuragentError, NotFound
from duragent.processes.record import FINISHED_MARKER, ProcessRecord
from duragent.sessions.live import LiveSession, SessionEnded
from duragent.sessions.manager import SessionManager
from duragent.stores.base import SessionReadOptions, utcnow

log = logging.getLogger(__name__)

#: Finds (creating and following it if needed) a chat's session: (gateway, chat id, agent).
ChatSession = Callable[[str, str, str], Awaitable[LiveSession]]


def finished_message(record: ProcessRecord, tail: str, now: datetime | None = None) -> str:
    """What the agent reads when one of its processes ended."""
    from datetime import timedelta

    ran = format_duration(timedelta(seconds=round(record.duration_seconds(now or utcnow()))))
    name = f"{record.handle} ({record.label})" if record.label else record.handle
    lines = [
        f"{FINISHED_MARKER} {name}",
        f"command: {record.command}",
        # (a lost process's end was not seen: it ran until then at most)
        f"ran for: at most {ran}" if record.status == "lost" else f"ran for: {ran}",
        f"outcome: {record.outcome()}",
        f"exit code: {record.exit_code if record.exit_code is not None else 'unknown'}",
    ]
    if tail.strip():
        lines += ["last output:", "```", tail.rstrip("\n"), "```"]
    else:
        lines.append("(no output)")
    lines.append(
        "(Sent by the server when the background process ended, not typed by the user; "
        "use background_process log for more output.)"
    )
    return "\n".join(lines)


class SessionReporter:
    """Queues the `[process finished]` message in the process's session."""

    def __init__(self, sessions: SessionManager, chat_session: ChatSession | None = None):
        self.sessions = sessions
        self.chat_session = chat_session

    async def __call__(self, record: ProcessRecord, tail: str) -> None:
        """Deliver the message; a session that is gone or ended is logged, not retried."""
        try:
            live = await self._session(record)
        except NotFound:
            log.info("process %s ended; its session %s no longer exists", record.handle, record.session_id)
            return
        sender = {"id": f"process:{record.handle}", "name": "background_process"}
        if await _already_told(live, sender["id"]):
            # a crash came between storing the message and marking the process reported
            log.info("process %s: its end is in session %s already", record.handle, live.session_id)
            return
        try:
            ticket = await live.queue_for_client(finished_message(record, tail), sender)
        except SessionEnded:
            log.info("process %s ended after its session %s ended", record.handle, record.session_id)
            return
        if ticket is not None and not _waiting_in_log(live, sender["id"]):
            # It starts a turn at once, held in memory until that turn stores it: the process is
            # marked reported only then, or a crash meanwhile (or the turn cancelled before it
            # stored its message) would lose the end; it is reported again instead.
            await asyncio.wait({ticket.started})
            if not await _already_told(live, sender["id"]):
                raise CompletionNotStored(record.handle, live.session_id)

    async def _session(self, record: ProcessRecord) -> LiveSession:
        live = await self.sessions.get(record.session_id)
        metadata = live.log.state.metadata
        gateway, chat_id = metadata.get("gateway"), metadata.get("chat_id")
        if self.chat_session is not None and gateway and chat_id and live.status != "ended":
            # Followed by its chat, so the reply is sent there (unless /reset moved the chat on).
            chat_live = await self.chat_session(str(gateway), str(chat_id), record.agent)
            if chat_live.session_id == live.session_id:
                return chat_live
        return live


class CompletionNotStored(DuragentError):
    """The turn started for a process's end ended before it stored the message (it is tried again)."""

    def __init__(self, handle: str, session_id: str):
        super().__init__(f"session {session_id} did not store the end of process {handle}")


def _waiting_in_log(live: LiveSession, sender_id: str) -> bool:
    """True when a message from `sender_id` is stored as queued (`message_queued`) in the session."""
    for queued in live.log.state.queued:
        sender = queued.get("sender")
        if isinstance(sender, dict) and sender.get("id") == sender_id:
            return True
    return False


#: How far back a session is searched for a process's message before it is sent again.
TOLD_LOOKBACK = 500


async def _already_told(live: LiveSession, sender_id: str) -> bool:
    """True when the session's recent log holds a message from `sender_id` (queued or started), or
    the result of the agent's call that saw the process end (`wait`, its own `kill`): a crash came
    after that result was stored and before the process was marked reported."""
    after = max(0, live.log.state.last_seq - TOLD_LOOKBACK)
    types = frozenset({"message_queued", "user_message", "tool_result"})
    answer = f"process {sender_id.removeprefix('process:')} "  # (the call's result starts so)
    for event in await live.log.store.read(live.session_id, SessionReadOptions(after_seq=after, types=types)):
        if event.type == "tool_result":
            content = event.payload.get("content")
            if event.payload.get("tool") == "background_process" and str(content).startswith(answer):
                return True
            continue
        sender = event.payload.get("sender")
        if isinstance(sender, dict) and sender.get("id") == sender_id:
            return True
    return False
