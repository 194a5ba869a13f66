"""The Telegram bot end to end, all real processes: `duragent serve` (from a workspace made by
`duragent init --telegram`), its `duragent-gateway-telegram` plugin subprocess, the fake Bot API
and the fake LLM (both on 127.0.0.1 in the test process).

One server serves the whole module (a plugin start costs seconds: aiogram); each test talks in
chats of its own. The tests that kill the plugin or restart the server leave a working bot behind.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from duragent.gateways.router import help_text
from duragent.testing.fake_llm import FakeLLMServer, delay, text, tool_calls
from duragent.testing.fake_telegram import MESSAGE_LIMIT, BotMessage, FakeTelegramBotAPI
from tests.e2e.telegram_bot import (
    ALLOWED_GROUPS,
    OWNER,
    TelegramBot,
    create_workspace,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

BOT_USERNAME = "duragent_test_bot"
BEA = {"id": 3003, "first_name": "Bea"}
STRANGER = {"id": 6666, "first_name": "Mallory"}
REPLY_WITHIN = 20.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    """The fake Bot API the plugin polls."""
    async with FakeTelegramBotAPI(bot_username=BOT_USERNAME) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def llm() -> AsyncIterator[FakeLLMServer]:
    """The fake OpenAI-compatible model; unscripted requests get `echo: <last user message>`."""
    async with FakeLLMServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(
    telegram: FakeTelegramBotAPI, llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TelegramBot]:
    """`duragent serve` running the Telegram bot of a fresh `init --telegram` workspace."""
    root = tmp_path_factory.mktemp("telegram-bot")
    config = await asyncio.to_thread(create_workspace, root / "home", telegram, llm)
    served = TelegramBot.for_workspace(config, root, telegram, llm)
    await served.start()
    yield served
    if served.server is not None:
        await served.stop()


_chat_ids = itertools.count(50_001)


@pytest.fixture
def chat() -> int:
    """A private chat of the owner's no other test uses.

    In Telegram a DM's chat id is the user's id; a chat id per test keeps the tests' sessions apart
    (sessions are per chat) while the sender stays the allowlisted owner.
    """
    return next(_chat_ids)


def owner_says(telegram: FakeTelegramBotAPI, chat_id: int, words: str, **options: Any) -> dict[str, Any]:
    """The owner sends a message to the bot."""
    return telegram.inject_message(chat_id, words, from_user=OWNER, **options)


def replying_to(message: dict[str, Any]) -> Any:
    """Matches the bot's messages that reply to `message`."""
    return lambda sent: sent.reply_to_message_id == message["message_id"]


def containing(words: str) -> Any:
    """Matches the bot's messages whose visible text contains `words`."""
    return lambda sent: words in sent.plain_text


async def reply_to(bot: TelegramBot, message: dict[str, Any]) -> BotMessage:
    """The bot's reply to one of the user's messages."""
    return await bot.telegram.wait_for_message(
        message["chat"]["id"], replying_to(message), within=REPLY_WITHIN
    )


async def status_session_id(bot: TelegramBot, chat_id: int) -> str:
    """Ask `/status` in the chat and return the session id the bot names."""
    before = len(bot.telegram.sent_messages(chat_id))
    owner_says(bot.telegram, chat_id, "/status")
    answer = await bot.telegram.wait_for_message(
        chat_id,
        lambda m: m in bot.telegram.sent_messages(chat_id)[before:] and "Session:" in m.plain_text,
        within=REPLY_WITHIN,
    )
    found = re.search(r"Session: (\S+)", answer.plain_text)
    assert found, answer.plain_text
    return found.group(1)


# ------------------------------------------------------------------------- conversation


async def test_a_message_is_answered_in_html_replying_to_it_while_typing_shows(
    bot: TelegramBot, chat: int
) -> None:
    bot.llm.enqueue(text("**Hello** Ada, `x < y` holds", chunks=3))
    asked = owner_says(bot.telegram, chat, "hi bot")

    reply = await reply_to(bot, asked)

    assert reply.parse_mode == "HTML"
    assert reply.text == "<b>Hello</b> Ada, <code>x &lt; y</code> holds"
    assert (chat, "typing") in bot.telegram.chat_actions
    typing_at = min(c.at for c in bot.telegram.calls_to("sendChatAction") if c.params["chat_id"] == str(chat))
    sent_at = next(c.at for c in bot.telegram.calls_to("sendMessage") if c.params["chat_id"] == str(chat))
    assert typing_at < sent_at  # shown while the turn ran, not after
    [request] = bot.requests_mentioning("hi bot")
    assert request.messages[-1] == {"role": "user", "content": "hi bot"}


async def test_a_reply_over_4096_characters_arrives_in_ordered_chunks(bot: TelegramBot, chat: int) -> None:
    paragraphs = [f"Paragraph {n}: " + "lorem ipsum " * 40 for n in range(1, 16)]
    essay = "\n\n".join(paragraphs)
    assert len(essay) > MESSAGE_LIMIT
    bot.llm.enqueue(text(essay, chunks=5))
    asked = owner_says(bot.telegram, chat, "write me an essay")

    first = await reply_to(bot, asked)
    await bot.telegram.wait_for_message(chat, containing("Paragraph 15:"), within=REPLY_WITHIN)

    pieces = bot.telegram.sent_messages(chat)
    assert len(pieces) >= 2
    assert pieces[0] is first
    assert all(len(piece.plain_text) <= MESSAGE_LIMIT for piece in pieces)
    assert " ".join(piece.plain_text for piece in pieces).split() == essay.split()
    assert all(piece.plain_text.startswith("Paragraph") for piece in pieces)  # cut between paragraphs
    assert [piece.reply_to_message_id for piece in pieces[1:]] == [None] * (len(pieces) - 1)


async def test_notify_user_from_a_continue_mode_session_reaches_the_chat(bot: TelegramBot, chat: int) -> None:
    bot.llm.enqueue(
        tool_calls([("notify_user", {"message": "Halfway there: 3 of 6 files checked"})]),
        text("All six files are fine."),
    )
    asked = owner_says(bot.telegram, chat, "check my files and keep me posted")

    final = await reply_to(bot, asked)

    notice, answer = bot.telegram.sent_messages(chat)
    assert notice.plain_text == "Halfway there: 3 of 6 files checked"
    assert notice.reply_to_message_id is None  # a notification, not the answer
    assert answer is final
    assert answer.plain_text == "All six files are fine."


async def test_a_file_named_with_spaces_and_accents_reaches_the_agent_stored_as_an_artifact(
    bot: TelegramBot, chat: int
) -> None:
    # Phones name files like this; an artifact name may hold none of ' ', '(', 'é'.
    file_name = "Rapport annuel (été 2026).pdf"
    bot.llm.enqueue(text("Got your report."))
    asked = bot.telegram.inject_document(
        chat, b"%PDF-1.4 the report", OWNER, file_name, "application/pdf", caption="summarise this"
    )

    reply = await reply_to(bot, asked)

    assert reply.plain_text == "Got your report."
    [request] = bot.requests_mentioning("summarise this")
    said = str(request.messages[-1]["content"])
    stored = re.search(r"\[document .* saved as artifact (\S+) \(", said)
    assert stored, said
    assert file_name in said  # the agent still learns what the file was called
    artifact = bot.config.parent / ".duragent" / "artifacts" / "assistant" / stored.group(1)
    assert await asyncio.to_thread(artifact.read_bytes) == b"%PDF-1.4 the report"


# ---------------------------------------------------------------------------- access


async def test_a_stranger_is_ignored_with_a_log_line_and_no_reply(bot: TelegramBot) -> None:
    stranger_chat = STRANGER["id"]
    bot.telegram.inject_message(stranger_chat, "hello bot, run rm -rf / for me", from_user=STRANGER)

    await bot.wait_for_log(f"denied message from sender {STRANGER['id']}")
    await asyncio.sleep(0.5)  # a reply, had one been sent, would come right after the decision

    assert bot.telegram.sent_messages(stranger_chat) == []
    assert (stranger_chat, "typing") not in bot.telegram.chat_actions
    assert bot.requests_mentioning("rm -rf /") == []


async def test_a_strangers_file_is_not_fetched(bot: TelegramBot) -> None:
    """Strangers could otherwise make the bot fetch files of up to Telegram's 20 MB."""
    sent = bot.telegram.inject_document(STRANGER["id"], b"\0" * 4096, STRANGER, "payload.bin")

    await bot.wait_for_log(f"denied message from sender {STRANGER['id']}")

    file_id = sent["document"]["file_id"]
    assert [c for c in bot.telegram.calls_to("getFile") if c.params.get("file_id") == file_id] == []


async def test_in_a_group_only_mentions_are_answered_and_other_talk_is_kept_as_context(
    bot: TelegramBot,
) -> None:
    group = ALLOWED_GROUPS[0]
    bot.telegram.inject_message(group, "we meet at noon by the fountain", from_user=BEA, chat_type="group")
    await asyncio.sleep(1.0)
    assert bot.telegram.sent_messages(group) == []
    assert bot.requests_mentioning("fountain") == []

    asked = owner_says(bot.telegram, group, f"@{BOT_USERNAME} where do we meet?", chat_type="group")
    reply = await reply_to(bot, asked)

    [request] = bot.requests_mentioning("where do we meet?")
    said = "\n".join(str(m.get("content")) for m in request.messages if m.get("role") == "user")
    assert "Bea: we meet at noon by the fountain" in said
    assert "where do we meet?" in reply.plain_text  # the fake model echoes the turn it was given
    assert [m.message_id for m in bot.telegram.sent_messages(group)] == [reply.message_id]


async def test_only_the_requester_may_approve_a_command_and_then_it_runs(bot: TelegramBot) -> None:
    group = ALLOWED_GROUPS[1]
    bot.llm.enqueue(
        tool_calls([("bash", {"command": "echo approved-and-ran"})]),
        text("Done, it printed the words."),
    )
    asked = owner_says(bot.telegram, group, f"@{BOT_USERNAME} run the echo please", chat_type="group")
    prompt = await bot.telegram.wait_for_message(group, lambda m: bool(m.buttons), within=REPLY_WITHIN)
    assert "echo approved-and-ran" in prompt.plain_text
    allow_once = next(b["callback_data"] for b in prompt.buttons if b["text"] == "Allow once")
    assert {b["text"] for b in prompt.buttons} == {"Allow once", "Allow always", "Deny"}

    bea_pressed = bot.telegram.press_button(group, prompt.message_id, allow_once, from_user=BEA)
    refusal = await _callback_answer(bot.telegram, bea_pressed["id"])
    assert refusal["text"] == "Only the original requester can approve this command"
    await asyncio.sleep(0.3)
    assert len(bot.requests_mentioning("run the echo please")) == 1  # the turn still waits: nothing ran

    owner_pressed = bot.telegram.press_button(group, prompt.message_id, allow_once, from_user=OWNER)
    toast = await _callback_answer(bot.telegram, owner_pressed["id"])
    final = await bot.telegram.wait_for_message(group, containing("Done, it printed"), within=REPLY_WITHIN)

    assert toast["text"] == "✓ Running"
    assert final.reply_to_message_id == asked["message_id"]
    after_tool = bot.requests_mentioning("approved-and-ran")[-1]
    [result] = [m for m in after_tool.messages if m.get("role") == "tool"]
    assert "approved-and-ran" in str(result["content"])


async def _callback_answer(telegram: FakeTelegramBotAPI, query_id: str) -> dict[str, Any]:
    async with asyncio.timeout(REPLY_WITHIN):
        while True:
            for answer in telegram.callback_answers:
                if str(answer.get("callback_query_id")) == query_id:
                    return answer
            await telegram.wait_for_call("answerCallbackQuery", len(telegram.callback_answers) + 1)


# ------------------------------------------------------------------------ chat commands


async def test_help_and_help_at_botname_explain_the_bot_without_asking_the_model(
    bot: TelegramBot, chat: int
) -> None:
    requests_before = len(bot.llm.requests)
    owner_says(bot.telegram, chat, "/help")
    owner_says(bot.telegram, chat, f"/help@{BOT_USERNAME}")

    await bot.telegram.wait_for_message(
        chat, lambda m: len(bot.telegram.sent_messages(chat)) >= 2, within=REPLY_WITHIN
    )

    answers = [m.plain_text for m in bot.telegram.sent_messages(chat)]
    assert answers == [help_text(), help_text()]
    assert len(bot.llm.requests) == requests_before


async def test_status_names_the_session_and_reset_starts_a_new_one(bot: TelegramBot, chat: int) -> None:
    first = owner_says(bot.telegram, chat, "remember the word marmalade")
    await reply_to(bot, first)
    before = await status_session_id(bot, chat)

    owner_says(bot.telegram, chat, "/reset")
    await bot.telegram.wait_for_message(chat, containing("Session reset"), within=REPLY_WITHIN)
    second = owner_says(bot.telegram, chat, "which word did I ask you to remember?")
    await reply_to(bot, second)
    after = await status_session_id(bot, chat)

    [request] = bot.requests_mentioning("which word did I ask")
    assert not any("marmalade" in str(m.get("content")) for m in request.messages)
    assert after != before


async def test_status_at_botname_works_in_a_group_without_a_mention(bot: TelegramBot) -> None:
    group = ALLOWED_GROUPS[2]
    owner_says(bot.telegram, group, f"/status@{BOT_USERNAME}", chat_type="group")

    answer = await bot.telegram.wait_for_message(group, within=REPLY_WITHIN)

    assert answer.plain_text == "No active session."


# ------------------------------------------------------------------------------ crashes


async def test_a_plugin_killed_with_sigkill_is_restarted_and_answers_the_next_message(
    bot: TelegramBot, chat: int
) -> None:
    before = await bot.wait_until_ready(lambda status: True)

    os.kill(before["pid"], 9)
    # Sent while the plugin is down: Telegram keeps it until the restarted plugin polls.
    asked = owner_says(bot.telegram, chat, "are you back?")
    after = await bot.wait_until_ready(lambda status: status["pid"] != before["pid"])
    reply = await reply_to(bot, asked)

    assert after["restarts"] == before["restarts"] + 1
    assert after["last_error"] == "exited with code -9"
    assert reply.plain_text == "echo: are you back?"


async def test_after_a_server_restart_chats_continue_their_sessions_and_pending_approvals(
    bot: TelegramBot, chat: int
) -> None:
    first = owner_says(bot.telegram, chat, "my locker code is 4417")
    await reply_to(bot, first)
    session_before = await status_session_id(bot, chat)
    group = ALLOWED_GROUPS[3]
    bot.llm.enqueue(tool_calls([("bash", {"command": "echo after-the-restart"})]), text("Ran it after all."))
    asked = owner_says(bot.telegram, group, f"@{BOT_USERNAME} run the restart echo", chat_type="group")
    before = await bot.telegram.wait_for_message(group, lambda m: bool(m.buttons), within=REPLY_WITHIN)
    plugin_pid = (await bot.gateway())["pid"]

    exit_code = await bot.stop()
    assert exit_code == 0
    assert not _alive(plugin_pid)  # the plugin stopped with the server: no orphan
    await bot.start()

    # The approval still pending when the server stopped is asked again, of the same requester.
    again = await bot.telegram.wait_for_message(
        group, lambda m: bool(m.buttons) and m.message_id != before.message_id, within=REPLY_WITHIN
    )
    allow_once = next(b["callback_data"] for b in again.buttons if b["text"] == "Allow once")
    # The same call: its buttons from before the restart name it still.
    assert again.buttons == before.buttons
    refused = bot.telegram.press_button(group, again.message_id, allow_once, from_user=BEA)
    refusal = await _callback_answer(bot.telegram, refused["id"])
    bot.telegram.press_button(group, again.message_id, allow_once, from_user=OWNER)
    final = await bot.telegram.wait_for_message(group, containing("Ran it after all"), within=REPLY_WITHIN)
    # And the private chat goes on in the same session: the agent sees the earlier messages.
    second = owner_says(bot.telegram, chat, "what is my locker code?")
    await reply_to(bot, second)

    assert refusal["text"] == "Only the original requester can approve this command"
    assert final.reply_to_message_id == asked["message_id"]
    [request] = bot.requests_mentioning("what is my locker code?")
    contents = [str(m.get("content")) for m in request.messages]
    assert "my locker code is 4417" in contents
    assert "echo: my locker code is 4417" in contents  # the agent's own earlier answer too
    assert await status_session_id(bot, chat) == session_before


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie nobody reaped yet is dead too.
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split()[2] == "Z")


async def test_a_turn_cut_off_by_a_server_crash_is_finished_after_the_restart_and_its_reply_arrives(
    bot: TelegramBot, chat: int
) -> None:
    bot.llm.enqueue(delay(30, text("never sent: the server dies first")), text("Sorry for the wait: 42."))
    asked = owner_says(bot.telegram, chat, "what is six times seven?")
    await bot.wait_for_request("what is six times seven?")

    await bot.kill()  # a crash (power cut, OOM killer): no chance to finish the turn
    await bot.start()
    reply = await bot.telegram.wait_for_message(chat, containing("Sorry for the wait"), within=REPLY_WITHIN)

    assert reply.plain_text == "Sorry for the wait: 42."
    assert reply.reply_to_message_id == asked["message_id"]
    assert len(bot.requests_mentioning("what is six times seven?")) == 2  # asked again, once


async def test_a_reply_telegram_refuses_is_followed_by_one_notice_saying_why(
    bot: TelegramBot, chat: int
) -> None:
    """Without the notice the owner would wait for an answer that never comes."""
    bot.telegram.fail_next("sendMessage", status=400, description="Bad Request: message is too long")
    owner_says(bot.telegram, chat, "tell me everything")

    notice = await bot.telegram.wait_for_message(
        chat, containing("could not send my reply"), within=REPLY_WITHIN
    )

    assert notice.plain_text == "I could not send my reply: Bad Request: message is too long"
    assert [m.plain_text for m in bot.telegram.sent_messages(chat)] == [notice.plain_text]
