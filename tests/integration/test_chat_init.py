"""`duragent init --discord/--slack` (alone or with --telegram): entries, routes, owner allowlists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from duragent.agents.spec import AgentSpec
from duragent.config import load_config
from duragent.errors import UsageError
from duragent.gateways.setup import DiscordSetup, SlackSetup
from tests.integration.test_telegram_init import run_init


def test_init_with_every_platform_writes_each_plugin_a_route_and_one_owner_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_init(
        tmp_path,
        *(
            "--telegram-owner",
            "424242",
            "--discord-owner",
            "123456789012345678",
            "--slack-owner",
            "U0123ABCD",
        ),
    )
    for variable in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        monkeypatch.setenv(variable, f"value-of-{variable}")
    root = tmp_path / "ws"

    config = load_config(root / "duragent.yaml")
    document = yaml.safe_load((root / ".duragent" / "agents" / "assistant" / "agent.yaml").read_text())
    access = AgentSpec.model_validate(document["spec"]).access

    assert result.returncode == 0, result.stderr
    assert [(g.name, g.command) for g in config.gateways.external] == [
        ("telegram", "duragent-gateway-telegram"),
        ("discord", "duragent-gateway-discord"),
        ("slack", "duragent-gateway-slack"),
    ]
    slack = config.gateways.external[2]
    assert slack.config == {"bot_token": "value-of-SLACK_BOT_TOKEN", "app_token": "value-of-SLACK_APP_TOKEN"}
    assert [(r.match.gateway, r.agent) for r in config.routes] == [
        ("telegram", "assistant"),
        ("discord", "assistant"),
        ("slack", "assistant"),
    ]
    assert access.dm.allowlist == ["424242", "123456789012345678", "U0123ABCD"]
    assert (access.groups.policy, access.groups.allowlist) == ("allowlist", [])
    assert "Discord: the bot answers direct messages from user 123456789012345678 only." in result.stdout
    assert "export SLACK_APP_TOKEN=xapp-..." in result.stdout
    assert "pip install 'duragent[telegram,discord,slack]'" in result.stdout
    assert "value-of" not in (root / "duragent.yaml").read_text()  # variables, never their values


def test_init_slack_without_a_member_id_refuses_and_writes_nothing(tmp_path: Path) -> None:
    result = run_init(tmp_path, "--slack")

    assert result.returncode == 2
    assert "--slack-owner" in result.stderr + result.stdout
    assert not (tmp_path / "ws" / "duragent.yaml").exists()


def test_owner_ids_are_checked_per_platform() -> None:
    with pytest.raises(UsageError, match="Copy User ID"):
        DiscordSetup(owner_id="ada#1234")
    with pytest.raises(UsageError, match="member ID"):
        SlackSetup(owner_id="@ada")
    with pytest.raises(UsageError):
        SlackSetup(owner_id="U0123ABCD", app_token_variable="NOT A VAR")


def test_a_telegram_init_over_an_existing_workspace_gives_the_access_lines_its_agent_lacks(
    tmp_path: Path,
) -> None:
    assert run_init(tmp_path).returncode == 0  # a workspace made without a chat gateway

    result = run_init(tmp_path, "--telegram", "--telegram-owner", "424242")

    assert result.returncode == 0, result.stderr
    assert "the bot answers direct messages from user 424242 only." not in result.stdout
    assert (
        ".duragent/agents/assistant/agent.yaml already existed and was left alone: the bot answers "
        "nobody until you add this under its `spec:` (direct messages from Telegram user 424242 only):"
    ) in result.stdout
    assert '      allowlist: ["424242"]' in result.stdout
    assert "duragent.yaml already existed and was left alone; add this to it:" in result.stdout


def test_a_telegram_init_run_twice_does_not_ask_for_the_access_lines_the_agent_has(tmp_path: Path) -> None:
    assert run_init(tmp_path, "--telegram", "--telegram-owner", "424242").returncode == 0

    again = run_init(tmp_path, "--telegram", "--telegram-owner", "424242")

    assert again.returncode == 0, again.stderr
    assert "Telegram: the bot answers direct messages from user 424242 only." in again.stdout
    assert "answers nobody" not in again.stdout
    assert "allowlist:" not in again.stdout


def test_an_agent_whose_dms_are_disabled_is_not_said_to_answer_the_owner(tmp_path: Path) -> None:
    assert run_init(tmp_path, "--telegram", "--telegram-owner", "424242").returncode == 0
    agent_yaml = tmp_path / "ws" / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("policy: allowlist", "policy: disabled", 1))

    again = run_init(tmp_path, "--telegram", "--telegram-owner", "424242")

    assert "the bot answers nobody until you add this" in again.stdout
