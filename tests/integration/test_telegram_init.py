"""`duragent init --telegram`: the gateway entry, the route and an owner-only allowlist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from duragent.agents.spec import AgentSpec
from duragent.config import load_config
from duragent.errors import UsageError
from duragent.gateways.setup import TelegramSetup


def run_init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "duragent",
            "init",
            str(tmp_path / "ws"),
            "--yes",
            "--provider",
            "demo",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_telegram_writes_the_plugin_entry_a_route_and_an_owner_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_init(tmp_path, "--telegram", "--telegram-owner", "424242", "--telegram-token-var", "MY_BOT")
    monkeypatch.setenv("MY_BOT", "123:secret")

    config = load_config(tmp_path / "ws" / "duragent.yaml")
    agent_yaml = (tmp_path / "ws" / ".duragent" / "agents" / "assistant" / "agent.yaml").read_text()

    assert result.returncode == 0, result.stderr
    [gateway] = config.gateways.external
    assert (gateway.name, gateway.command) == ("telegram", "duragent-gateway-telegram")
    assert gateway.config == {"bot_token": "123:secret"}
    assert "${MY_BOT}" in (tmp_path / "ws" / "duragent.yaml").read_text()
    assert [(route.match.gateway, route.agent) for route in config.routes] == [("telegram", "assistant")]
    assert 'allowlist: ["424242"]' in agent_yaml
    assert "answers direct messages from user 424242 only" in result.stdout


def test_the_written_agent_allows_only_the_owner_in_dms_and_no_groups(tmp_path: Path) -> None:
    import yaml

    run_init(tmp_path, "--telegram-owner", "77")
    document = yaml.safe_load(
        (tmp_path / "ws" / ".duragent" / "agents" / "assistant" / "agent.yaml").read_text()
    )

    access = AgentSpec.model_validate(document["spec"]).access
    assert (access.dm.policy, access.dm.allowlist) == ("allowlist", ["77"])
    assert (access.groups.policy, access.groups.allowlist) == ("allowlist", [])


def test_init_telegram_without_an_owner_id_refuses_rather_than_opening_the_bot(tmp_path: Path) -> None:
    result = run_init(tmp_path, "--telegram")

    assert result.returncode == 2
    assert "--telegram-owner" in result.stderr + result.stdout
    assert not (tmp_path / "ws" / "duragent.yaml").exists()


def test_owner_ids_and_variable_names_are_checked() -> None:
    with pytest.raises(UsageError):
        TelegramSetup(owner_id="@ada")
    with pytest.raises(UsageError):
        TelegramSetup(owner_id="1", token_variable="NOT A VAR")
