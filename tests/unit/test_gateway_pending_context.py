"""pending.json also holds group talk kept as context for a chat's next turn, next to the turns."""

from __future__ import annotations

import json
from pathlib import Path

from duragent.gateways.inbox import HeldContext, PendingInbox, PendingTurn
from duragent.gateways.protocol import MessageReceived

MESSAGE = MessageReceived.model_validate(
    {
        "message_id": "17",
        "chat_id": "-100",
        "sender": {"id": "42", "display_name": "Ana"},
        "content": {"type": "text", "text": "@bot hi"},
        "routing": {"channel": "telegram", "chat_type": "group", "chat_id": "-100", "sender_id": "42"},
    }
)


async def test_turns_and_held_context_load_back_the_same(tmp_path: Path) -> None:
    turn = PendingTurn("telegram", "assistant", ("Ana: @bot hi",), MESSAGE)
    held = HeldContext("telegram", "-100", "assistant", ("Bea: lunch at noon", "Cy: fine"))

    await PendingInbox(tmp_path / "pending.json").save([turn, held])

    assert await PendingInbox(tmp_path / "pending.json").load() == [turn, held]


async def test_a_context_entry_missing_its_chat_sets_the_file_aside(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    body = json.dumps([{"kind": "context", "gateway": "telegram", "agent": "a", "texts": ["x"]}])
    path.write_text(body)

    assert await PendingInbox(path).load() == []
    assert (tmp_path / "pending.json.unreadable").read_text() == body
