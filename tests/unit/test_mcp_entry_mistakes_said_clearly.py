"""Mistakes in an MCP server entry said in words, at the entry: a bad name (not the regular
expression it fails), a timeout of zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.errors import ConfigError


def test_a_server_name_with_a_space_or_too_long_is_said_in_words_where_written(tmp_path: Path) -> None:
    path = tmp_path / "duragent.yaml"
    path.write_text(
        "data_dir: data\n"
        "mcp_servers:\n"
        "  - {name: my server, command: srv}\n"
        f"  - {{name: {'a' * 33}, command: srv}}\n"
        "  - {name: fine-name_2, command: srv}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    rule = "must be 1 to 32 letters, digits, '-' and '_', starting with a letter or digit"
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}:3:12: mcp_servers[0].name: 'my server' {rule}",
        f"{path}:4:12: mcp_servers[1].name: '{'a' * 33}' {rule}",
    ]


def test_a_timeout_of_zero_is_refused_where_written(tmp_path: Path) -> None:
    path = tmp_path / "duragent.yaml"
    path.write_text(
        "data_dir: data\nmcp_servers:\n  - {name: time, command: srv, start_timeout: 0s, call_timeout: 0}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}:3:47: mcp_servers[0].start_timeout: must be longer than 0s",
        f"{path}:3:65: mcp_servers[0].call_timeout: must be longer than 0s",
    ]
