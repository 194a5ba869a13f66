"""`${VAR}`, `${VAR:-default}` and `$$` expansion in configuration strings."""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A `${...}` reference that cannot be expanded; `column` is 0-based within the string.

    `unset` names the variable when the reference is well formed but the variable is not set.
    """

    def __init__(self, message: str, column: int, unset: str | None = None):
        super().__init__(message)
        self.column = column
        self.unset = unset


def expand(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """Expand `${NAME}`, `${NAME:-default}` and `$$` in `text`; add each NAME read to `used`."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        nxt = text[dollar + 1 : dollar + 2]
        if nxt == "$":
            out.append("$")
            i = dollar + 2
        elif nxt == "{":
            value, i = _expand_reference(text, dollar, env, used)
            out.append(value)
        else:
            out.append("$")
            i = dollar + 1
    return "".join(out)


def _expand_reference(
    text: str, start: int, env: Mapping[str, str], used: set[str] | None
) -> tuple[str, int]:
    close = text.find("}", start)
    if close < 0:
        raise InterpolationError("unclosed '${': add the closing '}'", start)
    body = text[start + 2 : close]
    name, sep, default = body.partition(":-")
    if not _NAME.fullmatch(name):
        raise InterpolationError(
            f"'${{{body}}}' is not a variable reference: use ${{NAME}} or ${{NAME:-default}}",
            start,
        )
    if used is not None:
        used.add(name)
    if name in env:
        return env[name], close + 1
    if sep:
        return default, close + 1
    raise InterpolationError(
        f"environment variable '{name}' is not set (use ${{{name}:-default}} for a default)",
        start,
        unset=name,
    )


def referenced_names(text: str) -> set[str]:
    """Names of every variable referenced as `${NAME...}` in `text`, without expanding."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text.replace("$$", "")))
