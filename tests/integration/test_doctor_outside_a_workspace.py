"""`duragent doctor` run outside any workspace says so first, instead of calling the missing
duragent.yaml ok, and creates nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")


def test_doctor_outside_a_workspace_warns_that_there_is_none_and_says_what_to_run(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = subprocess.run(
        [str(DURAGENT), "doctor", "--json"], cwd=elsewhere, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1, result.stderr
    config = next(check for check in json.loads(result.stdout)["checks"] if check["name"] == "config")
    assert config == {
        "name": "config",
        "status": "warn",
        "message": "not a Duragent workspace: no duragent.yaml here or in any parent folder "
        "(the checks below use the defaults)",
        "hint": "cd into your workspace, or run `duragent init` to make one here",
    }
    assert list(elsewhere.iterdir()) == []
