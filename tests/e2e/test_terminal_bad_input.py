"""What `send` and `session list` say about input they cannot use: what is wrong, what to do.

A message that is not UTF-8 (a Latin-1 file piped in, a byte in an argument) was a Python
traceback, or an HTTP 400 about `body.content` after a session had been made for it; a
`--status` nobody has was "No sessions yet." with exit status 0; a `--server` without `http://`
(`127.0.0.1:8080`) was a traceback from the HTTP library.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import text
from tests.e2e.terminal import DURAGENT, client_env
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures these tests use


def sessions_of(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".duragent" / "sessions").glob("s_*") if p.is_dir())


def send_bytes(
    root: Path, *args: bytes, stdin: bytes = b"", **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*DURAGENT, "send", *args],
        cwd=root,
        env=client_env(**env),
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_a_message_on_stdin_that_is_not_utf8_is_refused_naming_the_byte(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    # (a terminal whose locale reads stdin strictly, as en_US.UTF-8 does, and one that does not)
    for errors in ("strict", "surrogateescape"):
        done = send_bytes(workspace, b"-", stdin=b"caf\xe9 au lait\n", PYTHONIOENCODING=f"utf-8:{errors}")
        said = done.stderr.decode()
        assert done.returncode == 2, said
        assert "Traceback" not in said
        assert "not UTF-8" in said
        assert "0xe9" in said
        assert "iconv" in said  # what to do
    assert sessions_of(workspace) == []
    assert fake_model.server.requests == []


def test_a_message_argument_that_is_not_utf8_is_refused_before_anything_is_sent(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    done = send_bytes(workspace, b"caf\xe9")
    said = done.stderr.decode()
    assert done.returncode == 2, said
    assert "not UTF-8" in said
    assert "0xe9" in said
    assert sessions_of(workspace) == []
    assert fake_model.server.requests == []


def test_session_list_with_a_status_nobody_has_names_the_ones_there_are(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("Hello."))
    assert duragent(workspace, "send", "hi").returncode == 0

    wrong = duragent(workspace, "session", "list", "--status", "bogus")
    assert wrong.returncode == 2, wrong.stdout
    assert "--status" in wrong.stderr
    assert "'bogus'" in wrong.stderr
    assert "active, running, paused or ended" in wrong.stderr

    other_agent = duragent(workspace, "session", "list", "--agent", "nobody")
    assert other_agent.returncode == 0, other_agent.stderr
    assert "No sessions yet." not in other_agent.stdout  # there is one, of another agent
    assert "No session matches these options." in other_agent.stdout


def test_a_server_option_that_is_not_an_http_url_says_what_one_looks_like(workspace: Path) -> None:
    for command in (["send", "--server", "127.0.0.1:8080", "hi"], ["chat", "--server", "notaurl"]):
        done = duragent(workspace, *command)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "--server" in done.stderr
        assert "http://127.0.0.1:8080" in done.stderr  # what one looks like
    listed = duragent(workspace, "attach", "--server", "ftp://x")
    assert listed.returncode == 2, listed.stderr
    assert "'ftp://x'" in listed.stderr
    assert "Traceback" not in listed.stderr


def test_options_that_contradict_each_other_are_refused_naming_both(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """`--session X --new` continued X and ignored `--new` (or failed on X first); `attach X
    --last` attached to X, `attach X --list` listed: one option silently lost, whichever it was."""
    fake_model.enqueue(text("Hello."))
    assert duragent(workspace, "send", "hi").returncode == 0
    (session_id,) = [p.name for p in sessions_of(workspace)]
    for args, both in (
        (["send", "--session", session_id, "--new", "again"], ("--session", "--new")),
        (["send", "--session", "s_nope", "--new", "again"], ("--session", "--new")),
        (["chat", "--session", session_id, "--new"], ("--session", "--new")),
        (["attach", session_id, "--last"], ("SESSION", "--last")),
        (["attach", session_id, "--list"], ("SESSION", "--list")),
        (["attach", "--last", "--list"], ("--last", "--list")),
    ):
        done = subprocess.run(
            [*DURAGENT, *args], cwd=workspace, env=client_env(), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert all(name in done.stderr for name in both), (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert [p.name for p in sessions_of(workspace)] == [session_id]
    assert len(fake_model.server.requests) == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["attach", ""], "the SESSION argument is empty"),
        (["send", "--session", " ", "hi"], "--session is empty"),
        (["chat", "--session", ""], "--session is empty"),
    ],
)
def test_an_empty_session_is_refused_naming_the_argument_even_with_one_session(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM, args: list[str], named: str
) -> None:
    fake_model.enqueue(text("Hello."))
    assert duragent(workspace, "send", "hello").returncode == 0
    refused = duragent(workspace, *args)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert named in refused.stderr
    assert "duragent attach --list" in refused.stderr
    assert len(sessions_of(workspace)) == 1
