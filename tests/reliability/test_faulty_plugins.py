"""Gateway plugins that misbehave, under a real `duragent serve`: it stays up and reports each.

Six plugins at once (crash loop, garbage before `ready`, a flood of bad lines, no `ready`, no
`pong`, ignores SIGTERM), with their timeouts shortened in duragent.yaml (`TIMEOUTS`; the
defaults, 30 s to be ready, a ping every 30 s answered within 10 s and 5 s to exit, only make
the same waits longer). The server keeps answering, reports each plugin's state and last
error on the admin API (a crash loop also on /readyz), logs a flood a few times only, and stops
cleanly, killing the plugin that ignores SIGTERM.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

READY = 'print(json.dumps({"type": "ready", "gateway": sys.argv[1], "version": "v1alpha1"}), flush=True)'
PLUGINS = {
    "crashing": "sys.exit(1)",
    "garbage": 'print("[" * 100_000, flush=True)\nprint("not json", flush=True)\n' + READY + "\nanswer()",
    "flood": 'for n in range(50_000):\n    print("junk", n)\nsys.stdout.flush()\n' + READY + "\nanswer()",
    "silent": "time.sleep(600)",
    "deaf": READY + "\nfor line in sys.stdin:\n    pass",
    "stubborn": "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + READY + "\nanswer()\ntime.sleep(600)",
}
#: Each gateway's timeouts: short, yet long enough for a healthy plugin on a busy machine (a
#: healthy plugin that missed them would be restarted, and the flood logged again).
TIMEOUTS = {"ready_timeout": "10s", "ping_interval": "1s", "pong_timeout": "3s", "stop_grace": "1s"}
PRELUDE = """
import json, signal, sys, time

def answer():
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("type") == "ping":
            print(json.dumps({"type": "pong", "request_id": message["request_id"]}), flush=True)
        if message.get("type") == "shutdown":
            return
"""


def gateways_config(root: Path) -> str:
    lines = ["gateways:", "  external:"]
    for name, body in PLUGINS.items():
        script = root / f"{name}.py"
        script.write_text(textwrap.dedent(PRELUDE) + body + "\n")
        lines += [
            f"    - name: {name}",
            f"      command: {sys.executable}",
            f"      args: [{json.dumps(str(script))}, {name}]",
            "      restart: always",
            *(f"      {key}: {value}" for key, value in TIMEOUTS.items()),
        ]
    return "\n".join(lines) + "\n"


def get(server: ServeProcess, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(server.url + path, headers=server.headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def plugins(server: ServeProcess) -> dict[str, dict[str, Any]]:
    status, listed = get(server, "/api/admin/v1/gateways")
    assert status == 200, listed
    items = listed["gateways"] if isinstance(listed, dict) else listed
    return {item["name"]: item for item in items}


def eventually(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        time.sleep(0.25)


def test_misbehaving_plugins_are_each_reported_and_the_server_stays_up(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9", git=False)
    config.write_text(config.read_text() + gateways_config(tmp_path))
    server = start_serve(config, tmp_path / "serve.log")
    stubborn_pid = None
    try:

        def state(name: str) -> dict[str, Any]:
            return plugins(server)[name]

        eventually(lambda: state("garbage")["state"] == "ready", 120, "garbage then ready")
        eventually(lambda: state("flood")["state"] == "ready", 120, "a flood then ready")
        eventually(lambda: state("stubborn")["state"] == "ready", 120, "stubborn ready")
        eventually(lambda: state("crashing")["state"] == "crash_loop", 120, "crash loop reported")
        eventually(
            lambda: "no ready within" in (state("silent").get("last_error") or ""), 120, "no ready reported"
        )
        eventually(
            lambda: "no pong within" in (state("deaf").get("last_error") or ""), 120, "no pong reported"
        )

        status, ready = get(server, "/readyz")
        assert status == 503
        assert any("gateway crashing: crash loop" in problem for problem in ready["problems"])
        with urllib.request.urlopen(server.url + "/livez", timeout=20) as response:
            assert response.read() == b"ok"
        stubborn_pid = state("stubborn")["pid"]
    finally:
        started = time.monotonic()
        exit_code = server.terminate(timeout=60)
    assert exit_code == 0, server.log()[-3000:]
    assert time.monotonic() - started < 30
    assert stubborn_pid
    with pytest.raises(ProcessLookupError):
        os.kill(stubborn_pid, 0)
    flood_lines = [line for line in server.log().splitlines() if "gateway flood:" in line]
    assert 1 <= len(flood_lines) <= 10, f"{len(flood_lines)} log lines for a flood of 50,000 bad lines"
