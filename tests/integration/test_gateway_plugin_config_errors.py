"""A plugin given a bad `config:` value stops at startup with an error naming the key to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.plugin_process import READY_WITHIN, start_plugin_process

CASES = [
    ("duragent.plugins.telegram", {"bot_token": "1:x", "poll_timeout": "soon"}, "`poll_timeout`", "'soon'"),
    ("duragent.plugins.telegram", {"bot_token": "1:x", "webhook_port": None}, "`webhook_port`", "None"),
    (
        "duragent.plugins.slack",
        {"bot_token": "xoxb-1", "app_token": "xapp-1", "http_port": "80a"},
        "`http_port`",
        "'80a'",
    ),
]


@pytest.mark.parametrize(("module", "config", "key", "value"), CASES)
async def test_a_bad_number_in_the_config_is_a_fatal_error_naming_the_key(
    module: str, config: dict[str, Any], key: str, value: str, tmp_path: Path
) -> None:
    process = await start_plugin_process(module, config, tmp_path)
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["code"] == "startup_failed"
    assert fatal["fatal"] is True
    assert key in fatal["message"]
    assert value in fatal["message"]
    assert code == 1


@pytest.mark.parametrize(
    ("module", "config"),
    [
        ("duragent.plugins.telegram", {"bot_token": "1:x", "mode": "webhook", "webhok_port": 8443}),
        ("duragent.plugins.slack", {"bot_token": "xoxb-1", "app_token": "xapp-1", "download_dri": "/tmp"}),
    ],
)
async def test_a_misspelt_key_is_a_fatal_error_naming_the_key_it_meant(
    module: str, config: dict[str, Any], tmp_path: Path
) -> None:
    process = await start_plugin_process(module, config, tmp_path)
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    misspelt = next(key for key in config if key not in ("bot_token", "app_token", "mode"))
    meant = {"webhok_port": "webhook_port", "download_dri": "download_dir"}[misspelt]
    assert f"unknown key `{misspelt}` in the gateway's config: did you mean `{meant}`?" in fatal["message"]
    assert code == 1
