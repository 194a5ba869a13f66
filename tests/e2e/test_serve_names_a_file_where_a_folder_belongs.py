"""A file where `duragent serve` needs a folder of the data directory (agents/, memory/, run/):
the server refuses to start with one line naming the path and what to do, not a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.server_harness import cli, free_port, write_workspace

pytestmark = pytest.mark.slow


def serve_with_a_file_at(tmp_path: Path, folder: str) -> tuple[Path, str]:
    """`duragent serve` over a workspace whose data folder `folder` was replaced by a file; what it said."""
    config = write_workspace(tmp_path, "http://127.0.0.1:9")  # (no turn runs: no model is asked)
    in_the_way = tmp_path / "data" / folder
    shutil.rmtree(in_the_way, ignore_errors=True)  # (run/ is made by the server: not there yet)
    in_the_way.write_text("a file someone saved here by mistake\n")
    served = cli(config, "serve", "--port", str(free_port()), timeout=60)
    assert served.returncode != 0, served.stdout + served.stderr
    return in_the_way, served.stdout + served.stderr


@pytest.mark.parametrize("folder", ["agents", "memory"])
def test_a_file_where_a_watched_folder_belongs_is_named(tmp_path: Path, folder: str) -> None:
    in_the_way, said = serve_with_a_file_at(tmp_path, folder)
    assert "Traceback" not in said, said
    assert f"error: {in_the_way} is a file, not a folder" in said, said
    assert "move or rename the file" in said, said


def test_a_file_where_the_run_folder_belongs_is_named(tmp_path: Path) -> None:
    in_the_way, said = serve_with_a_file_at(tmp_path, "run")
    assert "Traceback" not in said, said
    assert "tokens.json" not in said, said
    assert f"error: {in_the_way} is a file, not a folder" in said, said
    assert "move or rename the file" in said, said
