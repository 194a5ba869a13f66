"""Slack's markup in a received message's text, as a person reading Slack sees it.

Slack sends `<#C0123|general>` for a channel, `<https://example.com|example>` for a link,
`<!here>` and `<!subteam^S0123|@team>` for group mentions, and escapes the `<`, `>` and `&`
people type as `&lt;`, `&gt;` and `&amp;`. So every `<...>` in the text is Slack's, and what a
person typed that only looks like it (`&lt;#C0123|x&gt;`) stays as typed, unescaped.

    >>> as_read("see <#C0123|general>: <https://example.com|docs> &amp; <!here>", {})
    'see #general: docs (https://example.com) & @here'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: One piece of Slack's markup: `<target>` or `<target|label>` (members are `@U...`, see the plugin).
_MARKUP = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
#: A channel Slack names without its label (`<#C0123>` or `<#C0123|>`): its name is looked up.
CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)\|?>")
#: Group mentions everyone in Slack sees as `@here`, `@channel`, `@everyone`.
_BROADCASTS = frozenset({"here", "channel", "everyone"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def as_read(text: str, channel_names: Mapping[str, str | None]) -> str:
    """`text` with Slack's markup shown as Slack shows it and its entities unescaped.

    `channel_names` holds the names of channels mentioned without a label (see `CHANNEL`); one
    it lacks stays as Slack sent it, as does markup this does not know (a member not found).
    """
    rendered = _MARKUP.sub(lambda found: _piece(found[1], found[2], channel_names) or found[0], text)
    return unescape(rendered)


def unescape(text: str) -> str:
    """Slack's three entities as the characters people typed (`&amp;` last: `&amp;lt;` is `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _piece(target: str, label: str | None, channel_names: Mapping[str, str | None]) -> str | None:
    """What one `<target|label>` reads as; None to leave it as it is."""
    if target.startswith("#"):
        name = label or channel_names.get(target[1:])
        return f"#{name}" if name else None
    if target.startswith("!"):
        return _special(target[1:], label)
    if _SCHEME.match(target) and not target.startswith("@"):
        return _link(target, label)
    return None


def _special(command: str, label: str | None) -> str | None:
    """`<!here>` -> `@here`; `<!subteam^S0123|@team>` -> `@team`; `<!date^...|fallback>` -> its
    fallback text."""
    if command in _BROADCASTS:
        return f"@{command}"
    if command.startswith("subteam^"):
        name = label or command.removeprefix("subteam^")
        return name if name.startswith("@") else f"@{name}"
    return label or None


def _link(url: str, label: str | None) -> str:
    """A link as its text, followed by where it leads when the text does not already say it:
    `example (https://example.com)`; `ada@example.com` for `<mailto:ada@example.com|ada@...>`."""
    shown = url.removeprefix("mailto:") if url.startswith("mailto:") else url
    if not label:
        return shown
    bare = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url).rstrip("/")
    if label in (url, shown, bare):
        return label
    return f"{label} ({shown})"
