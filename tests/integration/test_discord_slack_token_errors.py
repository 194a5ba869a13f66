"""A token Discord or Slack refuses stops the plugin with an error naming where it is set.

A token may come from the gateway's `config:` in duragent.yaml or from the environment
variable the plugin falls back to: the error says which one to fix. Real plugin subprocesses
against the fakes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_discord import FakeDiscord
from duragent.testing.fake_slack import FakeSlack
from tests.integration.plugin_process import READY_WITHIN, PluginProcess, start_plugin_process

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

WRONG_DISCORD = "MTIz.wrong-discord.token-value"
WRONG_SLACK = "xoxb-1-wrong-slack-bot-token"
WRONG_APP = "xapp-1-wrong-slack-app-token"


async def rest_of(process: PluginProcess) -> list[dict[str, Any]]:
    """Every event the exited plugin wrote that the test has not taken yet."""
    assert process.process.stdout is not None
    lines = (await process.process.stdout.read()).splitlines()
    return [*process.events, *(json.loads(line) for line in lines)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.mark.parametrize(("in_config", "named"), [(True, "`bot_token`"), (False, "DISCORD_BOT_TOKEN")])
async def test_discord_refused_token_names_where_it_is_set(
    discord: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_config: bool, named: str
) -> None:
    config = {"api_base": discord.api_base}
    if in_config:
        config["bot_token"] = WRONG_DISCORD
        monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DISCORD_BOT_TOKEN", WRONG_DISCORD)
    process = await start_plugin_process("duragent.plugins.discord", config, tmp_path)
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert f"refused the bot token in {named}" in fatal["message"]
    assert WRONG_DISCORD not in process.stderr_path.read_text()
    assert code == 1


@pytest.mark.parametrize(
    ("key", "variable", "wrong", "what"),
    [
        ("bot_token", "SLACK_BOT_TOKEN", WRONG_SLACK, "bot token"),
        ("app_token", "SLACK_APP_TOKEN", WRONG_APP, "app-level token"),
    ],
)
@pytest.mark.parametrize("in_config", [True, False])
async def test_slack_refused_token_names_where_it_is_set(
    slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    variable: str,
    wrong: str,
    what: str,
    in_config: bool,
) -> None:
    config = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base}
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    del config[key]
    if in_config:
        config[key] = wrong
    else:
        monkeypatch.setenv(variable, wrong)
    process = await start_plugin_process("duragent.plugins.slack", config, tmp_path)
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    named = f"`{key}`" if in_config else variable
    assert fatal["fatal"] is True
    assert f"refused the {what} in {named}" in fatal["message"]
    # Named once: the server adds "(from SLACK_APP_TOKEN at duragent.yaml:7)" to each `app_token`.
    assert fatal["message"].count(f"`{key}`") <= 1
    assert wrong not in process.stderr_path.read_text()
    assert code == 1


async def test_discord_token_reset_while_running_stops_the_plugin_naming_where_it_is_set(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as own:
        config = {"api_base": own.api_base, "bot_token": own.token}
        process = await start_plugin_process("duragent.plugins.discord", config, tmp_path)
        await process.event("ready", within=READY_WITHIN)

        own.token = "MTAw.reset-in-the-portal.new-token"  # the old one no longer works
        await own.disconnect(4000)  # resuming, then identifying again, is refused
        fatal = await process.event("error", within=60)
        code = await process.stop()

    assert fatal["fatal"] is True
    assert fatal["code"] == "unauthorized"
    assert "refused the bot token in `bot_token`" in fatal["message"]
    assert code == 0


async def test_discord_message_content_intent_off_fails_startup_saying_so_once(tmp_path: Path) -> None:
    async with FakeDiscord() as own:
        own.message_content_disallowed = True
        config = {"api_base": own.api_base, "bot_token": own.token}
        process = await start_plugin_process("duragent.plugins.discord", config, tmp_path)
        fatal = await process.event("error", within=READY_WITHIN)
        code = await process.stop()
        errors = [event for event in await rest_of(process) if event["type"] == "error"]

    assert fatal["fatal"] is True
    assert "Message Content intent" in fatal["message"]
    assert "Privileged Gateway Intents" in fatal["message"]
    # One error that says it all, not a second one blaming a missing READY.
    assert errors == []
    assert code == 1


async def test_slack_http_port_in_use_fails_startup_naming_the_setting(
    slack: FakeSlack, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = {
            "bot_token": slack.bot_token,
            "api_base": slack.api_base,
            "mode": "http",
            "signing_secret": "shh",
            "http_port": port,
        }
        process = await start_plugin_process("duragent.plugins.slack", config, tmp_path)
        fatal = await process.event("error", within=READY_WITHIN)
        code = await process.stop()

    assert fatal["fatal"] is True
    assert f"cannot listen on 127.0.0.1:{port}" in fatal["message"]
    assert "`http_port`" in fatal["message"]
    assert "Traceback" not in process.stderr_path.read_text()
    assert code == 1
