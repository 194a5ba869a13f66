"""Terminals and scripts of one person share a client state file (`send` from cron has no tty:
every job is the same client), and save it whenever they like.

Each save wrote the same `<client>.tmp` and renamed it into place: a second process renaming
after the first found no temporary file, and its `send` ended in a traceback after the reply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAVER = """
import sys
from pathlib import Path
from duragent.client.state import ClientState

state = ClientState.load(Path(sys.argv[1]), identity="cron")
for n in range(300):
    state.attached("helper", f"s_{sys.argv[2]}")
    state.saw(f"s_{sys.argv[2]}", str(n))
    state.save()
"""


def test_processes_saving_one_client_state_at_once_all_succeed_and_leave_it_whole(tmp_path: Path) -> None:
    savers = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(tmp_path), str(n)], stderr=subprocess.PIPE, text=True
        )
        for n in range(4)
    ]
    problems = [saver.communicate(timeout=120)[1] for saver in savers]

    assert [saver.returncode for saver in savers] == [0, 0, 0, 0], "\n".join(problems)
    saved = json.loads((tmp_path / "clients" / "cron.json").read_text())
    assert saved["last_attached"] in {f"s_{n}" for n in range(4)}
    assert sorted(p.name for p in (tmp_path / "clients").iterdir()) == ["cron.json"]
