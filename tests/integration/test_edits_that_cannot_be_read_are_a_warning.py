"""Committing the edits a person made while nothing ran is the first thing a workspace's committer
does (in `duragent serve`, and in any command that writes to the stores); a file system error
there (a folder replaced by a file, one the process may not read) is a warning naming it, not a
traceback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.workspace import Workspace


async def test_an_agents_folder_replaced_by_a_file_is_a_warning_and_the_committer_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    init_workspace(tmp_path / "ws")
    config = load_config(tmp_path / "ws" / "duragent.yaml")
    shutil.rmtree(config.agents_path)
    config.agents_path.write_text("not a folder\n")

    async with Workspace(config) as workspace:
        with caplog.at_level(logging.WARNING, logger="duragent.workspace"):
            committer = workspace.committer

        assert committer is not None
    assert "could not commit edits made while Duragent was not running" in caplog.text
    assert "Not a directory" in caplog.text
