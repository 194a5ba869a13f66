"""JSON from outside peers (model providers, gateway plugins) decoded into text that can be stored.

JSON may escape one half of a surrogate pair on its own (`"\\ud83d"`: a model, a proxy or a chat
platform cutting an emoji in two). Python's `json` keeps it in the `str`, and every later write
of that text as UTF-8 (the session log, PostgreSQL, the HTTP reply) then fails, losing the
reply. Such halves become U+FFFD, the replacement character, as a UTF-8 decoder does with
broken bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A `\uD800`-`\uDFFF` escape: only text holding one can decode to a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_DECODER = json.JSONDecoder()


def loads(text: str) -> Any:
    """`json.loads`, with lone surrogates in any string (keys too) replaced by U+FFFD."""
    value = _decode(text)
    if "\\u" not in text or not _SURROGATE_ESCAPE.search(text):
        return value  # the common case: nothing to look at
    return _cleaned(value)


def _decode(text: str) -> Any:
    """`json.loads(text)`, a third cheaper for text that is one JSON value and nothing else (a
    model's stream chunk): `raw_decode` alone, without `loads`' two whitespace scans."""
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)  # leading whitespace, or not JSON: json.loads decides, and says why
    if end != len(text):
        return json.loads(text)  # trailing whitespace, or extra data
    return value


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD (everything else unchanged)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): _cleaned(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_cleaned(child) for child in value]
    return value
