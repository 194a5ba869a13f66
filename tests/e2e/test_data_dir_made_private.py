"""A data directory no `duragent init` made is private too, and `duragent doctor` says when one is not.

A server's first start in a workspace whose data directory does not exist yet makes it (with its
tokens, its repository): it is mode 0700 whatever the umask. One that exists keeps its mode (a
group may share it on purpose), and doctor warns, with the command that makes it private.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from duragent.doctor import run_doctor
from tests.e2e.server_harness import free_port
from tests.waiting import until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_servers_first_start_makes_the_data_directory_private(tmp_path: Path) -> None:
    config = tmp_path / "duragent.yaml"
    config.write_text("data_dir: ./nested/data\n")
    log = (tmp_path / "serve.log").open("w")
    command = [sys.executable, "-m", "duragent", "-c", str(config), "serve", "--port", str(free_port())]
    server = await asyncio.to_thread(
        lambda: subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, umask=0o022)
    )
    try:
        data = tmp_path / "nested" / "data"
        await until(lambda: (data / ".git" / "HEAD").exists() or server.poll() is not None, within=60)
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        assert mode(data) == 0o700, oct(mode(data))
        assert mode(tmp_path / "nested") == 0o755, "a parent folder is the umask's"
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait, 30)
        log.close()


def test_doctor_warns_with_the_chmod_that_makes_a_shared_data_directory_private(tmp_path: Path) -> None:
    data = tmp_path / "my data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # made by hand, as the umask had it
    config = tmp_path / "duragent.yaml"
    config.write_text("data_dir: ./my data\ngit:\n  enabled: false\n")

    def check() -> tuple[str, str, str | None]:
        report = run_doctor(config, env={"PATH": os.environ["PATH"]}, wait_seconds=1)
        found = next(c for c in report.checks if c.name == "data dir")
        return found.status, found.message, found.hint

    status, message, hint = check()
    assert status == "warn"
    assert "mode 755: other users of this machine can read" in message
    assert hint == f"chmod 700 '{data}'"
    assert mode(data) == 0o755, "doctor changes nothing"

    data.chmod(0o750)
    status, message, hint = check()
    assert status == "warn"
    assert "its group can read" in message

    subprocess.run(hint, shell=True, check=True)  # (the hint, as a person pastes it)
    status, message, _ = check()
    assert status == "ok", message
