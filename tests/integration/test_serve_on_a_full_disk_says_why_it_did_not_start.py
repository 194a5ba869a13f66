"""`duragent serve` on a full disk: the run file it writes once ready cannot be written.

What the person must see is that first error (which file, that the disk is full, what to do),
not what failed after it while the server closed (its committer, unable to commit either), and
no temp file may be left beside the run file. The full disk is injected at the narrowest real
boundary: `os.write` on a descriptor of a file in `<data_dir>/run/` raises ENOSPC; the commits
that fail at close fail for real (HEAD detached in the data directory's repository).
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from duragent.cli.serving import run_server
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.stores.base import StorageUnavailable


def fill_the_run_folder(monkeypatch: pytest.MonkeyPatch, run_folder: Path) -> None:
    """Writes to files in `run_folder` fail with ENOSPC, as on a full disk; every other write goes on."""
    real_write = os.write
    root = str(run_folder)

    def write(fd: int, data: Any) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(root):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def detach_head(repository: Path) -> None:
    subprocess.run(["git", "-C", str(repository), "checkout", "--quiet", "--detach"], check=True)


async def test_a_run_file_the_disk_cannot_take_is_the_error_named_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    config = load_config(tmp_path / "ws" / "duragent.yaml")
    data = config.data_path
    # what a crashed run left uncommitted: the committer queues it at start and must commit it at
    # close, which fails (HEAD is detached) as commits fail on a full disk
    left = data / "sessions" / "01LEFTBEHIND" / "events.jsonl"
    left.parent.mkdir(parents=True)
    left.write_text('{"seq": 1}\n')
    detach_head(data)
    run_folder = (data / "run").resolve()
    run_folder.mkdir(exist_ok=True)
    fill_the_run_folder(monkeypatch, run_folder)

    with pytest.raises(StorageUnavailable) as refused:
        # (bounded: a run file written despite the full disk would leave the server serving)
        await asyncio.wait_for(run_server(config, "127.0.0.1", 0, insecure=False, grace=0.5), 60)

    message = str(refused.value)
    assert str(run_folder / "serve.json") in message
    assert "No space left on device" in message
    assert "free space" in message
    assert not [path.name for path in run_folder.iterdir() if "serve.json" in path.name]
