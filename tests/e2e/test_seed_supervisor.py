"""The seed's "async workflow" example, end to end with real processes.

An agent with `on_disconnect: continue`, `max_background_runtime: 2h`, `bash`,
`background_process`, `notify_user` and `schedule`, served by `duragent serve` (from a workspace
made by `duragent init --telegram`) with its Telegram plugin on the fake Bot API and its model on
the fake LLM. The owner's Telegram chat and the terminal share one session (a session is like a
tmux session: any client attaches to it).

1. From the terminal the user asks for a long job and detaches; the model starts a background
   process; its end starts a turn nobody asked for; `notify_user` reaches the Telegram chat, and
   `duragent attach` shows the whole history.
2. From Telegram the user asks for a check every few seconds (the "every minute" of the seed,
   shortened) and, in another chat, starts a long job; the server is killed with SIGKILL and
   started again; the schedule fires on time and its report reaches its chat, and the job (which
   a restart cannot follow) is reported `lost` to its session, the answer reaching the other chat.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_llm import FakeLLMServer, RecordedRequest, ScriptedResponse, text, tool_calls
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import edit_file
from tests.e2e.server_harness import cli
from tests.e2e.telegram_bot import OWNER, TelegramBot, create_workspace
from tests.e2e.terminal import Terminal
from tests.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

WITHIN = 30.0
POLICY = "mode: allow\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    async with FakeTelegramBotAPI(bot_username="duragent_seed_bot") as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(
    telegram: FakeTelegramBotAPI, llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TelegramBot]:
    """The supervisor agent of the seed, served with its Telegram bot."""
    root = tmp_path_factory.mktemp("seed")
    config = await asyncio.to_thread(create_workspace, root / "home", telegram, llm)
    # the seed's "every minute", shortened to seconds: allowed for an agent's own schedules here
    with config.open("a") as file:
        file.write("scheduling:\n  agent_min_interval: 1s\n")
    agent_dir = root / "home" / ".duragent" / "agents" / "assistant"
    agent = agent_dir / "agent.yaml"
    edit_file(agent, "    # max_background_runtime: 30m\n", "    max_background_runtime: 2h\n")
    edit_file(
        agent,
        "      - bash\n",
        "      - bash\n      - background_process\n      - schedule\n",
    )
    (agent_dir / "policy.yaml").write_text(POLICY)
    served = TelegramBot.for_workspace(config, root, telegram, llm)
    await served.start()
    yield served
    if served.server is not None:
        await served.stop()


_chat_ids = itertools.count(70_001)


def last_user_text(request: RecordedRequest) -> str:
    users = [m for m in request.messages if m.get("role") == "user"]
    return str(users[-1].get("content")) if users else ""


async def chat_session(bot: TelegramBot, chat_id: int) -> str:
    """Say hello in the chat and return the session it talks in (as `/status` names it)."""
    bot.telegram.inject_message(chat_id, "hello", from_user=OWNER)
    await bot.telegram.wait_for_message(chat_id, lambda m: "hello" in m.plain_text, within=WITHIN)
    bot.telegram.inject_message(chat_id, "/status", from_user=OWNER)
    status = await bot.telegram.wait_for_message(chat_id, lambda m: "Session:" in m.plain_text, within=WITHIN)
    found = re.search(r"Session: (\S+)", status.plain_text)
    assert found, status.plain_text
    return found.group(1)


def terminal_env(bot: TelegramBot) -> dict[str, str]:
    return dict(bot.env)


async def test_a_long_job_started_from_the_terminal_is_reported_in_the_chat_and_on_attach(
    bot: TelegramBot,
) -> None:
    chat_id = next(_chat_ids)
    session_id = await chat_session(bot, chat_id)
    job = "sleep 3; echo job finished OK"

    def script(request: RecordedRequest) -> ScriptedResponse | None:
        last = last_user_text(request)
        if "run the long job" in last:
            if request.messages[-1].get("role") == "tool":
                return text("Started the long job; I will tell you when it is done.")
            return tool_calls([("background_process", {"action": "spawn", "command": job, "label": "job"})])
        if last.startswith("[process finished]"):
            if request.messages[-1].get("role") == "tool":
                return text("All done.")
            done = "The long job is done: job finished OK"
            return tool_calls([("notify_user", {"message": done})])
        return None

    bot.llm.responder = script
    try:
        # The terminal sends, gets the first answer, and is gone (`send` exits: detached).
        sent = await asyncio.to_thread(
            cli,
            bot.config,
            "send",
            "--session",
            session_id,
            "--json",
            "run the long job and tell me when done",
            env=terminal_env(bot),
            timeout=WITHIN * 2,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "I will tell you when it is done" in json.loads(sent.stdout)["reply"]
        notified = await bot.telegram.wait_for_message(
            chat_id, lambda m: "The long job is done: job finished OK" in m.plain_text, within=WITHIN
        )
        assert notified.reply_to_message_id is None  # a notification, not a reply to anything typed
        await bot.telegram.wait_for_message(chat_id, lambda m: m.plain_text == "All done.", within=WITHIN)
        finished = [last_user_text(r) for r in bot.llm.requests if last_user_text(r).startswith("[process")]
        assert "exit code: 0" in finished[0]
        assert "job finished OK" in finished[0]
    finally:
        bot.llm.responder = None

    # Back at the terminal: attach shows everything that happened meanwhile.
    config = bot.config
    term = await asyncio.to_thread(
        Terminal, ["-c", str(config), "attach", session_id], config.parent, **terminal_env(bot)
    )
    for shown in (
        "run the long job and tell me when done",
        "I will tell you when it is done",
        r"\[process finished\]",
        "The long job is done: job finished OK",
        "All done.",
    ):
        await asyncio.to_thread(term.expect, shown)
    await asyncio.to_thread(term.prompt)
    term.child.sendcontrol("d")
    await asyncio.to_thread(term.finish)


async def test_after_a_kill_and_restart_the_chats_schedule_fires_on_time_and_a_cut_off_job_is_lost(
    bot: TelegramBot,
) -> None:
    # One restart for both (a restart costs seconds): a schedule made in one chat, a job in another.
    schedule_chat, job_chat = next(_chat_ids), next(_chat_ids)
    await chat_session(bot, schedule_chat)
    await chat_session(bot, job_chat)
    checks: list[str] = []

    def script(request: RecordedRequest) -> ScriptedResponse | None:
        last = last_user_text(request)
        answered = request.messages[-1].get("role") == "tool"
        if "check the build every minute" in last:
            if answered:
                return text("Scheduled: I will check the build every few seconds.")
            timing = {"action": "create", "every": "3s", "task": "check the build", "label": "build check"}
            return tool_calls([("schedule", timing)])
        if last.startswith("[scheduled task"):
            checks.append(last)
            return text(f"Build check {len(checks)}: green.")
        if "start the nightly import" in last:
            if answered:
                return text("The nightly import is running.")
            spawn = {"action": "spawn", "command": "sleep 600", "label": "nightly import"}
            return tool_calls([("background_process", spawn)])
        if last.startswith("[process finished]") and "(nightly import)" in last:
            return text("The nightly import was lost in a server restart; shall I start it again?")
        return None

    def said(chat_id: int, words: str, after: int = 0) -> Any:
        return lambda m: words in m.plain_text and m in bot.telegram.sent_messages(chat_id)[after:]

    bot.llm.responder = script
    try:
        bot.telegram.inject_message(schedule_chat, "check the build every minute", from_user=OWNER)
        bot.telegram.inject_message(job_chat, "start the nightly import", from_user=OWNER)
        await bot.telegram.wait_for_message(schedule_chat, said(schedule_chat, "Scheduled"), within=WITHIN)
        await bot.telegram.wait_for_message(schedule_chat, said(schedule_chat, "Build check"), within=WITHIN)
        await bot.telegram.wait_for_message(job_chat, said(job_chat, "is running"), within=WITHIN)
        await bot.kill()  # kill -9: nothing is shut down cleanly
        down_at = datetime.now().astimezone()
        seen_before = len(bot.telegram.sent_messages(schedule_chat))
        await bot.start()

        # The schedule fires again, on time, without a burst of the slots missed meanwhile.
        fired = await bot.telegram.wait_for_message(
            schedule_chat, said(schedule_chat, "Build check", seen_before), within=WITHIN
        )
        assert "green" in fired.plain_text
        # The run history, read as `duragent schedule show` prints it. A run's `ok` is recorded once
        # its turn has ended, just after its reply reached the chat.
        await until(
            lambda: any(r["status"] == "ok" and parse(r["slot"]) > down_at for r in read_runs(bot)),
            within=WITHIN,
        )
        runs = read_runs(bot)
        after_restart = [r for r in runs if r["status"] == "ok" and parse(r["slot"]) > down_at]
        assert after_restart, runs
        first = after_restart[0]
        # On time: the run began within a few seconds of its slot (the slots are 3 s apart).
        assert parse(first["ts"]) - parse(first["slot"]) < timedelta(seconds=15)
        slots = [r["slot"] for r in runs if r["status"] == "started"]
        assert len(slots) == len(set(slots))

        # The job the crash cut off is reported lost to its session, and the answer reaches the chat.
        await bot.telegram.wait_for_message(
            job_chat, said(job_chat, "lost in a server restart"), within=WITHIN
        )
        reports = {last_user_text(r) for r in bot.llm.requests}
        [finished] = [r for r in reports if r.startswith("[process finished]") and "(nightly import)" in r]
        assert "lost: the server restarted while it ran" in finished
    finally:
        bot.llm.responder = None
        await cancel_schedules(bot)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def runs_file(bot: TelegramBot) -> Path:
    [schedule_id] = schedules_of(bot)
    return data_dir(bot) / "schedules" / "runs" / f"{schedule_id}.jsonl"


def read_runs(bot: TelegramBot) -> list[dict[str, Any]]:
    """The run history of the agent's one active schedule (none until it has one and ran)."""
    if not schedules_of(bot) or not runs_file(bot).exists():
        return []
    return [json.loads(line) for line in runs_file(bot).read_text().splitlines() if line.strip()]


def data_dir(bot: TelegramBot) -> Path:
    return bot.config.parent / ".duragent"


def schedules_of(bot: TelegramBot) -> list[str]:
    folder = data_dir(bot) / "schedules"
    return [p.stem for p in folder.glob("sch_*.yaml") if "status: active" in p.read_text()]


async def cancel_schedules(bot: TelegramBot) -> None:
    for schedule_id in schedules_of(bot):
        await asyncio.to_thread(cli, bot.config, "schedule", "pause", schedule_id, env=terminal_env(bot))
