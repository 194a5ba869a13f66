"""`duragent serve stop --timeout -1` is a usage error that leaves the server running, not a stop
request followed by `pid N is still running after -1s` (the server did stop)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.waiting import until

DURAGENT = Path(sys.executable).with_name("duragent")


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_a_negative_stop_timeout_is_refused_before_the_server_is_asked_to_stop(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo", "--no-git").returncode == 0
    run_file = tmp_path / ".duragent" / "run" / "serve.json"
    with subprocess.Popen(
        [str(DURAGENT), "serve", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:
            asyncio.run(until(run_file.exists, within=30))

            refused = duragent(tmp_path, "serve", "stop", "--timeout", "-1")

            assert refused.returncode == 2, refused.stderr
            assert "--timeout" in refused.stderr
            assert "still running" not in refused.stderr
            assert server.poll() is None
            assert duragent(tmp_path, "serve", "status").returncode == 0
        finally:
            stopped = duragent(tmp_path, "serve", "stop")
            assert stopped.returncode == 0, stopped.stderr
            server.wait(timeout=30)
