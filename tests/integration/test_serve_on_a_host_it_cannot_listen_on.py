"""`duragent serve --host` naming a host that does not resolve, or an address not on this
machine, says so and what to check (exit 2), not a `socket.gaierror` traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DURAGENT = Path(sys.executable).with_name("duragent")


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("host", ["nosuchhost.invalid", "192.0.2.1"])  # (TEST-NET-1: on no machine)
def test_a_host_serve_cannot_listen_on_is_named_with_what_to_check(tmp_path: Path, host: str) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo", "--no-git").returncode == 0

    refused = duragent(tmp_path, "serve", "--host", host, "--insecure", "--port", "0")

    assert refused.returncode == 2, refused.stderr
    assert f"cannot listen on {host}" in refused.stderr
    assert "--host" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / ".duragent" / "run" / "serve.json").exists()
