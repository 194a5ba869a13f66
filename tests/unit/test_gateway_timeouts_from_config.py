"""A gateway's own `ready_timeout`, `ping_interval`, `pong_timeout` and `stop_grace` from
duragent.yaml replace the server's defaults for that plugin alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.config import parse_config_text
from duragent.errors import ConfigError
from duragent.gateways.manager import GatewayManager, GatewayTiming
from duragent.gateways.protocol import Event

GATEWAYS = """\
gateways:
  external:
    - name: slow
      command: slow-plugin
      ready_timeout: 2m
      pong_timeout: 500ms
      stop_grace: 1s
    - name: plain
      command: plain-plugin
"""


async def no_events(gateway: str, event: Event) -> None:
    return None


def test_a_gateways_own_timeouts_replace_the_defaults_for_it_alone(tmp_path: Path) -> None:
    config = parse_config_text(GATEWAYS, env={})
    manager = GatewayManager(config.gateways.external, no_events, base_dir=tmp_path)

    slow, plain = manager.plugin("slow").timing, manager.plugin("plain").timing

    assert (slow.ready_timeout, slow.ping_interval, slow.pong_timeout, slow.stop_grace) == (120, 30, 0.5, 1)
    assert plain == GatewayTiming()


def test_a_gateway_timeout_that_is_no_duration_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="ready_timeout"):
        parse_config_text(GATEWAYS.replace("ready_timeout: 2m", "ready_timeout: soon"), env={})


@pytest.mark.parametrize(
    "setting", ["ping_interval: 0s", "pong_timeout: 0", "ready_timeout: 0ms", "stop_grace: 2h"]
)
def test_a_gateway_timeout_of_nothing_or_hours_is_refused_naming_the_key(setting: str) -> None:
    key = setting.split(":")[0]
    with pytest.raises(ConfigError, match=key):
        parse_config_text(GATEWAYS.replace("ready_timeout: 2m", setting), env={})
