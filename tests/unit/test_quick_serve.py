"""What the typer-free start of `duragent serve` takes on itself, and what it leaves to typer."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.cli.quick_serve import ServeCommand, parse_serve_command
from duragent.cli.serving import ServeOptions


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve"], ServeCommand()),
        (["serve", "--port", "0"], ServeCommand(options=ServeOptions(port=0))),
        (
            ["serve", "-p", "8081", "--host=0.0.0.0"],
            ServeCommand(options=ServeOptions(host="0.0.0.0", port=8081)),
        ),
        (
            [
                "--config",
                "w/duragent.yaml",
                "--data-dir",
                "w/.duragent",
                "serve",
                "--auto",
                "--ready-fd",
                "5",
            ],
            ServeCommand(
                Path("w/duragent.yaml"), Path("w/.duragent"), options=ServeOptions(auto=True, ready_fd=5)
            ),
        ),
        (["-c", "x.yaml", "-vv", "serve"], ServeCommand(Path("x.yaml"), verbosity=2)),
        (["-v", "-q", "serve"], ServeCommand(verbosity=-1)),
        (
            ["serve", "--agents-dir", "defs", "--insecure", "--grace", "2.5"],
            ServeCommand(options=ServeOptions(agents_dir=Path("defs"), insecure=True, grace=2.5)),
        ),
    ],
)
def test_plain_serve_command_lines_are_taken(args: list[str], expected: ServeCommand) -> None:
    assert parse_serve_command(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--help"],
        ["serve", "status"],
        ["serve", "stop", "--timeout", "5"],
        ["--version", "serve"],
        ["send", "serve"],  # a message that happens to say "serve"
        ["-c", "serve"],  # a config file named serve, and no command
        ["serve", "--port", "65536"],  # out of range: typer says so
        ["serve", "--port", "http"],
        ["serve", "--port"],
        ["serve", "--port", "1", "--port", "2"],
        ["serve", "--grace", "-1"],
        ["serve", "--grace", "nan"],
        ["serve", "--host", ""],
        ["serve", "--ready-fd", "x"],
        ["serve", "--unknown"],
    ],
)
def test_anything_else_goes_to_typer(args: list[str]) -> None:
    assert parse_serve_command(args) is None
