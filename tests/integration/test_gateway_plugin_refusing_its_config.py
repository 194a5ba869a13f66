"""A plugin whose `on_configure` refuses its `config:` map stops with one fatal error, as a
failure in `on_start` does: Duragent shows the reason as the plugin's LAST ERROR."""

from __future__ import annotations

from pathlib import Path

from tests.integration.plugin_process import READY_WITHIN, start_plugin_process


async def test_a_config_refused_in_on_configure_is_a_fatal_startup_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "control"
    not_a_folder.write_text("a file where the plugin wants a folder")

    process = await start_plugin_process(
        "duragent.testing.echo_gateway", {"control_dir": str(not_a_folder)}, tmp_path
    )
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["code"] == "startup_failed"
    assert fatal["fatal"] is True
    assert str(not_a_folder) in fatal["message"]
    assert code == 1
