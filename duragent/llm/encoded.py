"""Request bodies that cost the new messages: each message of a conversation is encoded once.

Every turn resends the whole conversation. Encoding it again each turn, or even visiting each
message in Python, makes a turn cost more the longer the session. A provider keeps here, per
conversation, each message's text as it appears in the body's messages array, back to back in
one buffer; the next request's history is found by its first message, checked against what was
sent before in one list comparison (which runs in C), extended with what is new, and copied into
the body in one piece. (Joining a thousand small strings, then concatenating and encoding the
result, made several copies of a body of 100 KB or more every turn; past ~64 KB each such copy
is a fresh allocation the C library maps and unmaps, so the cost of a turn jumped with history.)

Once the context's window has moved halfway into what a conversation remembers, the messages
before it are forgotten, so a conversation longer than the model's context is remembered only
about twice its window. All conversations together are kept within a budget of bytes: a server
meets sessions without end, and one unloaded long ago is still remembered until that budget
is spent (then everything is forgotten and encoded again as needed).

How a message reads in the array is the provider's `MessageEncoding`: OpenAI writes one object
per message; Anthropic merges consecutive messages of one role, so a message's text depends on
the role of the message before it.
"""

from __future__ import annotations

import copy
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from duragent.llm.types import Message, ToolDefinition


def leading_system(messages: Sequence[Message]) -> int:
    """How many messages at the start are system messages (the prompt, encoded afresh each turn)."""
    lead = 0
    while lead < len(messages) and messages[lead].role == "system":
        lead += 1
    return lead


#: Bytes of encoded messages remembered per provider (the messages they came from stay alive
#: with them: about as much again, less what live sessions hold anyway).
DEFAULT_BUDGET = 8 << 20
#: What remembering one message costs beside its text (its slot, offset and index entry).
_MESSAGE_OVERHEAD = 100
#: Messages before a window's start that are kept anyway (dropping a few at a time is not worth it).
_DROP_AFTER = 64


class MessageEncoding(Protocol):
    """How messages are written into a request's messages array."""

    def opening(self, message: Message) -> str:
        """The message's text when it is the first in the array ("" leaves it out)."""

    def following(self, message: Message, previous: Message) -> str:
        """The message's text after `previous`, the last message not left out ("" leaves it out)."""

    def closing(self) -> str:
        """What ends the array's text once anything was written."""


def _offsets() -> array[int]:
    return array("q", [0])


@dataclass
class _Conversation:
    """Messages as sent in earlier requests, in order, each with its text after its predecessor.

    Message i's text (UTF-8) is `text[offsets[i] - offsets[0] : offsets[i + 1] - offsets[0]]`:
    offsets count from the conversation's start, dropped messages included.
    """

    messages: list[Message] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    offsets: array[int] = field(default_factory=_offsets)
    #: The last message that was not left out (what the next message follows).
    last_written: Message | None = None
    #: Whether a user message was appended (from then on only user messages open a history).
    has_user: bool = False
    #: Messages dropped from the front (the window moved past them); `_known` counts them.
    dropped: int = 0


class EncodedConversations:
    """The conversations a provider sent, remembered message by message."""

    def __init__(self, encoding: MessageEncoding, *, budget: int = DEFAULT_BUDGET):
        self._encoding = encoding
        self._budget = budget
        # message id -> (the message, its conversation, its index there counting dropped
        # messages), for the messages a history can open with (`_can_open`); the message is kept
        # alive beside its id, so an id is never reused while its entry exists.
        self._known: dict[int, tuple[Message, _Conversation, int]] = {}
        #: Bytes appended since `_known` was last cleared (what the budget counts).
        self._remembered = 0

    def array_text(self, history: Sequence[Message]) -> str:
        """The messages array's contents (without brackets) for `history`."""
        return self.body(history, b"", b"").decode()

    def body(
        self, history: Sequence[Message], before: bytes, after: bytes, *, separator: bytes = b""
    ) -> bytes:
        """`before`, then `separator` and the messages array's contents for `history` unless
        that is empty, then `after`: one new bytes object, the history copied into it once."""
        if not history:
            return before + after
        conversation, start = self._conversation_of(history)
        encoding = self._encoding
        end = start + len(history)
        offsets = conversation.offsets
        if start == 0 and conversation.dropped == 0:
            # The history opens where the conversation does, whose first messages were written as
            # they open an array: its text is already the array's, in one piece (no message
            # encoded again; empty only when every message is left out).
            with memoryview(conversation.text)[: offsets[end] - offsets[0]] as whole:
                if not whole:
                    return before + after
                return b"".join((before, separator, whole, encoding.closing().encode(), after))
        first = start
        while first < end and not (opening := encoding.opening(conversation.messages[first])):
            first += 1
        if first == end:
            return before + after
        base = offsets[0]
        # (the view is released before anything appends to the buffer again)
        with memoryview(conversation.text)[offsets[first + 1] - base : offsets[end] - base] as rest:
            return b"".join((before, separator, opening.encode(), rest, encoding.closing().encode(), after))

    def _conversation_of(self, history: Sequence[Message]) -> tuple[_Conversation, int]:
        """The remembered conversation holding `history` (extended with its new messages) and
        where `history` starts in it."""
        found = self._known.get(id(history[0]))
        if found is not None and found[0] is history[0]:
            _, conversation, position = found
            start = position - conversation.dropped
        else:
            conversation, start = _Conversation(), 0
        known = conversation.messages[start : start + len(history)]
        given = list(history)  # (one copy of a long history, cut in place, not two)
        del given[len(known) :]
        if known != given:
            conversation, start, known = _Conversation(), 0, []  # not the conversation it seemed
        if start >= _DROP_AFTER and start * 2 >= len(conversation.messages):
            self._drop_front(conversation, start)
            start = 0
        for message in history[len(known) :]:
            self._append(conversation, message)
        return conversation, start

    def _drop_front(self, conversation: _Conversation, count: int) -> None:
        """Forget the first `count` messages: the context's window has moved past them.

        Done once the window starts halfway into what is remembered, so a conversation longer
        than the model's context keeps at most about twice its window here, at a cost of one
        visit per message. A later history opening at a forgotten message is encoded afresh.
        """
        for message in conversation.messages[:count]:
            entry = self._known.get(id(message))
            if entry is not None and entry[1] is conversation:
                del self._known[id(message)]
        offsets = conversation.offsets
        del conversation.messages[:count], conversation.text[: offsets[count] - offsets[0]], offsets[:count]
        conversation.dropped += count

    def _append(self, conversation: _Conversation, message: Message) -> None:
        if self._remembered >= self._budget:
            self._known.clear()  # rare; later requests encode their conversations again
            self._remembered = 0
        previous = conversation.last_written
        if previous is None:
            text = self._encoding.opening(message)
        else:
            text = self._encoding.following(message, previous)
        if text:
            conversation.last_written = message
        if _can_open(conversation, message):
            position = conversation.dropped + len(conversation.messages)
            self._known[id(message)] = (message, conversation, position)
        conversation.has_user = conversation.has_user or message.role == "user"
        encoded = text.encode()
        self._remembered += len(encoded) + _MESSAGE_OVERHEAD
        conversation.messages.append(message)
        conversation.text += encoded
        conversation.offsets.append(conversation.offsets[-1] + len(encoded))


def _can_open(conversation: _Conversation, message: Message) -> bool:
    """Whether a later history may start at `message` (only those are remembered by id).

    The context opens the conversation it sends at a user message (its window slides from one
    user message to a later one); a conversation without any opens at any message but a tool
    result. Entries for the other messages (half of them or more) would hold ~150 bytes each
    for nothing. A history opening elsewhere is still right, only encoded afresh.
    """
    if not conversation.messages or message.role == "user":
        return True
    return not conversation.has_user and message.role != "tool"


#: Tool lists remembered per provider (roughly the agents it serves).
_TOOL_LISTS = 8


class EncodedTools:
    """The tools arrays a provider sent, as JSON text, for the next request offering the same.

    A turn offers the same tools every model call; their JSON schemas are most of what a short
    request encodes. A request's tools are found by equality (compared in C), not encoded again.
    """

    def __init__(self, encode: Callable[[Sequence[ToolDefinition]], str]):
        self._encode = encode
        self._recent: list[tuple[tuple[ToolDefinition, ...], str]] = []

    def text(self, tools: Sequence[ToolDefinition]) -> str:
        """The JSON array of `tools` as `encode` writes it."""
        tools = tuple(tools)
        for i, (known, text) in enumerate(self._recent):
            if known == tools:
                if i:
                    self._recent.insert(0, self._recent.pop(i))
                return text
        text = self._encode(tools)
        # a copy: a schema dict changed in place later must not match what was encoded here
        self._recent.insert(0, (copy.deepcopy(tools), text))
        del self._recent[_TOOL_LISTS:]
        return text
