"""Discord's markup in a received message's text, as a person reading Discord sees it.

Discord sends `<#123>` for a channel, `<@&123>` for a role, `<:party:123>` (`<a:...>` when
animated) for a server's own emoji and `</deploy:123>` for a slash command; it shows them as
#general, @helpers, :party: and /deploy. Inside code (`` `<#123>` ``) it shows them as typed,
and so do these.

    >>> as_read("in <#1> ask <@&2> <:party:3> `<#1>`", channels={1: "general"}, roles={2: "helpers"})
    'in #general ask @helpers :party: `<#1>`'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Code Discord shows as typed: fenced blocks, then inline spans.
_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)
_MARKUP = re.compile(
    r"<#(?P<channel>\d+)>|<@&(?P<role>\d+)>|<a?:(?P<emoji>\w{2,32}):\d+>|</(?P<command>[\w -]{1,100}):\d+>"
)


def as_read(text: str, *, channels: Mapping[int, str], roles: Mapping[int, str]) -> str:
    """`text` with channels, roles, custom emoji and commands shown by name; a channel or role
    not in `channels`/`roles` (one the bot cannot see) stays as Discord sent it."""
    pieces = _CODE.split(text)  # (odd pieces are code)
    return "".join(
        piece if index % 2 else _MARKUP.sub(lambda found: _named(found, channels, roles), piece)
        for index, piece in enumerate(pieces)
    )


def _named(found: re.Match[str], channels: Mapping[int, str], roles: Mapping[int, str]) -> str:
    if found["channel"] is not None:
        name = channels.get(int(found["channel"]))
        return f"#{name}" if name else found[0]
    if found["role"] is not None:
        name = roles.get(int(found["role"]))
        return f"@{name}" if name else found[0]
    if found["emoji"] is not None:
        return f":{found['emoji']}:"
    return f"/{found['command']}"
