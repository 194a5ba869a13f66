"""`duragent schedule list/show/add` print every time in the user's zone, naming it.

The next run was printed in UTC (`2026-12-07T01:30:00Z`) beside a creation time in local time
with no zone: a person in Paris read two clocks on one screen. JSON keeps RFC 3339 in UTC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duragent.scaffold import init_workspace


def duragent(workspace: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "duragent", *args],
        cwd=workspace,
        env={**os.environ, "TZ": "Europe/Paris"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    init_workspace(tmp_path / "ws")
    return tmp_path / "ws"


def test_the_next_run_is_shown_in_the_users_zone_like_the_other_times(workspace: Path) -> None:
    added = duragent(
        workspace, "schedule", "add", "--agent", "assistant", "--cron", "30 9 * * *",
        "--timezone", "Europe/Paris", "--message", "stand-up",
    )  # fmt: skip
    schedule_id = added.split()[1].rstrip(":")
    assert "next run " in added
    assert added.rstrip().endswith(("09:30:00 CET", "09:30:00 CEST"))

    listed = duragent(workspace, "schedule", "list")
    [row] = [line for line in listed.splitlines() if line.startswith(schedule_id)]
    assert " 09:30:00 CE" in row
    # no time in UTC ("…Z"); the id in front is left out: a ULID may end in Z itself
    assert "Z " not in row.removeprefix(schedule_id)

    shown = duragent(workspace, "schedule", "show", schedule_id)
    next_run = next(line for line in shown.splitlines() if line.startswith("next run"))
    created = next(line for line in shown.splitlines() if line.startswith("created"))
    assert next_run.endswith(("09:30:00 CET", "09:30:00 CEST")), next_run
    assert " CET " in created or " CEST " in created, created

    [document] = json.loads(duragent(workspace, "schedule", "list", "--json"))
    assert document["next_run"].endswith(("08:30:00Z", "07:30:00Z"))  # 9:30 in Paris, in UTC


def test_a_one_off_time_is_shown_in_the_users_zone_too(workspace: Path) -> None:
    added = duragent(
        workspace, "schedule", "add", "--agent", "assistant", "--at", "2099-01-02T08:00:00Z",
        "--message", "happy new year",
    )  # fmt: skip
    schedule_id = added.split()[1].rstrip(":")
    assert f"created {schedule_id}: at 2099-01-02 09:00:00 CET, next run 2099-01-02 09:00:00 CET" in added

    listed = duragent(workspace, "schedule", "list")
    [row] = [line for line in listed.splitlines() if line.startswith(schedule_id)]
    assert "at 2099-01-02 09:00:00 CET" in row
    shown = duragent(workspace, "schedule", "show", schedule_id)
    assert "timing    at 2099-01-02 09:00:00 CET" in shown


def test_a_one_off_time_that_is_not_a_time_says_how_to_write_one(workspace: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "duragent", "schedule", "add", "--agent", "assistant", "--at", "tomorrow",
         "--message", "x"],
        cwd=workspace, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "--at 'tomorrow' is not a time: give one with its zone, e.g. 2026-12-08T09:00:00+01:00" in done.stderr
    )
