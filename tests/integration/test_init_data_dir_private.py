"""The data directory `duragent init` makes is readable by its owner alone.

It holds every conversation (`sessions/*/events.jsonl`), every memory, the server's log and the
git history of all of them: with the usual umask (022) its folders would be open to every user
of the machine, who cannot read them over the API without the tokens.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")


def init(workspace: Path) -> None:
    subprocess.run(
        [str(DURAGENT), "init", "--yes", "--provider", "demo", str(workspace)],
        check=True,
        capture_output=True,
        umask=0o022,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_the_data_directory_private_to_its_owner(tmp_path: Path) -> None:
    init(tmp_path / "ws")

    data = tmp_path / "ws" / ".duragent"
    assert mode(data) == 0o700, oct(mode(data))
    # the workspace folder (duragent.yaml names variables, holds no secrets) stays as the umask says
    assert mode(tmp_path / "ws") == 0o755
    assert (data / "sessions").is_dir()
    assert (data / "run" / "tokens.json").is_file()


def test_init_leaves_an_existing_data_directory_as_its_owner_set_it(tmp_path: Path) -> None:
    data = tmp_path / "ws" / ".duragent"
    data.mkdir(parents=True)
    data.chmod(0o750)  # shared with a group on purpose

    init(tmp_path / "ws")

    assert mode(data) == 0o750
    assert (data / "agents" / "assistant" / "agent.yaml").is_file()
