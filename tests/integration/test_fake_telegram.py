"""The fake Telegram Bot API on its own: the semantics a bot relies on, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from duragent.testing.fake_telegram import DEFAULT_TOKEN, SECRET_HEADER, FakeTelegramBotAPI

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def call(telegram: FakeTelegramBotAPI, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """One Bot API call as a JSON body; returns (status, body)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{telegram.api_base}/bot{telegram.token}/{method}", json=params) as response,
    ):
        return response.status, await response.json()


async def test_get_me_describes_the_bot_and_a_wrong_token_is_unauthorized(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    status, body = await call(fake_telegram, "getMe")
    assert status == 200
    assert body["result"]["username"] == "duragent_test_bot"
    assert body["result"]["is_bot"] is True

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake_telegram.api_base}/bot1:wrong/getMe") as response,
    ):
        assert response.status == 401
        assert (await response.json())["ok"] is False


async def test_get_updates_returns_injected_messages_until_the_offset_confirms_them(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    sent = fake_telegram.inject_message(chat_id=42, text="hello", from_user=42)

    _, first = await call(fake_telegram, "getUpdates")
    _, again = await call(fake_telegram, "getUpdates")
    update_id = first["result"][0]["update_id"]
    _, confirmed = await call(fake_telegram, "getUpdates", offset=update_id + 1)

    assert first["result"][0]["message"]["text"] == "hello"
    assert first["result"][0]["message"]["message_id"] == sent["message_id"]
    assert again["result"] == first["result"]
    assert confirmed["result"] == []
    assert fake_telegram.pending_updates == 0


async def test_long_polling_waits_for_a_message_and_returns_as_soon_as_it_arrives(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    async def user_writes_later() -> None:
        await asyncio.sleep(0.3)
        fake_telegram.inject_message(chat_id=7, text="late", from_user=7)

    started = time.monotonic()
    writer = asyncio.create_task(user_writes_later())
    _, body = await call(fake_telegram, "getUpdates", timeout=5)
    await writer

    assert 0.25 < time.monotonic() - started < 3
    assert body["result"][0]["message"]["text"] == "late"


async def test_long_polling_with_nothing_to_deliver_returns_empty_after_the_timeout(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    started = time.monotonic()
    _, body = await call(fake_telegram, "getUpdates", timeout=1)

    assert body["result"] == []
    assert time.monotonic() - started >= 0.9


async def test_send_message_is_recorded_with_reply_and_keyboard(fake_telegram: FakeTelegramBotAPI) -> None:
    asked = fake_telegram.inject_message(chat_id=42, text="hi", from_user=42)
    keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}

    status, body = await call(
        fake_telegram,
        "sendMessage",
        chat_id=42,
        text="<b>Hello</b> &amp; welcome",
        parse_mode="HTML",
        reply_parameters={"message_id": asked["message_id"]},
        reply_markup=keyboard,
    )

    assert status == 200
    assert body["result"]["text"] == "Hello & welcome"
    [message] = fake_telegram.sent_messages(42)
    assert message.text == "<b>Hello</b> &amp; welcome"
    assert message.plain_text == "Hello & welcome"
    assert message.reply_to_message_id == asked["message_id"]
    assert message.buttons == [{"text": "Yes", "callback_data": "y"}]


async def test_form_encoded_calls_work_like_json_ones(fake_telegram: FakeTelegramBotAPI) -> None:
    fake_telegram.inject_message(chat_id=5, text="hi", from_user=5)
    form = {"chat_id": "5", "text": "plain", "reply_markup": json.dumps({"inline_keyboard": []})}
    async with aiohttp.ClientSession() as session:
        url = f"{fake_telegram.api_base}/bot{fake_telegram.token}/sendMessage"
        async with session.post(url, data=form) as response:
            assert response.status == 200

    assert fake_telegram.sent_messages(5)[0].text == "plain"


async def test_broken_html_and_oversized_texts_are_refused_like_telegram_does(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    fake_telegram.inject_message(chat_id=1, text="hi", from_user=1)

    unclosed = await call(fake_telegram, "sendMessage", chat_id=1, text="<b>bold", parse_mode="HTML")
    unknown_tag = await call(fake_telegram, "sendMessage", chat_id=1, text="<div>x</div>", parse_mode="HTML")
    too_long = await call(fake_telegram, "sendMessage", chat_id=1, text="x" * 4097)
    long_markup_is_fine = await call(
        fake_telegram, "sendMessage", chat_id=1, text="<b>" + "x" * 4096 + "</b>", parse_mode="HTML"
    )
    unknown_chat = await call(fake_telegram, "sendMessage", chat_id=999, text="hello")

    assert unclosed[0] == 400
    assert "can't parse entities" in unclosed[1]["description"]
    assert unknown_tag[0] == 400
    assert too_long == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
    )
    assert long_markup_is_fine[0] == 200
    assert unknown_chat[1]["description"] == "Bad Request: chat not found"


async def test_fail_next_answers_429_with_retry_after_once(fake_telegram: FakeTelegramBotAPI) -> None:
    fake_telegram.inject_message(chat_id=1, text="hi", from_user=1)
    fake_telegram.fail_next("sendMessage", 429, retry_after=3)

    limited = await call(fake_telegram, "sendMessage", chat_id=1, text="one")
    accepted = await call(fake_telegram, "sendMessage", chat_id=1, text="two")

    assert limited[0] == 429
    assert limited[1]["parameters"] == {"retry_after": 3}
    assert accepted[0] == 200
    assert [m.text for m in fake_telegram.sent_messages(1)] == ["two"]


async def test_edit_and_delete_change_what_the_user_sees(fake_telegram: FakeTelegramBotAPI) -> None:
    fake_telegram.inject_message(chat_id=3, text="hi", from_user=3)
    _, sent = await call(fake_telegram, "sendMessage", chat_id=3, text="draft")
    message_id = sent["result"]["message_id"]

    await call(fake_telegram, "editMessageText", chat_id=3, message_id=message_id, text="final")
    unchanged = await call(fake_telegram, "editMessageText", chat_id=3, message_id=message_id, text="final")
    await call(fake_telegram, "deleteMessage", chat_id=3, message_id=message_id)
    missing = await call(fake_telegram, "deleteMessage", chat_id=3, message_id=message_id)

    [message] = fake_telegram.sent_messages(3)
    assert message.text == "final"
    assert message.edits == ["draft"]
    assert message.deleted
    assert unchanged[1]["description"] == "Bad Request: message is not modified"
    assert missing[1]["description"] == "Bad Request: message to delete not found"


async def test_a_pressed_button_arrives_as_a_callback_query_on_the_bots_message(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    fake_telegram.inject_message(chat_id=9, text="hi", from_user=9)
    _, sent = await call(fake_telegram, "sendMessage", chat_id=9, text="Allow?")
    _, updates = await call(fake_telegram, "getUpdates")
    next_offset = updates["result"][-1]["update_id"] + 1

    fake_telegram.press_button(9, sent["result"]["message_id"], "approve:c1:allow_once", from_user=9)
    _, pressed = await call(fake_telegram, "getUpdates", offset=next_offset)
    query = pressed["result"][0]["callback_query"]
    await call(fake_telegram, "answerCallbackQuery", callback_query_id=query["id"], text="Done")

    assert query["data"] == "approve:c1:allow_once"
    assert query["message"]["message_id"] == sent["result"]["message_id"]
    assert query["from"]["id"] == 9
    assert fake_telegram.callback_answers[0]["text"] == "Done"


async def test_button_data_over_64_bytes_is_refused_as_telegram_refuses_it(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    fake_telegram.inject_message(chat_id=9, text="hi", from_user=9)
    markup = {"inline_keyboard": [[{"text": "Allow", "callback_data": "approve:" + "x" * 57}]]}

    status, body = await call(fake_telegram, "sendMessage", chat_id=9, text="Allow?", reply_markup=markup)

    assert (status, body["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")
    assert fake_telegram.sent_messages(9) == []


async def test_mentions_and_commands_get_entities_in_utf16_offsets(fake_telegram: FakeTelegramBotAPI) -> None:
    message = fake_telegram.inject_message(
        -100, "👋 @duragent_test_bot /status", from_user=1, chat_type="group"
    )

    assert message["entities"] == [
        {"type": "mention", "offset": 3, "length": 18},
        {"type": "bot_command", "offset": 22, "length": 7},
    ]
    assert message["chat"]["type"] == "group"


async def test_files_are_served_through_get_file_and_the_download_url(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    message = fake_telegram.inject_document(1, b"%PDF-1.4 bytes", from_user=1, file_name="report.pdf")

    _, file = await call(fake_telegram, "getFile", file_id=message["document"]["file_id"])
    path = file["result"]["file_path"]
    url = f"{fake_telegram.api_base}/file/bot{fake_telegram.token}/{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        data = await response.read()

    assert data == b"%PDF-1.4 bytes"


async def test_a_set_webhook_receives_updates_with_the_secret_header(
    fake_telegram: FakeTelegramBotAPI,
) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get(SECRET_HEADER), await request.json()))
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await call(fake_telegram, "setWebhook", url=f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        fake_telegram.inject_message(chat_id=1, text="via hook", from_user=1)
        polling = await call(fake_telegram, "getUpdates")
        async with asyncio.timeout(5):
            await arrived.wait()
        await call(fake_telegram, "deleteWebhook")
    finally:
        await runner.cleanup()

    assert received[0][0] == "s3cret"
    assert received[0][1]["message"]["text"] == "via hook"
    assert polling[0] == 409


async def test_wait_for_message_returns_the_first_matching_message(fake_telegram: FakeTelegramBotAPI) -> None:
    fake_telegram.inject_message(chat_id=1, text="hi", from_user=1)

    async def bot_replies() -> None:
        await call(fake_telegram, "sendMessage", chat_id=1, text="thinking")
        await asyncio.sleep(0.1)
        await call(fake_telegram, "sendMessage", chat_id=1, text="the answer")

    replying = asyncio.create_task(bot_replies())
    found = await fake_telegram.wait_for_message(1, lambda m: "answer" in m.text, within=3)
    await replying

    assert found.text == "the answer"


async def test_python_m_with_chat_lets_a_person_talk_to_the_bot_and_press_its_buttons() -> None:
    """`python -m duragent.testing.fake_telegram --chat 42`: what is typed reaches the bot as user
    42's message, the bot's replies are printed once settled, and `/press N` answers a keyboard."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "duragent.testing.fake_telegram", "--port", "0", "--chat", "42"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    printed: list[str] = []

    async def printed_line(containing: str) -> str:
        while not any(containing in line for line in printed):
            printed.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode())
        return next(line for line in printed if containing in line)

    async def bot(method: str, **params: Any) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{api_base}/bot{DEFAULT_TOKEN}/{method}", json=params) as response,
        ):
            return (await response.json())["result"]

    try:
        api_base = (await printed_line("Fake Telegram Bot API on")).split(" on ")[1].split(" ")[0]
        process.stdin.write(b"hello bot\n")
        [update] = await bot("getUpdates", timeout=10)
        keyboard = {"inline_keyboard": [[{"text": "Approve", "callback_data": "yes"}]]}
        draft = await bot("sendMessage", chat_id=42, text="thinking")
        await bot("editMessageText", chat_id=42, message_id=draft["message_id"], text="Let me look.")
        await bot("sendMessage", chat_id=42, text="May I run ls?", reply_markup=keyboard)
        await printed_line("[1] Approve")
        process.stdin.write(b"/press 1\n")
        [pressed] = await bot("getUpdates", offset=update["update_id"] + 1, timeout=10)
    finally:
        process.terminate()
        code = await process.wait()

    assert update["message"]["text"] == "hello bot"
    assert update["message"]["from"]["id"] == update["message"]["chat"]["id"] == 42
    assert any(line.startswith(("bot: Let me look.", "bot (edited): Let me look.")) for line in printed)
    assert "bot: May I run ls?\n" in printed
    assert pressed["callback_query"]["data"] == "yes"
    assert pressed["callback_query"]["from"]["id"] == 42
    assert code == 0
