"""Durations written as `90s`, `30m`, `2h`, `1d`, `500ms`, or a number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d)\s*)+$"


def parse_duration(value: Any) -> timedelta:
    """Parse `1h30m`, `90s`, `2h` or plain seconds; raise ValueError with the accepted forms."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 90s, 30m or 2h, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        try:
            return timedelta(seconds=value)
        except OverflowError:
            raise ValueError(f"duration {value!r} is too long") from None
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.isdigit():
            try:
                return timedelta(seconds=int(text))
            except OverflowError:
                raise ValueError(f"duration {value!r} is too long") from None
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            try:
                return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
            except OverflowError:
                raise ValueError(f"duration {value!r} is too long") from None
    raise ValueError(f"expected a duration like 90s, 30m or 2h, got {value!r}")


def format_duration(value: timedelta) -> str:
    """The shortest `2h`, `30m`, `90s`, `1h30m`, `1s500ms` form of a duration (to the millisecond)."""
    milliseconds = round(value.total_seconds() * 1000)
    seconds, milliseconds = divmod(milliseconds, 1000)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    if milliseconds:
        out += f"{milliseconds}ms"
    return out or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN, "examples": ["90s", "30m", "2h"]},
                {"type": "number", "minimum": 0, "description": "seconds"},
            ]
        }
    ),
]
