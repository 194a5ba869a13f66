"""Exceptions shared by every layer, each mapped to user-facing text in one place per surface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# The records here are NamedTuples, not frozen dataclasses: every command imports this module,
# and building a dataclass costs ~4M instructions (~1 ms) of each start, a NamedTuple a quarter.


class Location(NamedTuple):
    """Where something is in a file: 1-based line and column, as editors show them."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class Problem(NamedTuple):
    """One thing wrong with an input, and where it is."""

    message: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class DuragentError(Exception):
    """Base of every error Duragent reports to a user; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(DuragentError):
    """A configuration or agent file is invalid; carries every problem found, with locations."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem] | Problem | str, location: Location | None = None):
        if isinstance(problems, str):
            problems = [Problem(problems, location)]
        elif isinstance(problems, Problem):  # a NamedTuple: iterating it would give its fields
            problems = [problems]
        self.problems: list[Problem] = _in_file_order(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _in_file_order(problems: Sequence[Problem]) -> list[Problem]:
    """Problems of one file from its top down (validation finds them in the model's field order:
    line 103 before line 102); problems of several files, or without a place, as found."""
    places = [problem.location for problem in problems]
    if not all(places) or len({place.file for place in places if place}) != 1:
        return list(problems)
    return sorted(problems, key=_place)


def _place(problem: Problem) -> tuple[int, int]:
    where = problem.location
    return (where.line or 0, where.column or 0) if where is not None else (0, 0)


def error_text(error: DuragentError) -> str:
    """What the CLI prints for `error`: `error: ` before it, and before each problem of a file."""
    if isinstance(error, ConfigError) and len(error.problems) > 1:
        return "\n".join(f"error: {problem}" for problem in error.problems)
    return f"error: {error}"


class UsageError(DuragentError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = 2


class NotFound(DuragentError):
    """A named thing (agent, session, artifact, revision) does not exist."""


class InvalidName(DuragentError):
    """A session id, agent name or artifact name that could escape its folder or is malformed."""

    exit_code = 2


class ServiceUnavailable(DuragentError):
    """A service the request needs (PostgreSQL, S3) cannot be used right now: the server answers
    503, and the same request works once the service is back."""
