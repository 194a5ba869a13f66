"""pending.json, where chat messages wait out the debounce window: kept whole, never overwritten
when it cannot be read."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from duragent.gateways.inbox import PendingInbox, PendingTurn
from duragent.gateways.protocol import MessageReceived
from duragent.secrets import SecretGuard

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


async def test_a_secret_in_a_waiting_message_is_not_stored_at_rest(tmp_path: Path) -> None:
    """The session's log gets the text redacted; pending.json held it raw while it waited."""
    key = "sk-trialSECRET0123456789abcdefABCDEF"
    inbox = PendingInbox(tmp_path / "pending.json", redact=SecretGuard({"OPENAI_API_KEY": key}).redact_value)
    said = MESSAGE.model_copy(update={"content": MESSAGE.content.model_copy(update={"text": f"key: {key}"})})

    await inbox.save([PendingTurn("telegram", "assistant", (f"my key is {key}",), said)])

    stored = (tmp_path / "pending.json").read_text()
    assert key not in stored
    assert "my key is [REDACTED:OPENAI_API_KEY]" in stored
    [loaded] = await PendingInbox(tmp_path / "pending.json").load()
    assert isinstance(loaded, PendingTurn)
    assert loaded.texts == ("my key is [REDACTED:OPENAI_API_KEY]",)


def test_the_gateways_folder_stays_out_of_the_data_repository(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(["git", "init", "-q", str(data)], check=True)
    turn = PendingTurn("telegram", "assistant", ("hi",), MESSAGE)
    asyncio.run(PendingInbox(data / "gateways" / "pending.json").save([turn]))
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=data,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (data / "gateways" / "pending.json").exists()
    assert status.stdout == ""
