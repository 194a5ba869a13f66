"""A plugin that hangs and stops reading its stdin is restarted, even once the pipe to it is full.

Writing to a full pipe waits until the plugin reads; the ping that would find the plugin hung
must not wait behind it, or the plugin (and every chat it serves) would stay stuck for good.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from duragent.config import ExternalGatewayConfig
from duragent.gateways.manager import GatewayManager
from duragent.gateways.protocol import Event, SendMessage
from tests.integration.test_gateway_manager import FAST
from tests.waiting import until

#: Ready, then stuck for good (a deadlock, a blocking call): reads no command, answers no ping.
HUNG_PLUGIN = """
    import json, time
    print(json.dumps({"type": "ready", "gateway": "raw"}), flush=True)
    time.sleep(60)
"""


async def ignore(gateway: str, event: Event) -> None:
    """The router's seat: this test looks at the plugin's status only."""


async def test_a_hung_plugin_with_a_full_stdin_pipe_is_killed_and_restarted(tmp_path: Path) -> None:
    script = tmp_path / "plugin.py"
    script.write_text(textwrap.dedent(HUNG_PLUGIN))
    spec = ExternalGatewayConfig(name="raw", command=sys.executable, args=[str(script)], restart="always")
    manager = GatewayManager([spec], ignore, base_dir=tmp_path, timing=FAST)
    manager.start()
    plugin = manager.plugin("raw")
    try:
        await until(lambda: plugin.status.state == "ready", within=10)
        # Long replies, more than a pipe holds (64 KiB on Linux), none of them read.
        for n in range(8):
            reply = SendMessage(request_id=f"r{n}", chat_id="42", content="x" * 60_000)
            asyncio.get_running_loop().create_task(plugin.send(reply))

        await until(lambda: plugin.status.restarts >= 1, within=10)
        assert plugin.status.last_error == "no pong within 0.5s"
    finally:
        await manager.stop()
