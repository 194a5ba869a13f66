"""pending.json, where chat messages wait out the debounce window: kept whole, never overwritten
when it cannot be read."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_chat_text_outside_ascii_is_kept_under_an_ascii_locale(tmp_path: Path) -> None:
    """pending.json was written in the locale's encoding: under a C locale without UTF-8 coercion,
    a message with an emoji failed to save (and so was not kept across a restart)."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from duragent.gateways.inbox import PendingInbox, PendingTurn\n"
        "from tests.unit.test_gateway_pending_inbox import MESSAGE\n"
        "inbox = PendingInbox(Path(sys.argv[1]))\n"
        "turn = PendingTurn('telegram', 'assistant', ('caf\\u00e9 \\u2615 \\U0001f389',), MESSAGE)\n"
        "asyncio.run(inbox.save([turn]))\n"
        "assert asyncio.run(PendingInbox(Path(sys.argv[1])).load()) == [turn]\n"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pending.json")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert "café ☕ 🎉" in (tmp_path / "pending.json").read_text(encoding="utf-8")
