"""A data directory that is full (or that the server may not write) answers a clear 503.

The disk filling up is injected at the narrowest real boundary: `os.write` on a descriptor of
a file under the data directory raises ENOSPC (what a write to a full filesystem raises), while
every other write (sockets, the fake model, pytest) goes on. What must hold: nothing is
acknowledged that was not stored, the answer is a 503 problem naming the file and what to do,
and once space is back the session goes on without a restart and without losing anything.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


class FullDisk:
    """Make writes to files under `root` fail with `error` while `full` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, error: int = errno.ENOSPC):
        self.root = str(root.resolve())
        self.error = error
        self.full = False
        #: Only writes holding these bytes fail, when set (the disk fills up in the middle of a turn).
        self.refused: bytes | None = None
        real_write = os.write

        def write(fd: int, data: Any) -> int:
            refused = self.refused is None or self.refused in bytes(data)
            if self.full and refused and self._under_root(fd):
                raise OSError(self.error, os.strerror(self.error))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)

    def _under_root(self, fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith(self.root)
        except OSError:
            return False


def events_on_disk(data: Path, session_id: str) -> list[dict[str, Any]]:
    log = data / "sessions" / session_id / "events.jsonl"
    return [json.loads(line) for line in log.read_bytes().splitlines()]


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    started: Api = await start_api(git=False, fsync="turn")
    return started


@pytest.mark.parametrize(
    ("error", "words"),
    [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"), (errno.EROFS, "read-only")],
)
async def test_a_message_the_disk_cannot_take_is_a_503_naming_the_file_and_is_not_stored(
    api: Api,
    fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    error: int,
    words: str,
) -> None:
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    disk = FullDisk(monkeypatch, data, error)
    fake_llm.enqueue(text("before"), text("after"))
    base = f"/api/v1/sessions/{session_id}/messages"
    assert (await api.call("POST", base, {"content": "one"}))[0] == 200
    acknowledged = events_on_disk(data, session_id)

    disk.full = True
    status, body = await api.call("POST", base, {"content": "while full"})

    assert status == 503, body
    assert body["type"] == "urn:duragent:problem:storage"
    assert words in body["detail"].lower()
    assert str(data / "sessions" / session_id) in body["detail"]
    assert events_on_disk(data, session_id) == acknowledged  # nothing half written, nothing claimed
    assert len(fake_llm.requests) == 1  # the model was not asked about a message that was not kept

    disk.full = False  # space freed: no restart needed
    status, body = await api.call("POST", base, {"content": "two"})
    assert (status, body["content"]) == (200, "after")
    _, page = await api.call("GET", base)
    said = [message["content"] for message in page["messages"] if message["type"] == "user_message"]
    assert said == ["one", "two"]
    stored = events_on_disk(data, session_id)
    assert [event["seq"] for event in stored] == list(range(1, len(stored) + 1))


async def test_a_message_through_the_openai_api_the_disk_cannot_take_is_a_503_not_a_model_failure(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "ws0" / "data"
    fake_llm.enqueue(text("before"), text("after"))
    request = {"model": "helper", "user": "kitchen", "messages": [{"role": "user", "content": "one"}]}
    status, first = await api.call("POST", "/v1/chat/completions", request)
    assert status == 200, first
    disk = FullDisk(monkeypatch, data)
    disk.full = True

    status, body = await api.call(
        "POST", "/v1/chat/completions", {**request, "messages": [{"role": "user", "content": "two"}]}
    )

    # a 502 would blame the model, and tell the client the turn ran
    assert status == 503, body
    assert "no space left" in body["error"]["message"].lower()
    assert len(fake_llm.requests) == 1
    disk.full = False
    status, body = await api.call(
        "POST", "/v1/chat/completions", {**request, "messages": [{"role": "user", "content": "two"}]}
    )
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "after"


async def test_a_session_created_on_a_full_disk_is_a_503_and_leaves_no_session(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "ws0" / "data"
    disk = FullDisk(monkeypatch, data)
    disk.full = True

    status, body = await api.call("POST", "/api/v1/sessions", {"agent": "helper"})

    assert status == 503, body
    assert "no space left" in body["detail"].lower()
    sessions = data / "sessions"
    assert not sessions.exists() or list(sessions.iterdir()) == []  # no empty folder left behind
    disk.full = False
    _, listed = await api.call("GET", "/api/v1/sessions")
    assert listed["sessions"] == []
    assert await api.new_session()


async def test_a_schedule_made_on_a_full_disk_is_a_503_naming_its_file_and_is_not_kept(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "ws0" / "data"
    disk = FullDisk(monkeypatch, data)
    disk.full = True
    request = {"agent": "helper", "every": "1h", "message": "drink water"}

    status, body = await api.call("POST", "/api/v1/schedules", request)

    assert status == 503, body
    assert "no space left" in body["detail"].lower()
    assert str(data / "schedules") in body["detail"]
    assert (await api.call("GET", "/api/v1/schedules"))[1]["schedules"] == []
    assert [path.name for path in (data / "schedules").glob("*")] == []  # no temp file left
    disk.full = False
    assert (await api.call("POST", "/api/v1/schedules", request))[0] == 201


async def test_a_reply_the_full_disk_cannot_take_is_a_503_and_the_turn_can_be_retried_once_freed(
    api: Api, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "ws0" / "data"
    session_id = await api.new_session()
    disk = FullDisk(monkeypatch, data)
    disk.full, disk.refused = True, b'"assistant_message"'  # the message fits; its reply does not
    fake_llm.enqueue(text("lost reply"), text("the reply"))

    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})

    assert status == 503, body
    assert "no space left" in body["detail"].lower()
    stored = events_on_disk(data, session_id)
    # the message is kept (its turn is owed a reply), the reply is not; the small `error` event fit
    assert [event["type"] for event in stored] == ["session_start", "user_message", "error"]
    disk.full = False
    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/retry")
    assert status == 202, body

    def replies() -> list[str]:
        events = events_on_disk(data, session_id)
        return [event["payload"]["content"] for event in events if event["type"] == "assistant_message"]

    await until(replies)
    assert replies() == ["the reply"]
    users = [event for event in events_on_disk(data, session_id) if event["type"] == "user_message"]
    assert [event["payload"]["content"] for event in users] == ["hi"]  # stored once, not lost
