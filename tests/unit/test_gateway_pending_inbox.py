"""pending.json, where chat messages wait out the debounce window: kept whole, never overwritten
when it cannot be read."""

from __future__ import annotations

from pathlib import Path

from duragent.gateways.inbox import PendingInbox, PendingTurn
from duragent.gateways.protocol import MessageReceived

MESSAGE = MessageReceived.model_validate(
    {
        "message_id": "17",
        "chat_id": "42",
        "sender": {"id": "42", "display_name": "Ana"},
        "content": {"type": "text", "text": "hi"},
        "routing": {"channel": "telegram", "chat_type": "dm", "chat_id": "42", "sender_id": "42"},
    }
)


async def test_saved_turns_load_back_the_same(tmp_path: Path) -> None:
    inbox = PendingInbox(tmp_path / "pending.json")
    turn = PendingTurn("telegram", "assistant", ("hi", "are you there?"), MESSAGE)

    await inbox.save([turn])

    assert await PendingInbox(tmp_path / "pending.json").load() == [turn]


async def test_an_unreadable_file_is_set_aside_untouched_and_nothing_is_submitted(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    path.write_text('[{"gateway": "telegram", "texts": "not a list"}]')

    assert await PendingInbox(path).load() == []
    assert not path.exists()
    assert (
        tmp_path / "pending.json.unreadable"
    ).read_text() == '[{"gateway": "telegram", "texts": "not a list"}]'
