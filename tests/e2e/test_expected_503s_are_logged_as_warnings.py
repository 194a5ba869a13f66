"""A 503 for what is no bug of the server's (the disk full, the database away) is logged once, at
WARNING, with what to do, and without a traceback: an operator's log reads as an outage to act
on, not as a crash to report."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_a_full_disk_is_a_503_and_loses_nothing import FullDisk

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def test_a_503_for_a_full_disk_is_logged_once_as_a_warning_saying_what_to_do(
    start_api: ApiFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api: Api = await start_api(git=False, fsync="turn")
    data = tmp_path / "ws0" / "data"
    disk = FullDisk(monkeypatch, data, errno.ENOSPC)
    disk.full = True
    caplog.set_level(logging.INFO)

    status, body = await api.call("POST", "/api/v1/sessions", {"agent": "helper"})

    assert status == 503, body
    told = [record for record in caplog.records if record.name == "duragent.server.problems"]
    assert [record.levelno for record in told] == [logging.WARNING], caplog.text
    assert "no space left" in told[0].getMessage().lower()
    assert "retry" in told[0].getMessage() or "try again" in told[0].getMessage(), told[0].getMessage()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert all(record.exc_info is None for record in caplog.records), caplog.text
