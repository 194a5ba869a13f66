"""The Telegram plugin as a real subprocess against the fake Bot API, driven by protocol lines.

Importing aiogram costs seconds of CPU, so one plugin process (and one fake) serves the whole
module; each test talks in its own chats. Tests needing a process of their own are marked slow.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from duragent.gateways.sdk import CONFIGURE_ENV
from duragent.testing.fake_telegram import SECRET_HEADER, FakeTelegramBotAPI
from tests.integration.plugin_process import PluginProcess

pytest_plugins = ["duragent.testing.pytest_plugin"]
pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER = {"id": 1001, "first_name": "Ada", "last_name": "Lovelace", "username": "ada"}


#: Seconds a plugin process may take to send `ready` (see start_plugin).
PLUGIN_START_LIMIT = 180


async def start_plugin(
    telegram: FakeTelegramBotAPI, tmp_path: Path, **config: Any
) -> tuple[PluginProcess, dict[str, Any]]:
    """Start the plugin, configure it for the fake, and wait for `ready`."""
    stderr_path = tmp_path / f"plugin-stderr-{time.monotonic_ns()}.log"
    env = {**os.environ, CONFIGURE_ENV: "1", "DURAGENT_LOG_LEVEL": "DEBUG"}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "duragent.plugins.telegram",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr_path.open("wb"),
        env=env,
    )
    plugin = PluginProcess(process, stderr_path)
    settings = {"bot_token": telegram.token, "api_base": telegram.api_base, "poll_timeout": 1, **config}
    await plugin.send({"type": "configure", "config": settings})
    # A bound, not a wait: importing aiogram alone is ~6 s of CPU (its types build pydantic
    # models at import), and minutes at a load average of 9 on two cores (45 s was not enough).
    try:
        ready = await plugin.event("ready", within=PLUGIN_START_LIMIT)
    except BaseException:
        process.kill()  # no test owns it yet: it must not outlive the failure
        await process.wait()
        raise
    return plugin, ready


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    """One fake Bot API for the module."""
    async with FakeTelegramBotAPI() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_plugin(
    telegram: FakeTelegramBotAPI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[PluginProcess, dict[str, Any]]]:
    """One plugin process in polling mode, connected to the fake, and its `ready` event."""
    process, ready = await start_plugin(telegram, tmp_path_factory.mktemp("plugin"))
    yield process, ready
    await process.stop()


@pytest.fixture
def plugin(shared_plugin: tuple[PluginProcess, dict[str, Any]]) -> PluginProcess:
    """The shared plugin process."""
    return shared_plugin[0]


@pytest.fixture
def fake_telegram(telegram: FakeTelegramBotAPI) -> FakeTelegramBotAPI:
    """The module's fake Bot API (same name as the per-test fixture, for readable tests)."""
    return telegram


@pytest_asyncio.fixture(loop_scope="module")
async def own_telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    """A fake Bot API of the test's own, for a plugin process of the test's own."""
    async with FakeTelegramBotAPI() as server:
        yield server


_chat_ids = iter(range(5000, 1_000_000))


@pytest.fixture
def chat() -> int:
    """A chat id no other test in this module uses."""
    return next(_chat_ids)


def received_in(chat_id: int) -> Callable[[dict[str, Any]], bool]:
    """Matches `message_received` events from one chat."""
    return lambda event: event["type"] == "message_received" and event["chat_id"] == str(chat_id)


async def test_ready_announces_the_telegram_gateway_and_its_capabilities(
    shared_plugin: tuple[PluginProcess, dict[str, Any]],
) -> None:
    _, ready = shared_plugin

    assert ready["gateway"] == "telegram"
    assert ready["version"] == "v1alpha1"
    assert {"typing", "inline_keyboard", "edit", "delete", "media"} <= set(ready["capabilities"])


def user(chat_id: int) -> dict[str, Any]:
    """The owner, as the user of a private chat with this id (in Telegram a DM's chat id is the user id)."""
    return {**OWNER, "id": chat_id}


async def test_a_direct_message_becomes_message_received(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    sent = fake_telegram.inject_message(chat_id=chat, text="Hello **bot**", from_user=user(chat))

    event = await plugin.event(received_in(chat))

    assert event["message_id"] == str(sent["message_id"])
    assert event["content"] == {"type": "text", "text": "Hello **bot**"}
    assert event["sender"] == {"id": str(chat), "username": "ada", "display_name": "Ada Lovelace"}
    assert event["routing"] == {
        "channel": "telegram",
        "chat_type": "dm",
        "chat_id": str(chat),
        "sender_id": str(chat),
    }
    assert event["mentions_bot"] is False
    assert event["reply_to_bot"] is False
    assert event["timestamp"]


async def test_send_message_arrives_as_telegram_html_replying_to_the_user(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    asked = fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))

    answer = await plugin.request(
        {
            "type": "send_message",
            "chat_id": str(chat),
            "content": "**Done**: see `x < y`",
            "reply_to": str(asked["message_id"]),
        }
    )

    [message] = fake_telegram.sent_messages(chat)
    assert answer == {
        "type": "command_ok",
        "request_id": answer["request_id"],
        "message_id": str(message.message_id),
    }
    assert message.text == "<b>Done</b>: see <code>x &lt; y</code>"
    assert message.parse_mode == "HTML"
    assert message.reply_to_message_id == asked["message_id"]


@pytest.mark.parametrize(("reply", "shown"), [("[](http://x)", "[](http://x)"), ("&nbsp;", "&nbsp;")])
async def test_a_reply_that_renders_to_nothing_is_sent_as_typed_rather_than_dropped(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int, reply: str, shown: str
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="say nothing", from_user=user(chat))

    answer = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": reply})

    [message] = fake_telegram.sent_messages(chat)
    assert answer["type"] == "command_ok", answer
    assert message.plain_text == shown


@pytest.mark.parametrize(
    ("reply", "shown"),
    [("\u200b", "(empty reply)"), ("\u200b\n\n\ufeff \u2060", "(empty reply)"), ("**\u200b**", "**\u200b**")],
)
async def test_a_reply_of_only_invisible_characters_still_shows_the_user_something(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int, reply: str, shown: str
) -> None:
    """Telegram refuses a text of zero-width characters as empty: the user still sees a reply."""
    fake_telegram.inject_message(chat_id=chat, text="say nothing", from_user=user(chat))

    answer = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": reply})
    assert answer["type"] == "command_ok", answer
    edited = await plugin.request(
        {"type": "edit_message", "chat_id": str(chat), "message_id": answer["message_id"], "content": reply}
    )

    [message] = fake_telegram.sent_messages(chat)
    assert edited["type"] == "command_ok", edited
    assert message.plain_text == shown


async def test_a_photo_with_an_invisible_caption_is_still_sent(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="a picture please", from_user=user(chat))

    answer = await plugin.request(
        {
            "type": "send_media",
            "chat_id": str(chat),
            "media": {"source": "url", "url": "https://example.com/cat.png", "mime_type": "image/png"},
            "caption": "\u200b",
        }
    )

    assert answer["type"] == "command_ok", answer
    [photo] = fake_telegram.sent_messages(chat)
    assert photo.kind == "photo"


async def test_a_caption_over_telegrams_limit_keeps_every_word(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    """A caption holds 1024 characters: the rest of a longer one was cut off and lost."""
    fake_telegram.inject_message(chat_id=chat, text="the report please", from_user=user(chat))
    caption = " ".join(f"word{n}" for n in range(600))  # 4,000 characters

    answer = await plugin.request(
        {
            "type": "send_media",
            "chat_id": str(chat),
            "media": {
                "source": "url",
                "url": "https://example.com/report.pdf",
                "mime_type": "application/pdf",
            },
            "caption": caption,
        }
    )

    assert answer["type"] == "command_ok", answer
    messages = fake_telegram.sent_messages(chat)
    assert messages[0].kind == "document"
    assert len(messages[0].plain_text) <= 1024
    assert " ".join(m.plain_text for m in messages).split() == caption.split()
    assert answer["message_id"] == str(messages[0].message_id)


async def test_a_long_reply_arrives_in_ordered_chunks_within_the_limit(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    asked = fake_telegram.inject_message(chat_id=chat, text="essay please", from_user=user(chat))
    paragraphs = [f"Paragraph {n}: " + "word " * 80 for n in range(1, 14)]
    keyboard = {"rows": [[{"text": "More", "callback_data": "more"}]]}

    answer = await plugin.request(
        {
            "type": "send_message",
            "chat_id": str(chat),
            "content": "\n\n".join(paragraphs),
            "reply_to": str(asked["message_id"]),
            "inline_keyboard": keyboard,
        }
    )

    messages = fake_telegram.sent_messages(chat)
    assert len(messages) == 2
    assert all(len(m.plain_text) <= 4096 for m in messages)
    assert " ".join(m.plain_text for m in messages).split() == "\n\n".join(paragraphs).split()
    assert messages[1].plain_text.startswith("Paragraph")  # cut at a paragraph boundary
    assert messages[0].reply_to_message_id == asked["message_id"]
    assert messages[1].reply_to_message_id is None
    assert messages[0].reply_markup is None
    assert messages[1].buttons == [{"text": "More", "callback_data": "more"}]
    assert answer["message_id"] == str(messages[-1].message_id)


async def test_a_429_from_telegram_is_waited_out_and_the_message_still_sent(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    fake_telegram.fail_next("sendMessage", 429, retry_after=1)

    answer = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": "after the wait"})

    first, second = [c for c in fake_telegram.calls_to("sendMessage") if c.params["chat_id"] == str(chat)]
    assert answer["type"] == "command_ok"
    assert second.at - first.at >= 1.0
    assert [m.text for m in fake_telegram.sent_messages(chat)] == ["after the wait"]


async def test_sending_to_an_unknown_chat_answers_command_error_chat_not_found(
    plugin: PluginProcess, chat: int
) -> None:
    answer = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": "anyone?"})

    assert answer["type"] == "command_error"
    assert answer["code"] == "chat_not_found"


async def test_a_pressed_button_is_forwarded_and_can_be_answered(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="rm -rf please", from_user=user(chat))
    buttons = {"rows": [[{"text": "Allow once", "callback_data": "approve:c1:allow_once"}]]}
    prompt = await plugin.request(
        {"type": "send_message", "chat_id": str(chat), "content": "Approve?", "inline_keyboard": buttons}
    )

    fake_telegram.press_button(chat, int(prompt["message_id"]), "approve:c1:allow_once", from_user=user(chat))
    pressed = await plugin.event(lambda e: e["type"] == "callback_query" and e["chat_id"] == str(chat))
    answered = await plugin.request(
        {
            "type": "answer_callback_query",
            "callback_query_id": pressed["callback_query_id"],
            "text": "Running",
        }
    )

    assert pressed["data"] == "approve:c1:allow_once"
    assert pressed["message_id"] == prompt["message_id"]
    assert pressed["sender"]["id"] == str(chat)
    assert answered["type"] == "command_ok"
    assert {"callback_query_id": pressed["callback_query_id"], "text": "Running"}.items() <= next(
        a for a in fake_telegram.callback_answers if a["callback_query_id"] == pressed["callback_query_id"]
    ).items()


async def test_a_photo_is_downloaded_and_its_caption_passed_on(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    picture = b"\xff\xd8\xff\xe0 fake jpeg bytes"
    fake_telegram.inject_photo(chat, picture, from_user=user(chat), caption="my receipt")

    event = await plugin.event(received_in(chat))

    assert event["content"] == {"type": "media", "media_type": "photo", "caption": "my receipt"}
    metadata = event["metadata"]
    assert metadata["mime_type"] == "image/jpeg"
    assert metadata["size"] == len(picture)
    assert await asyncio.to_thread(Path(metadata["file_path"]).read_bytes) == picture


async def test_documents_and_voice_notes_are_downloaded_too(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_document(
        chat, b"a,b\n1,2\n", from_user=user(chat), file_name="data.csv", mime_type="text/csv"
    )
    fake_telegram.inject_voice(chat, b"OggS voice", from_user=user(chat))

    document = await plugin.event(received_in(chat))
    voice = await plugin.event(received_in(chat))

    assert document["content"]["media_type"] == "document"
    assert document["metadata"]["file_name"] == "data.csv"
    assert await asyncio.to_thread(Path(document["metadata"]["file_path"]).read_bytes) == b"a,b\n1,2\n"
    assert voice["content"]["media_type"] == "voice"
    assert voice["metadata"]["mime_type"] == "audio/ogg"
    assert await asyncio.to_thread(Path(voice["metadata"]["file_path"]).read_bytes) == b"OggS voice"


async def test_group_messages_report_mentions_and_replies_to_the_bot(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    group = -chat
    fake_telegram.inject_message(group, "just chatting", from_user=OWNER, chat_type="supergroup")
    chatting = await plugin.event(received_in(group))
    fake_telegram.inject_message(
        group, "hey @Duragent_Test_Bot what's up", from_user=OWNER, chat_type="supergroup"
    )
    mentioned = await plugin.event(received_in(group))
    bot_said = await plugin.request({"type": "send_message", "chat_id": str(group), "content": "I am here"})
    fake_telegram.inject_message(
        group, "thanks", from_user={"id": 7, "first_name": "Bob"}, reply_to=int(bot_said["message_id"])
    )
    replied = await plugin.event(received_in(group))

    assert chatting["routing"]["chat_type"] == "group"
    assert (chatting["mentions_bot"], chatting["reply_to_bot"]) == (False, False)
    assert mentioned["mentions_bot"] is True
    assert replied["reply_to_bot"] is True
    assert replied["reply_to"] == bot_said["message_id"]
    assert replied["sender"] == {"id": "7", "display_name": "Bob"}


async def test_edit_and_delete_change_the_sent_message(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    sent = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": "draft"})
    target = {"chat_id": str(chat), "message_id": sent["message_id"]}

    edited = await plugin.request({"type": "edit_message", **target, "content": "*final*"})
    deleted = await plugin.request({"type": "delete_message", **target})
    again = await plugin.request({"type": "delete_message", **target})

    [message] = fake_telegram.sent_messages(chat)
    assert edited["type"] == "command_ok"
    assert message.text == "<i>final</i>"
    assert deleted["type"] == "command_ok"
    assert message.deleted
    assert again["type"] == "command_error"
    assert again["code"] == "message_not_found"


async def test_typing_is_shown_with_send_chat_action(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    await plugin.send({"type": "send_typing", "chat_id": str(chat), "duration": 5})

    await fake_telegram.wait_for_call("sendChatAction")

    assert (chat, "typing") in fake_telegram.chat_actions


async def test_ping_is_answered_with_uptime_and_connection_state(plugin: PluginProcess) -> None:
    await plugin.send({"type": "ping", "request_id": "p1"})

    pong = await plugin.event("pong")

    assert pong["request_id"] == "p1"
    assert pong["connected"] is True
    assert pong["uptime_seconds"] >= 0


async def test_polling_survives_bot_api_errors_and_keeps_delivering(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.fail_next("getUpdates", 502, retry_after=None, description="Bad Gateway")
    fake_telegram.inject_message(chat_id=chat, text="still there?", from_user=user(chat))

    event = await plugin.event(received_in(chat), within=10)

    assert event["content"]["text"] == "still there?"


@pytest.mark.slow
async def test_shutdown_ends_the_process_cleanly_and_the_token_never_reaches_the_logs(
    own_telegram: FakeTelegramBotAPI, tmp_path: Path, chat: int
) -> None:
    process, _ = await start_plugin(own_telegram, tmp_path)
    own_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    own_telegram.fail_next("sendMessage", 400, retry_after=None, description="Bad Request: boom")
    failed = await process.request({"type": "send_message", "chat_id": str(chat), "content": "x"})

    code = await process.stop()
    goodbye = await process.event("shutdown")

    assert failed["type"] == "command_error"
    assert code == 0
    assert goodbye["reason"] == "shutdown requested"
    logs = process.stderr_path.read_text()
    assert "connected as @duragent_test_bot" in logs
    assert own_telegram.token.split(":")[1] not in logs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_webhook_mode_receives_updates_and_refuses_calls_without_the_secret(
    own_telegram: FakeTelegramBotAPI, tmp_path: Path
) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/webhook"
    process, _ = await start_plugin(
        own_telegram,
        tmp_path,
        mode="webhook",
        webhook_url=hook,
        webhook_port=port,
        secret_token="hook-secret",
    )
    try:
        own_telegram.inject_message(chat_id=1001, text="over the webhook", from_user=OWNER)
        event = await process.event("message_received")
        async with (
            aiohttp.ClientSession() as session,
            session.post(hook, json={"update_id": 99}, headers={SECRET_HEADER: "guess"}) as response,
        ):
            refused = response.status
    finally:
        await process.stop()

    assert own_telegram.webhook_url == hook
    assert own_telegram.webhook_secret == "hook-secret"
    assert event["content"]["text"] == "over the webhook"
    assert refused == 401


@pytest.mark.slow
async def test_a_missing_token_fails_startup_with_a_fatal_error(
    own_telegram: FakeTelegramBotAPI, tmp_path: Path
) -> None:
    process, _ = await _start_without_ready(own_telegram, tmp_path)
    fatal = await process.event("error", within=PLUGIN_START_LIMIT)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert "TELEGRAM_BOT_TOKEN" in fatal["message"]
    assert code == 1


async def _start_without_ready(telegram: FakeTelegramBotAPI, tmp_path: Path) -> tuple[PluginProcess, None]:
    env = {**os.environ, CONFIGURE_ENV: "1"}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "duragent.plugins.telegram",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=(tmp_path / "stderr.log").open("wb"),
        env=env,
    )
    plugin = PluginProcess(process, tmp_path / "stderr.log")
    await plugin.send({"type": "configure", "config": {"api_base": telegram.api_base}})
    return plugin, None


async def test_run_from_a_terminal_prints_how_to_configure_it() -> None:
    import pexpect

    def run_in_a_terminal() -> pexpect.spawn:
        child = pexpect.spawn(sys.executable, ["-m", "duragent.plugins.telegram"], timeout=10)
        child.expect(pexpect.EOF)
        child.close()
        return child

    child = await asyncio.to_thread(run_in_a_terminal)

    assert b"duragent serve" in (child.before or b"")
    assert child.exitstatus == 2
