"""ConfigError reports each problem with its location, however the problems are handed to it."""

from __future__ import annotations

from duragent.errors import ConfigError, Location, Problem, error_text

WHERE = Location("duragent.yaml", 3, 5)


def test_one_problem_is_reported_as_one_problem() -> None:
    error = ConfigError(Problem("server.port: must be an integer", WHERE))
    assert error.problems == [Problem("server.port: must be an integer", WHERE)]
    assert str(error) == "duragent.yaml:3:5: server.port: must be an integer"


def test_a_message_and_its_location_make_one_problem() -> None:
    error = ConfigError("unknown key 'sever'", WHERE)
    assert [str(problem) for problem in error.problems] == ["duragent.yaml:3:5: unknown key 'sever'"]


def test_several_problems_are_reported_one_per_line() -> None:
    error = ConfigError([Problem("first", WHERE), Problem("second")])
    assert str(error) == "duragent.yaml:3:5: first\nsecond"


def test_problems_of_one_file_read_from_its_top_down_each_said_as_an_error() -> None:
    """`serve` listed duragent.yaml:103:9 before 102:9, and only the first line said `error:`."""
    error = ConfigError(
        [
            Problem("server.host must be text, got 5", Location("duragent.yaml", 103, 9)),
            Problem("server.port must be a whole number, got 'abc'", Location("duragent.yaml", 102, 9)),
        ]
    )
    assert error_text(error) == (
        "error: duragent.yaml:102:9: server.port must be a whole number, got 'abc'\n"
        "error: duragent.yaml:103:9: server.host must be text, got 5"
    )
    assert error_text(ConfigError("one thing", WHERE)) == "error: duragent.yaml:3:5: one thing"
