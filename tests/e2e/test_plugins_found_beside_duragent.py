"""`duragent serve` started by its full path finds the gateway plugins installed beside it.

The systemd unit in examples/ runs `~/.venvs/duragent/bin/duragent serve` without the venv on
PATH, as does anyone who never activated it: `duragent-gateway-discord` (installed next to
`duragent`) must still be found, instead of the plugin failing with "no such executable file"
until it is given up as crash-looping (and `duragent doctor` must say it is found). A real
`duragent serve` with the real Discord plugin against the fake Discord.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from tests.e2e.server_harness import start_serve

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

#: A systemd user unit's PATH: no virtualenv on it.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


async def test_a_plugin_installed_beside_duragent_starts_without_it_on_path(tmp_path: Path) -> None:
    root = tmp_path / "duragent"
    init = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "duragent",
            "init",
            str(root),
            "--yes",
            "--discord-owner",
            "123456789012345678",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert str(Path(sys.executable).parent) not in SYSTEM_PATH.split(os.pathsep)

    async with FakeDiscord() as discord:
        env = {
            "PATH": SYSTEM_PATH,
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_BASE": discord.api_base,
        }
        server = start_serve(root / "duragent.yaml", tmp_path / "serve.log", env=env)
        try:
            await discord.wait_until(lambda: discord.connected or None, within=60)
        finally:
            server.terminate()

    assert "no such executable file" not in server.log()
    # `duragent doctor` looks it up as `serve` does.
    doctor = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "duragent", "-c", str(root / "duragent.yaml"), "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    installed = Path(sys.executable).parent / "duragent-gateway-discord"
    assert f"ok    gateway discord: duragent-gateway-discord is {installed}" in doctor.stdout
