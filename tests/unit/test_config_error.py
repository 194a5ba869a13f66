"""ConfigError reports each problem with its location, however the problems are handed to it."""

from __future__ import annotations

from duragent.errors import ConfigError, Location, Problem

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
