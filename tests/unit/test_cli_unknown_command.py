"""A command that does not exist gets an error that names the one the person probably meant."""

from __future__ import annotations

from typer.testing import CliRunner

from duragent.cli import build_app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.output


def test_a_command_of_a_group_typed_on_its_own_points_to_the_group() -> None:
    code, output = run("stop")
    assert code == 2
    assert "No such command 'stop'. Did you mean 'duragent serve stop'?" in output


def test_a_misspelled_command_gets_the_close_spellings() -> None:
    code, output = run("sesion", "list")
    assert code == 2
    assert "Did you mean 'session'" in output


def test_a_name_like_no_command_gets_no_guess() -> None:
    code, output = run("frobnicate")
    assert code == 2
    assert "No such command 'frobnicate'." in output
    assert "Did you mean" not in output
