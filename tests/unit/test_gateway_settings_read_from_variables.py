"""The server knows which environment variable each plugin setting was read from.

A plugin only gets the values: its errors name `bot_token`, while the user set
SLACK_BOT_TOKEN. The manager adds the variable to the error `duragent gateway list` shows.
"""

from __future__ import annotations

from pathlib import Path

from duragent.config import ExternalGatewayConfig
from duragent.gateways.manager import GatewayTiming, PluginSupervisor
from duragent.gateways.protocol import Event
from duragent.gateways.service import variables_behind_gateway_settings

SLACK_GATEWAY = """\
gateways:
  external:
    - name: slack
      command: duragent-gateway-slack
      config:
        bot_token: ${SLACK_BOT_TOKEN}
        app_token: ${SLACK_APP_TOKEN:-}
        api_base: http://127.0.0.1:9/api
        channel_note: "${A}${B}"
"""


def test_each_setting_read_from_one_variable_is_mapped_to_it(tmp_path: Path) -> None:
    config_path = tmp_path / "duragent.yaml"
    config_path.write_text(SLACK_GATEWAY)

    assert variables_behind_gateway_settings(config_path) == {
        "slack": {
            "bot_token": f"SLACK_BOT_TOKEN at {config_path}:6",
            "app_token": f"SLACK_APP_TOKEN at {config_path}:7",
        }
    }
    assert variables_behind_gateway_settings(None) == {}
    assert variables_behind_gateway_settings(tmp_path / "gone.yaml") == {}


async def ignore_events(gateway: str, event: Event) -> None:
    """No events reach it: the plugin never starts."""


def test_a_plugin_error_naming_a_key_also_names_its_variable(tmp_path: Path) -> None:
    spec = ExternalGatewayConfig(name="slack", command="duragent-gateway-slack")
    supervisor = PluginSupervisor(
        spec,
        ignore_events,
        base_dir=tmp_path,
        timing=GatewayTiming(),
        variables={"app_token": "SLACK_APP_TOKEN"},
    )

    assert supervisor._name_variables("Slack refused the app-level token in `app_token`") == (
        "Slack refused the app-level token in `app_token` (from SLACK_APP_TOKEN)"
    )
    assert supervisor._name_variables("no `bot_token`") == "no `bot_token`"
