"""The gateway router: chat messages in, agent replies out.

For each incoming message: deduplicate by message id, pick the agent by `routes[]`, apply the
agent's `access`, handle chat commands (`/start`, `/help`, `/reset`, `/status`, also with
`@botname`), keep unaddressed group messages as context, debounce rapid messages from one
sender into one turn, and submit it to the chat's session (one per gateway, chat and agent,
kept across restarts in `<data_dir>/gateways/sessions.json`; messages waiting out the debounce
window, and context held for a chat's next turn, are kept in `pending.json`, see `inbox.py`).
Once the server stops, no message reaches a session: the sessions are closing, so what the
plugins still pass on is kept in `pending.json` and handled after the restart.

A `ChatBinding` follows each session's stream and sends the chat what it needs: a typing
indicator while a turn runs, the reply split to the platform's limit, approval buttons, errors
and `notify_user` notifications.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from duragent.agents.loader import Agent
from duragent.agents.spec import AccessSpec
from duragent.config import RouteConfig
from duragent.errors import DuragentError, NotFound
from duragent.gateways.access import admission_of, check_access, is_group, match_route, routed_agents
from duragent.gateways.chunking import TELEGRAM_LIMIT, split_message
from duragent.gateways.inbox import HeldContext, PendingInbox, PendingTurn, read_state_file, write_state_file
from duragent.gateways.protocol import (
    Admission,
    AnswerCallbackQuery,
    CallbackQuery,
    Command,
    CommandError,
    Event,
    InlineButton,
    InlineKeyboard,
    MediaContent,
    MessageReceived,
    Routing,
    SendMessage,
    SendTyping,
)
from duragent.ids import new_id
from duragent.sessions.live import LiveSession, SessionEnded, Subscription, Ticket
from duragent.sessions.manager import SessionManager
from duragent.stores.base import ArtifactMeta, ArtifactStore, SessionReadOptions

log = logging.getLogger(__name__)

#: Sends one command to a gateway (the manager's `send`).
Send = Callable[[str, Command], Awaitable[object]]

DECISION_LABELS = {"allow_once": "Allow once", "allow_always": "Allow always", "deny": "Deny"}
DECISION_TOASTS = {"allow_once": "✓ Running", "allow_always": "✓ Always allowed", "deny": "✗ Denied"}
NOT_CURRENT = "This approval is no longer current"
NOT_ASKED_HERE = (
    "Nobody in this chat asked for this command: only someone the agent takes direct messages "
    "from can approve it"
)
RESTARTING_TEXT = "The bot is restarting; send that again in a minute."
TYPING_EVERY = 4.0
#: How much of a received file is read at a time to store it as an artifact.
FILE_PIECE_BYTES = 1 << 20
RECENT_IDS = 500
#: How many chats a denied message was logged for as a warning, before warning about them afresh.
DENIED_CHATS_REMEMBERED = 10_000
#: Command errors after which a chat is not told a reply was lost: the platform takes no message
#: there at all (the bot was removed, blocked or logged out), so the notice would fail too.
UNREACHABLE_CHAT_CODES = frozenset({"chat_not_found", "unauthorized"})
#: A plugin announcing the `split` capability cuts long replies into messages itself, knowing its
#: platform (Telegram counts visible characters and closes and reopens bold across a cut); it gets
#: a reply in pieces of this size, far below the protocol's 1 MiB line limit whatever the text.
WHOLE_REPLY_LIMIT = 65_536
#: The longest name a received file is stored under: what an artifact name allows per part.
INBOX_NAME_LIMIT = 128
_UNSAFE_IN_ARTIFACT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ChatKey:
    """One session's place: a chat on a gateway, answered by one agent."""

    gateway: str
    chat_id: str
    agent: str

    def encode(self) -> str:
        """The key as stored in sessions.json."""
        return json.dumps([self.gateway, self.chat_id, self.agent])


class SessionDirectory:
    """The (gateway, chat, agent) -> session id map, persisted as one small JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self._ids: dict[ChatKey, str] = {}

    async def load(self, live_ids: set[str]) -> None:
        """Read the file, keeping only sessions that still exist and have not ended."""
        text = await asyncio.to_thread(read_state_file, self.path)
        entries: dict[str, str] = json.loads(text) if text else {}
        for encoded, session_id in entries.items():
            gateway, chat_id, agent = json.loads(encoded)
            if session_id in live_ids:
                self._ids[ChatKey(gateway, chat_id, agent)] = session_id

    def get(self, key: ChatKey) -> str | None:
        """The chat's session id, if it has one."""
        return self._ids.get(key)

    def chats(self) -> list[ChatKey]:
        """Every chat that has a session."""
        return list(self._ids)

    def keys_for_chat(self, gateway: str, chat_id: str) -> list[ChatKey]:
        """Every agent's key in one chat."""
        return [k for k in self._ids if k.gateway == gateway and k.chat_id == chat_id]

    async def set(self, key: ChatKey, session_id: str | None) -> None:
        """Remember (or forget, with None) the chat's session, durably."""
        if session_id is None:
            self._ids.pop(key, None)
        else:
            self._ids[key] = session_id
        body = json.dumps({k.encode(): v for k, v in self._ids.items()}, indent=1, sort_keys=True)
        # flushed with its rename: a chat's session must survive a power cut as its messages do
        await asyncio.to_thread(write_state_file, self.path, body)


@dataclass(frozen=True)
class PendingApproval:
    """A call of a chat's session waiting for a button press, and who may press it.

    `batch_position` (the conversation position of the assistant message that made the call, from
    the `approval_required` event) tells the call from another of the same id: models reuse ids
    (`call_0`) from one reply to the next.
    """

    call_id: str
    requester: str
    batch_position: int | None = None


def approval_ref(session_id: str, call_id: str, batch_position: int | None) -> str:
    """A short name for one call of one session, carried by its buttons.

    Not the call id itself: Telegram refuses button data over 64 bytes (a provider's call id can
    be longer), two agents answering one chat may both wait on a call named `call_0`, and one
    session's later `call_0` is another call. The same call gets the same name after a restart
    (its position in the conversation stays), so buttons sent before it still work.
    """
    position = "" if batch_position is None else str(batch_position)
    return hashlib.blake2b(f"{session_id}\0{call_id}\0{position}".encode(), digest_size=6).hexdigest()


@dataclass
class Debounce:
    """Messages from one sender waiting for the window to pass."""

    texts: list[str] = field(default_factory=list)
    message: MessageReceived | None = None
    timer: asyncio.TimerHandle | None = None


class ChatBinding:
    """Follows one session's stream and speaks for it in its chat."""

    def __init__(self, router: GatewayRouter, key: ChatKey, live: LiveSession, subscription: Subscription):
        self.router = router
        self.key = key
        self.live = live
        self.subscription = subscription
        #: Who started the running turn: (sender id, platform message id), None for a turn that
        #: did not come from this chat (an API message, a scheduled task).
        self.current: tuple[str, str | None] | None = None
        #: Pending approvals of this chat's session by button reference (`approval_ref`).
        self.approvals: dict[str, PendingApproval] = {}
        self._typing: asyncio.Task[None] | None = None
        self._task = asyncio.create_task(self._follow(), name=f"chat {key}")

    @property
    def context(self) -> list[str]:
        """Group messages kept as context while a turn ran; folded into the next submission."""
        return self.router.context.setdefault(self.key, [])

    async def close(self) -> None:
        """Stop following the session (detaches from it)."""
        self.subscription.close()
        self._stop_typing()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _follow(self) -> None:
        async for event in self.subscription:
            try:
                await self._on_event(event.event, event.data)
            except DuragentError:
                log.exception("chat %s: handling %s failed", self.key, event.event)
        self._stop_typing()

    async def _on_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "start" and not data.get("silent"):
            # Read from the turn's own message, not guessed from the order chat messages were
            # submitted in: a turn queued through the API may start between them.
            self.current = _trigger(data.get("sender"), self.key.gateway)
            self._start_typing()
        elif name == "done":
            self._stop_typing()
            await self._reply(str(data.get("content") or ""))
        elif name == "approval_required":
            self._stop_typing()
            await self._ask_approval(data)
        elif name == "error":
            self._stop_typing()
            failure = data.get("message", "unknown error")
            # (not offered for a turn that left the model nothing to answer: the server refuses it)
            retry = f"{self.router.command_prefix(self.key.gateway)}/retry"
            hint = f"\n\n{retry} runs it again." if self.live.last_turn_retryable else ""
            await self._reply(f"Error processing request: {failure}{hint}")
        elif name == "notification":
            await self._reply(str(data.get("message") or ""), reply=False)
        elif name == "turn_retried":
            self._start_typing()  # (its sender stays the failed turn's: the one to approve its calls)
        elif name == "cancelled" or (name == "status" and data.get("to") == "paused"):
            self._stop_typing()

    async def _reply(self, text: str, *, reply: bool = True) -> None:
        reply_to = self.current[1] if reply and self.current else None
        await self.router.send_text(self.key.gateway, self.key.chat_id, text.strip(), reply_to=reply_to)

    def is_current(self, approval: PendingApproval) -> bool:
        """True while the session still waits on the very call `approval` was asked for, not on an
        earlier or later call of the same id."""
        return any(
            waiting.get("call_id") == approval.call_id
            and waiting.get("batch_position") == approval.batch_position
            for waiting in self.live.log.state.pending_approvals
        )

    async def _ask_approval(self, data: dict[str, Any]) -> None:
        call_id = str(data.get("call_id"))
        requester = self.current[0] if self.current else ""
        position = data.get("batch_position")
        approval = PendingApproval(call_id, requester, position if isinstance(position, int) else None)
        # Buttons of calls answered meanwhile (through the API, a timeout, a cancel) are dropped
        # here: pressed later, they are answered as no longer current.
        self.approvals = {ref: a for ref, a in self.approvals.items() if self.is_current(a)}
        ref = approval_ref(self.live.session_id, call_id, approval.batch_position)
        self.approvals[ref] = approval
        tool = str(data.get("tool") or "")
        command = str(data.get("command") or tool)
        keyboard = InlineKeyboard(
            rows=[
                [
                    InlineButton(text=label, callback_data=f"approve:{ref}:{decision}")
                    for decision, label in DECISION_LABELS.items()
                ]
            ]
        )
        # (a tool other than bash shows its arguments: its name says what they are for)
        if tool in ("", "bash"):
            text = f"Command requires approval:\n\n{_code_block(command)}"
        elif command == tool:
            text = f"Tool {tool} requires approval (no arguments)."
        else:
            text = f"Tool {tool} requires approval:\n\n{_code_block(command)}"
        await self.router.send_text(self.key.gateway, self.key.chat_id, text, keyboard=keyboard)

    def _start_typing(self) -> None:
        if self._typing is None or self._typing.done():
            self._typing = asyncio.create_task(self._type())

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def _type(self) -> None:
        while True:
            await self.router.send(
                self.key.gateway, SendTyping(chat_id=self.key.chat_id, duration=int(TYPING_EVERY) + 1)
            )
            await asyncio.sleep(TYPING_EVERY)


class GatewayRouter:
    """Turns gateway events into session turns and session events into chat messages."""

    def __init__(
        self,
        *,
        sessions: SessionManager,
        agent_for: Callable[[str], Agent],
        routes: Sequence[RouteConfig],
        send: Send,
        directory_path: Path,
        artifacts: ArtifactStore | None = None,
        chunk_limits: dict[str, int] | None = None,
        shutting_down: Callable[[], bool] = lambda: False,
        capabilities: Callable[[str], Sequence[str]] = lambda gateway: (),
        redact: Callable[[Any], Any] | None = None,
        command_prefix: Callable[[str], str] = lambda gateway: "",
    ):
        self.sessions = sessions
        self.agent_for = agent_for
        self.routes = list(routes)
        self.send = send
        self.directory = SessionDirectory(directory_path)
        self.artifacts = artifacts
        self.chunk_limits = chunk_limits or {}
        #: What a gateway's plugin announced in its last `ready`.
        self.capabilities = capabilities
        #: What a gateway's plugin said people type before a chat command (`Ready.command_prefix`).
        self.command_prefix = command_prefix
        self.bindings: dict[ChatKey, ChatBinding] = {}
        self._debounces: dict[tuple[ChatKey, str], Debounce] = {}
        self._recent: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=RECENT_IDS)
        self._lock = asyncio.Lock()
        self.inbox = PendingInbox(directory_path.with_name("pending.json"), redact=redact)
        #: Turns flushed from their debounce window whose message the session has not stored yet.
        self._submitting: dict[int, PendingTurn] = {}
        self._tokens = iter(range(1, 1 << 62))
        #: Unaddressed group messages per chat, held for the chat's next turn (see `_keep_as_context`).
        self.context: dict[ChatKey, list[str]] = {}
        #: Running `_tell_undelivered` tasks (kept so they are not collected mid-way).
        self._notices: set[asyncio.Task[None]] = set()
        #: What each gateway's plugin was last told about whose messages may be answered.
        self._admissions: dict[str, Admission] = {}
        #: Chats a denied message was already logged as a warning for (see `_denial_level`).
        self._denied_chats: set[tuple[str, str]] = set()
        #: True once the server stops: sessions take no new turns, so pending ones stay stored.
        self.shutting_down = shutting_down

    async def start(self) -> None:
        """Restore the chat -> session map (sessions that can still take messages)."""
        summaries = await self.sessions.list_sessions()
        await self.directory.load({s.session_id for s in summaries if s.status != "ended"})

    async def submit_pending(self) -> None:
        """Submit the turns taken from chats before the last stop but never stored in a session."""
        entries = await self.inbox.load()
        turns = [entry for entry in entries if isinstance(entry, PendingTurn)]
        for held in entries:
            if isinstance(held, HeldContext):
                key = ChatKey(held.gateway, held.chat_id, held.agent)
                self.context.setdefault(key, []).extend(held.texts)
        for turn in turns:
            self._recent.append((turn.gateway, turn.message.chat_id, turn.message.message_id))
        # The session may have stored one just before the stop, ahead of pending.json's update.
        owed = [turn for turn in turns if not await self._stored_before(turn)]
        for turn in owed:
            self._start_submission(turn)
        if owed:
            log.info("gateways: answering %d message(s) received before the restart", len(owed))
        if len(owed) != len(turns):
            await self._save_pending()

    async def _stored_before(self, turn: PendingTurn) -> bool:
        """`_already_stored`, or False (answer again rather than lose it) when that cannot be read."""
        try:
            return await self._already_stored(turn)
        except DuragentError as exc:
            log.warning(
                "gateway %s: chat %s: cannot read its session: %s", turn.gateway, turn.message.chat_id, exc
            )
            return False

    async def _already_stored(self, turn: PendingTurn) -> bool:
        """Whether the chat's session holds the turn's message (its platform message id)."""
        session_id = self.directory.get(ChatKey(turn.gateway, turn.message.chat_id, turn.agent))
        if session_id is None:
            return False
        try:
            live = await self.sessions.get(session_id)
        except NotFound:
            return False
        after = max(0, live.log.state.last_seq - TRIGGER_LOOKBACK)
        kinds = frozenset({"user_message", "message_queued"})
        events = await live.log.store.read(session_id, SessionReadOptions(after_seq=after, types=kinds))
        return any(
            isinstance(sender := event.payload.get("sender"), dict)
            and sender.get("gateway") == turn.gateway
            and str(sender.get("message_id")) == turn.message.message_id
            for event in events
        )

    async def follow_chats(self) -> None:
        """Follow every chat's session now rather than at its next message.

        Called before the session manager recovers interrupted turns: a turn resumed after a
        restart (or an approval asked again) then reaches its chat like any other.
        """
        for key in self.directory.chats():
            try:
                await self._binding(key)
            except DuragentError as exc:
                log.warning(
                    "gateway %s: chat %s: cannot follow its session: %s", key.gateway, key.chat_id, exc
                )
                continue

    async def stop(self) -> None:
        """Submit nothing further (waiting messages stay in pending.json); detach from every session."""
        for pending in self._debounces.values():
            if pending.timer is not None:
                pending.timer.cancel()
        await asyncio.gather(*(binding.close() for binding in self.bindings.values()))
        self.bindings.clear()
        for notice in list(self._notices):
            notice.cancel()

    # ---------------------------------------------------------------- outgoing

    async def send_text(
        self,
        gateway: str,
        chat_id: str,
        text: str,
        *,
        reply_to: str | None = None,
        keyboard: InlineKeyboard | None = None,
        tell_failure: bool = True,
    ) -> None:
        """Send text split to the gateway's limit: reply_to on the first piece, keyboard on the last.

        A plugin that splits replies itself (`split`) gets them whole, so a cut it makes keeps
        the formatting across it; Markdown cut here could leave `**` open in both halves. If the
        platform refuses a piece (after the plugin's retries), the chat is told once, when
        `tell_failure`: else the person would wait for an answer that never comes.
        """
        if "split" in self.capabilities(gateway):
            limit = WHOLE_REPLY_LIMIT
        else:
            limit = self.chunk_limits.get(gateway, TELEGRAM_LIMIT)
        pieces = split_message(text, limit)
        answers: list[asyncio.Future[object]] = []
        for index, piece in enumerate(pieces):
            command = SendMessage(
                request_id=new_id("req"),
                chat_id=chat_id,
                content=piece,
                reply_to=reply_to if index == 0 else None,
                inline_keyboard=keyboard if index == len(pieces) - 1 else None,
            )
            answer = await self.send(gateway, command)
            if isinstance(answer, asyncio.Future):
                answers.append(answer)
        if tell_failure and answers:
            notice = asyncio.create_task(self._tell_undelivered(gateway, chat_id, answers))
            self._notices.add(notice)
            notice.add_done_callback(self._notices.discard)

    async def _tell_undelivered(
        self, gateway: str, chat_id: str, answers: list[asyncio.Future[object]]
    ) -> None:
        """Once the first piece of a reply the platform refused is known, say so in the chat (once)."""
        for answer in answers:
            try:
                result = await answer
            except ConnectionError:
                return  # dropped from a full outbox: the platform is not taking messages now
            if isinstance(result, CommandError) and result.code not in UNREACHABLE_CHAT_CODES:
                notice = f"I could not send my reply: {result.message}"
                # (never `tell_failure` here: a notice refused in turn must not beget another)
                with contextlib.suppress(ConnectionError, DuragentError):
                    await self.send_text(gateway, chat_id, notice, tell_failure=False)
                return

    # ---------------------------------------------------------------- incoming

    async def handle(self, gateway: str, event: Event) -> None:
        """Handle one event a plugin sent (messages and button presses; others are ignored)."""
        if isinstance(event, MessageReceived):
            await self._on_message(gateway, event)
        elif isinstance(event, CallbackQuery):
            await self._on_callback(gateway, event)

    async def admission(self, gateway: str) -> Admission:
        """Whose messages on `gateway` some routed agent could answer (sent to its plugin)."""

        def specs() -> list[AccessSpec]:
            found = []
            for name in routed_agents(self.routes, gateway):
                try:
                    found.append(self.agent_for(name).spec.access)
                except DuragentError:
                    continue  # its messages are dropped (and logged) when they come
            return found

        # in a thread: a cache miss reads and parses the agent's files
        admission = admission_of(gateway, await asyncio.to_thread(specs))
        self._admissions[gateway] = admission
        return admission

    async def _keep_admission_current(self, gateway: str) -> None:
        """Tell a plugin that filters by admission when an agent's `access` rules changed."""
        before = self._admissions.get(gateway)
        admission = await self.admission(gateway)
        if admission != before and "admission" in self.capabilities(gateway):
            log.info("gateway %s: who may be answered changed; telling the plugin", gateway)
            await self.send(gateway, admission)

    async def _on_message(self, gateway: str, message: MessageReceived) -> None:
        seen = (gateway, message.chat_id, message.message_id)
        if seen in self._recent:
            log.info("gateway %s: duplicate message %s ignored", gateway, message.message_id)
            return
        self._recent.append(seen)
        await self._keep_admission_current(gateway)
        agent_name = match_route(self.routes, gateway, message.routing)
        if agent_name is None:
            log.warning("gateway %s: no route for chat %s; message dropped", gateway, message.chat_id)
            return
        try:
            # in a thread: a cache miss reads and parses the agent's files
            agent = await asyncio.to_thread(self.agent_for, agent_name)
        except NotFound as exc:
            log.warning("gateway %s: route names agent %r: %s", gateway, agent_name, exc)
            return
        decision = check_access(agent.spec.access, gateway, message.routing)
        if not decision.allowed:
            # A warning the first time, so the default `duragent serve` log shows who knocked (a
            # stranger found the bot); then debug, so a busy group it may not answer cannot fill it.
            log.log(
                self._denial_level(gateway, message.chat_id),
                "gateway %s: denied message from sender %s in chat %s: %s in %s",
                gateway,
                message.sender.id,
                message.chat_id,
                decision.reason,
                agent.source,
            )
            return
        key = ChatKey(gateway, message.chat_id, agent.name)
        text = await self._text_of(agent.name, message)
        if not text.strip():
            # Nothing to answer, and a model refuses blank text: the chat would see a failed turn.
            log.info("gateway %s: message %s has no text; ignored", gateway, message.message_id)
            return
        group = is_group(message.routing.chat_type)
        addressed = message.mentions_bot or message.reply_to_bot
        unaddressed = group and agent.spec.access.groups.activation == "mention" and not addressed
        if await self._chat_command(key, message, text, unaddressed=unaddressed):
            return
        if group:
            text = f"{message.sender.label}: {text}"
            if unaddressed:
                await self._keep_as_context(key, message, text)
                return
        await self._tell_what_was_not_received(gateway, message)
        window = agent.spec.access.debounce.total_seconds()
        self._debounce(key, message, text, window)
        # Stored before the plugin's next read confirms the message to the platform (for good).
        await self._save_pending()

    def _denial_level(self, gateway: str, chat_id: str) -> int:
        """WARNING for a chat's first denied message, DEBUG for the ones after it."""
        chat = (gateway, chat_id)
        if chat in self._denied_chats:
            return logging.DEBUG
        if len(self._denied_chats) >= DENIED_CHATS_REMEMBERED:
            self._denied_chats.clear()  # a flood of new chats: warn about them afresh
        self._denied_chats.add(chat)
        return logging.WARNING

    async def _tell_what_was_not_received(self, gateway: str, message: MessageReceived) -> None:
        """Tell the sender why the file they sent did not arrive (too large, a failed download)."""
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        reason = metadata.get("download_error")
        if not isinstance(message.content, MediaContent) or not reason:
            return
        name = metadata.get("file_name") or "your file"
        notice = f"I did not receive {name}: {reason}."
        try:
            await self.send_text(gateway, message.chat_id, notice, reply_to=message.message_id)
        except (ConnectionError, DuragentError) as exc:
            log.warning(
                "gateway %s: chat %s: cannot say a file was not received: %s", gateway, message.chat_id, exc
            )

    async def _text_of(self, agent: str, message: MessageReceived) -> str:
        """The message as text for the agent; media files are stored as artifacts first."""
        text = message.text
        content = message.content
        if not isinstance(content, MediaContent):
            return text
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        file_path = metadata.get("file_path")
        note = f"[{content.media_type}]"
        if metadata.get("download_error"):
            name = metadata.get("file_name") or "file"
            note = f"[{content.media_type} {name} not received: {metadata['download_error']}]"
        elif file_path and self.artifacts is not None:
            name = metadata.get("file_name") or Path(str(file_path)).name
            try:
                file = await asyncio.to_thread(Path(str(file_path)).open, "rb")
            except OSError as exc:
                # The message still reaches the agent, saying what became of its file.
                log.warning("gateway message %s: cannot read its file: %s", message.message_id, exc)
                return f"[{content.media_type} {name} not received: {exc.strerror or exc}] {text}".strip()
            stored_as = _inbox_name(message.message_id, name)
            try:
                with file:
                    ref = await self.artifacts.put(
                        agent,
                        f"inbox/{stored_as}",
                        _file_chunks(file),
                        ArtifactMeta(
                            content_type=str(metadata.get("mime_type") or "application/octet-stream")
                        ),
                    )
            except (OSError, DuragentError) as exc:
                # A full disk or a failing store must not cost the words sent with the file.
                log.error(
                    "gateway message %s: its %s %s could not be stored as an artifact: %s",
                    message.message_id,
                    content.media_type,
                    name,
                    exc,
                )
                return f"[{content.media_type} {name} could not be stored: {exc}] {text}".strip()
            note = f"[{content.media_type} saved as artifact {ref.name} ({ref.id})]"
            if stored_as != f"{message.message_id}-{name}":
                note = f"[{content.media_type} {name} saved as artifact {ref.name} ({ref.id})]"
        return f"{note} {text}".strip()

    async def _chat_command(
        self, key: ChatKey, message: MessageReceived, text: str, *, unaddressed: bool = False
    ) -> bool:
        """Answer a chat command (True), or leave `text` to be an ordinary message (False).

        `unaddressed`: a group message that the bot answers only when addressed does not address
        it, so `/reset` there is group talk: else anyone in the group could wipe the conversation
        without a word to the bot. (`/help`, `/status` and `/retry` lose nothing and still work.)
        """
        if not text.startswith("/"):
            return False
        command, _, addressee = text.split()[0].partition("@")
        if addressee and is_group(message.routing.chat_type) and not message.mentions_bot:
            # `/reset@otherbot` in a group is another bot's command: ours carry our name, which
            # the plugin reports as `mentions_bot`.
            return False
        command = command.lower()
        if command in ("/start", "/help"):
            await self.send_text(key.gateway, key.chat_id, help_text(self.command_prefix(key.gateway)))
        elif command == "/reset":
            if unaddressed:
                return False
            await self._reset(key)
        elif command == "/status":
            await self.send_text(key.gateway, key.chat_id, await self._status(key))
        elif command == "/retry":
            await self._retry(key)
        else:
            return False  # other /words are ordinary messages
        return True

    async def _reset(self, key: ChatKey) -> None:
        if self.shutting_down():
            await self.send_text(key.gateway, key.chat_id, RESTARTING_TEXT)
            return
        if self.context.pop(key, None):
            await self._save_pending()  # (context has no message id: a restart could not tell)
        session_id = self.directory.get(key)
        if session_id is None:
            await self.send_text(key.gateway, key.chat_id, "No active session to reset.")
            return
        binding = self.bindings.pop(key, None)
        if binding is not None:
            await binding.close()
        with contextlib.suppress(NotFound):
            live = await self.sessions.get(session_id)
            await live.end("reset from chat")
        await self.directory.set(key, None)
        await self.send_text(
            key.gateway, key.chat_id, "Session reset. Send a message to start a new conversation."
        )

    async def _retry(self, key: ChatKey) -> None:
        if self.shutting_down():
            await self.send_text(key.gateway, key.chat_id, RESTARTING_TEXT)
            return
        session_id = self.directory.get(key)
        try:
            live = None if session_id is None else await self.sessions.get(session_id)
        except NotFound:
            live = None
        if live is None or live.status == "ended":
            # (not `_binding`: for a chat whose session ended, it would start a new one)
            await self.send_text(key.gateway, key.chat_id, "No active session: nothing to retry.")
            return
        try:
            binding = await self._binding(key)  # (followed, so the turn's reply reaches the chat)
            await binding.live.retry()
        except DuragentError as exc:  # nothing to retry, or the session ended: say why
            await self.send_text(key.gateway, key.chat_id, f"Cannot retry: {exc}.")

    async def _status(self, key: ChatKey) -> str:
        if self.shutting_down():
            return RESTARTING_TEXT
        session_id = self.directory.get(key)
        if session_id is None:
            return "No active session."
        try:
            live = await self.sessions.get(session_id)
        except NotFound:
            return "No active session."
        created = live.log.state.created_at
        when = created.strftime("%Y-%m-%d %H:%M UTC") if created else "unknown"
        return f"Session: {session_id}\nAgent: {key.agent}\nStatus: {live.status}\nCreated: {when}"

    async def _keep_as_context(self, key: ChatKey, message: MessageReceived, text: str) -> None:
        """Store an unaddressed group message where the next turn sees it, without replying."""
        binding = None if self.shutting_down() else await self._binding(key)
        if binding is None or self.shutting_down() or _owns_its_log(binding.live):
            # Held for the chat's next message (and in pending.json): while the server stops its
            # sessions close; and the running (or a stopped, unfinished) turn owns the log: a
            # message between a tool call and its result is refused by providers.
            self.context.setdefault(key, []).append(text)
            await self._save_pending()
            return
        await binding.live.log.append(
            "user_message",
            {
                "content": text,
                "turn": binding.live.log.state.turns,
                "sender": _sender(key.gateway, message),
                "silent": True,
            },
        )

    def _debounce(self, key: ChatKey, message: MessageReceived, text: str, window: float) -> None:
        slot = (key, message.sender.id)
        pending = self._debounces.setdefault(slot, Debounce())
        pending.texts.append(text)
        pending.message = message
        if pending.timer is not None:
            pending.timer.cancel()
        if window <= 0:
            self._flush(slot)
            return
        pending.timer = asyncio.get_running_loop().call_later(window, self._flush, slot)

    def _flush(self, slot: tuple[ChatKey, str]) -> None:
        if self.shutting_down():
            return  # stays in pending.json; the next start submits it
        pending = self._debounces.pop(slot, None)
        if pending is None or pending.message is None:
            return
        key = slot[0]
        self._start_submission(PendingTurn(key.gateway, key.agent, tuple(pending.texts), pending.message))

    def _start_submission(self, turn: PendingTurn) -> None:
        token = next(self._tokens)
        self._submitting[token] = turn
        task = asyncio.get_running_loop().create_task(self._submit_pending(token, turn))
        task.add_done_callback(_log_failure)

    async def _submit_pending(self, token: int, turn: PendingTurn) -> None:
        """Submit a turn; it leaves pending.json once the session stored its message.

        Stopped by a shutdown before that, it stays there and the next start submits it again.
        Context the chat held for it goes in front of its texts (and with it into pending.json).
        """
        key = ChatKey(turn.gateway, turn.message.chat_id, turn.agent)
        held = self.context.pop(key, None)
        if held:
            turn = replace(turn, texts=(*held, *turn.texts))
            self._submitting[token] = turn
        try:
            ticket = await self._submit(key, turn.message, "\n".join(turn.texts))
        except Exception:
            if not self.shutting_down():
                # Refused for good (its agent is gone, say): logged, not tried at every start.
                del self._submitting[token]
                await self._save_pending()  # (in no session: a restart could not tell)
            raise
        if ticket is not None:
            # Started at once, the message is stored by its turn, not before `queue` returns.
            try:
                await asyncio.shield(ticket.started)
            except asyncio.CancelledError:
                if not ticket.started.cancelled() or self.shutting_down():
                    raise  # stopped before it was stored: the next start submits it again
                # it never ran: its session ended first (a /reset), nothing is owed
        del self._submitting[token]
        if held:
            # Written now: left in pending.json, the context would be read again after a crash
            # (the turn itself is found in its session and skipped, the context cannot be).
            await self._save_pending()
        else:
            await self._save_pending(durable=False)  # (see inbox.py: found in its session)

    async def _save_pending(self, *, durable: bool = True) -> None:
        """Write pending.json as it stands now (`durable`: flushed to the disk before this returns)."""
        waiting = [
            PendingTurn(key.gateway, key.agent, tuple(pending.texts), pending.message)
            for (key, _), pending in self._debounces.items()
            if pending.message is not None
        ]
        held = [
            HeldContext(key.gateway, key.chat_id, key.agent, tuple(texts))
            for key, texts in self.context.items()
            if texts
        ]
        await self.inbox.save([*waiting, *self._submitting.values(), *held], durable=durable)

    async def _submit(self, key: ChatKey, message: MessageReceived, text: str) -> Ticket | None:
        """Queue the turn in the chat's session; its ticket unless the message is already stored."""
        binding = await self._binding(key)
        live = binding.live
        # What `queue` does next: a message that must wait (or follows a stopped turn) is stored
        # before it returns; one that starts a turn at once is stored by that turn.
        stored_by_queue = live.busy or bool(live.queued) or live.unfinished_turn
        try:
            # `queue`, not `enqueue`: a message that must wait is stored (it survives a crash),
            # and a turn stopped midway (at an approval) is taken up first, its call asked again,
            # rather than cut off by the new message.
            ticket = await live.queue(text, _sender(key.gateway, message))
        except SessionEnded:
            await self._forget(key)
            return await self._submit(key, message, text)
        return None if stored_by_queue else ticket

    async def chat_session(self, gateway: str, chat_id: str, agent: str) -> LiveSession:
        """The chat's session with `agent` (made if it has none), followed so its events reach the chat."""
        return (await self._binding(ChatKey(gateway, chat_id, agent))).live

    async def _forget(self, key: ChatKey) -> None:
        binding = self.bindings.pop(key, None)
        if binding is not None:
            await binding.close()
        await self.directory.set(key, None)

    async def _binding(self, key: ChatKey) -> ChatBinding:
        """The chat's binding, loading or creating its session on first use."""
        async with self._lock:
            binding = self.bindings.get(key)
            if binding is not None and not binding.subscription.closed:
                return binding
            live = await self._session(key)
            subscription = await live.subscribe()
            binding = ChatBinding(self, key, live, subscription)
            # A turn taken up again (after a restart, or stopped at an approval) starts with no
            # new message: it answers, and only lets approve, whoever sent the last one.
            binding.current = await _last_trigger(live, key.gateway)
            self.bindings[key] = binding
            return binding

    async def _session(self, key: ChatKey) -> LiveSession:
        session_id = self.directory.get(key)
        if session_id is not None:
            try:
                live = await self.sessions.get(session_id)
            except NotFound:
                live = None
            if live is not None and live.status != "ended":
                return live
        live = await self.sessions.create(
            key.agent, metadata={"gateway": key.gateway, "chat_id": key.chat_id}
        )
        await self.directory.set(key, live.session_id)
        log.info(
            "gateway %s: chat %s -> new session %s (%s)", key.gateway, key.chat_id, live.session_id, key.agent
        )
        return live

    # ---------------------------------------------------------------- approvals

    async def _on_callback(self, gateway: str, query: CallbackQuery) -> None:
        toast = await self._decide(gateway, query)
        await self.send(
            gateway,
            AnswerCallbackQuery(
                request_id=new_id("req"), callback_query_id=query.callback_query_id, text=toast
            ),
        )

    async def _decide(self, gateway: str, query: CallbackQuery) -> str:
        parts = query.data.split(":")
        if parts[0] != "approve" or len(parts) not in (2, 3):
            return "Unknown button"
        decision = parts[-1]
        named = parts[1] if len(parts) == 3 else None
        found = self._pending_approval(gateway, query.chat_id, named)
        if found is None:
            return "No pending approval" if named is None else NOT_CURRENT
        binding, ref = found
        pending = binding.approvals[ref]
        if not binding.is_current(pending):
            # Its call was answered elsewhere or timed out; a later call may reuse its id.
            binding.approvals.pop(ref, None)
            return NOT_CURRENT
        if pending.requester and pending.requester != query.sender.id:
            return "Only the original requester can approve this command"
        if not pending.requester and not await self._may_approve_unasked(gateway, binding, query):
            return NOT_ASKED_HERE
        binding.approvals.pop(ref, None)
        try:
            binding.live.decide(pending.call_id, decision)
        except DuragentError as exc:
            return f"Cannot decide: {exc}"
        binding._start_typing()
        return DECISION_TOASTS.get(decision, decision)

    async def _may_approve_unasked(self, gateway: str, binding: ChatBinding, query: CallbackQuery) -> bool:
        """Whether the presser may approve a call of a turn no one in the chat started (an API
        message, a scheduled task): in a group, being allowed there is not enough, as anyone in
        it could run the command; whoever the agent takes direct messages from may (its owner)."""
        try:
            agent = await asyncio.to_thread(self.agent_for, binding.live.agent.name)
        except NotFound:
            return False
        alone = Routing(channel=gateway, chat_type="dm", chat_id=query.sender.id, sender_id=query.sender.id)
        return check_access(agent.spec.access, gateway, alone).allowed

    def _pending_approval(
        self, gateway: str, chat_id: str, named: str | None
    ) -> tuple[ChatBinding, str] | None:
        """The binding and reference a button names by its `approval_ref`, or (the Rust form,
        naming nothing) the chat's pending approval.

        A button naming a call id (sent before references) names no reference: it cannot say
        which call of that id it was shown for, so it is no longer current.
        """
        for key in self.directory.keys_for_chat(gateway, chat_id):
            binding = self.bindings.get(key)
            if binding is None:
                continue
            for ref, approval in binding.approvals.items():
                if ref == named or (named is None and binding.is_current(approval)):
                    return binding, ref
        return None


def _inbox_name(message_id: str, file_name: str) -> str:
    """The artifact name (under `inbox/`) of a file received in message `message_id`.

    People's file names hold what an artifact name may not (`Rapport (été).pdf`): accents lose
    their marks, other runs of such characters become `_`, and a long name is cut keeping its
    extension, so any file can be stored; the note to the agent gives the name it was sent as.
    """
    plain = unicodedata.normalize("NFKD", f"{message_id}-{file_name}")
    plain = "".join(char for char in plain if not unicodedata.combining(char))
    name = _UNSAFE_IN_ARTIFACT_NAME.sub("_", plain).lstrip(".") or "file"
    if len(name) <= INBOX_NAME_LIMIT:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= 16:
        return f"{stem[: INBOX_NAME_LIMIT - len(extension) - 1]}.{extension}"
    return name[:INBOX_NAME_LIMIT]


def _owns_its_log(live: LiveSession) -> bool:
    """Whether a turn runs, waits, or stopped midway: a message stored now would come between."""
    return live.busy or bool(live.queued) or live.unfinished_turn or bool(live.log.state.open_tool_calls())


def help_text(command_prefix: str = "") -> str:
    """What `/help` answers, naming each command as it is typed on the platform (Slack refuses
    a bare `/reset`: there it is `@duragent /reset`, `command_prefix` "@duragent ")."""
    return (
        "Send a message to talk to the agent.\n\n"
        f"{command_prefix}/reset: start a new conversation\n"
        f"{command_prefix}/retry: run the last turn again if it failed\n"
        f"{command_prefix}/status: show this chat's session\n{command_prefix}/help: this text"
    )


def _code_block(code: str) -> str:
    """`code` fenced so that all of it shows as code, whatever backticks it holds.

    A fence is closed only by a run of at least as many backticks: one longer than any run in
    the code cannot be closed early, so no line of a command asked about can leave the block and
    be read as Markdown (a link reference definition shows nothing at all).
    """
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{code}\n{fence}"


def _sender(gateway: str, message: MessageReceived) -> dict[str, Any]:
    sender: dict[str, Any] = {"id": message.sender.id, "name": message.sender.label, "gateway": gateway}
    # Stored with the user message, so a turn resumed after a restart still knows whom it answers.
    sender["message_id"] = message.message_id
    return sender


#: How far back a restored chat looks for the message that started its last turn.
TRIGGER_LOOKBACK = 200


async def _last_trigger(live: LiveSession, gateway: str) -> tuple[str, str | None] | None:
    """(sender id, platform message id) of the last message that started a turn, from the log,
    when a chat of `gateway` sent it (as `_trigger` reads a turn's `start`)."""
    after = max(0, live.log.state.last_seq - TRIGGER_LOOKBACK)
    events = await live.log.store.read(
        live.session_id, SessionReadOptions(after_seq=after, types=frozenset({"user_message"}))
    )
    for event in reversed(events):
        if not event.payload.get("silent"):
            # (one no chat sent, an API message or a finished process's, is no one's: not the
            # person who spoke before it)
            return _trigger(event.payload.get("sender"), gateway)
    return None


def _trigger(sender: object, gateway: str | None) -> tuple[str, str | None] | None:
    """(sender id, platform message id) of a turn's message when a chat of `gateway` sent it."""
    if not isinstance(sender, dict) or "id" not in sender:
        return None
    if gateway is not None and sender.get("gateway") != gateway:
        return None
    message_id = sender.get("message_id")
    return str(sender["id"]), None if message_id is None else str(message_id)


async def _file_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    """An open file in pieces: a large upload is not held in the server's memory whole."""
    while data := await asyncio.to_thread(file.read, FILE_PIECE_BYTES):
        yield data


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("gateway message handling failed", exc_info=task.exception())
