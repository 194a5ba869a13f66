"""What stdout's encoding can carry: a locale such as en_US.ISO-8859-1 lacks `⚙`, `›` or a reply's `☕`.

Only the standard library is used: `main` calls this before every command, fast paths included.
"""

from __future__ import annotations

import codecs
import io
import sys


def stdout_is_utf8() -> bool:
    """Whether stdout encodes every character."""
    try:
        return codecs.lookup(sys.stdout.encoding or "ascii").name == "utf-8"
    except LookupError:
        return False


def tolerate_unencodable_output() -> None:
    """On a stdout whose encoding lacks some characters, print `?` for them instead of failing
    with UnicodeEncodeError, as stderr already does (it escapes them)."""
    if not stdout_is_utf8() and isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")
