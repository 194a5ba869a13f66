"""What the fast path of `duragent send` takes on itself, and what it leaves to the full command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from duragent.cli.quick_send import SendOptions, data_path_of, parse_send_options, started_server
from duragent.client import launcher
from duragent.client.runfile import write_run_info


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["hello"], SendOptions("hello")),
        (["-a", "helper", "hi there"], SendOptions("hi there", agent="helper")),
        (["--agent=helper", "--session", "s_01", "hi"], SendOptions("hi", agent="helper", session="s_01")),
        (["--new", "--json", "--no-stream", "hi"], SendOptions("hi", new=True, as_json=True, no_stream=True)),
        (["-"], SendOptions("-")),  # parsed, then left to the full command (stdin is read once)
        (["--", "--not-an-option"], SendOptions("--not-an-option")),
    ],
)
def test_plain_sends_are_taken(args: list[str], expected: SendOptions) -> None:
    assert parse_send_options(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        [],  # the full command says a message is missing
        ["--help"],
        ["--server", "http://127.0.0.1:9", "hi"],
        ["hi", "there"],  # two messages: the full command's error
        ["--agent"],
        ["-a", "one", "-a", "two", "hi"],
        ["--agent=one", "--agent=two", "hi"],
        ["--session", "s_01", "--new", "hi"],  # they contradict: the full command says so
    ],
)
def test_anything_else_goes_to_the_full_command(args: list[str]) -> None:
    assert parse_send_options(args) is None


def test_the_data_directory_is_read_from_a_plain_duragent_yaml(tmp_path: Path) -> None:
    config = tmp_path / "duragent.yaml"
    config.write_text("# a workspace\nserver:\n  host: 127.0.0.1\n  # api_token: ${DURAGENT_API_TOKEN:-}\n")
    assert data_path_of(config) == (tmp_path / ".duragent").resolve()
    config.write_text("data_dir: state  # kept apart\n")
    assert data_path_of(config) == (tmp_path / "state").resolve()
    config.write_text(f"data_dir: {tmp_path / 'abs'}\n")
    assert data_path_of(config) == tmp_path / "abs"


@pytest.mark.parametrize(
    "text",
    [
        "data_dir: ${HOME}/agents\n",
        "data_dir: 'quoted dir'\n",
        "data_dir:\n  - odd\n",
        "server:\n  api_token: ${MY_TOKEN}\n",
        "server: {host: 127.0.0.1, api_token: ${MY_TOKEN}}\n",
        "data_dir: a\ndata_dir: b\n",
    ],
)
def test_a_config_that_needs_the_real_loader_is_left_to_it(tmp_path: Path, text: str) -> None:
    config = tmp_path / "duragent.yaml"
    config.write_text(text)
    assert data_path_of(config) is None


def test_a_server_started_by_hand_while_ours_failed_is_left_to_the_full_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ours exits on the data directory's lock because a person's `duragent serve` took it first:
    # that server serves this workspace, so the full command connects to it instead of failing.
    (tmp_path / "duragent.yaml").write_text("server:\n  host: 127.0.0.1\n")
    data_path = (tmp_path / ".duragent").resolve()
    monkeypatch.chdir(tmp_path)

    def lost_to_a_server_started_by_hand(*args: object, **kwargs: object) -> None:
        write_run_info(data_path, {"pid": os.getpid(), "url": "http://127.0.0.1:9"})
        raise launcher.ServerExited("the server could not start: data directory is locked")

    monkeypatch.setattr(launcher, "connect", lost_to_a_server_started_by_hand)
    assert started_server({}) is None
