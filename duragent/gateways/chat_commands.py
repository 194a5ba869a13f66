"""How people type chat commands (`/reset`, `/reset@bot`, `@bot /reset`), for plugins to pass
them on as the router reads them: a message starting with `/command`, and `mentions_bot` true
when the command names the bot.

A platform's client writes a mention of the bot as markup of its own (Discord `<@123>`, Slack
`<@U0123>`): only the plugin knows which markup is the bot's, so the plugin strips it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A chat command and what follows it: `/reset`, `/reset@bot`, `/status now`.
_COMMAND = r"/[A-Za-z]\w*(?:@\S+)?(?:\s.*)?"
#: The name a command is addressed to: `bot` in `/reset@bot ...`.
_ADDRESSEE = re.compile(r"\s*/[A-Za-z]\w*@(\S+)")


def command_after_mention(text: str, bot_mentions: Iterable[str]) -> str | None:
    """The chat command in `text` (`/reset ...`) when it stands alone or right after one of
    `bot_mentions` (the bot's mention as the platform writes it, `<@123>`); else None.

    In a group that answers only when addressed, `@bot /reset` is how a command addresses the
    bot, and on Slack the only way to type one: left as text, it would reach the agent as talk.
    """
    alternatives = "|".join(re.escape(mention) for mention in bot_mentions if mention)
    mention = rf"(?:(?:{alternatives})\s*)?" if alternatives else ""
    found = re.fullmatch(rf"\s*{mention}({_COMMAND})", text, re.DOTALL)
    return found.group(1) if found is not None else None


def command_addressed_to(text: str, bot_name: str) -> bool:
    """Whether `text` starts with a chat command addressed to `bot_name` (`/reset@bot_name`).

    Platforms other than Telegram do not mark the name as a mention of the bot; the router
    takes an addressed command in a group for another bot's unless `mentions_bot` says it is ours.
    """
    found = _ADDRESSEE.match(text)
    return bool(bot_name) and found is not None and found.group(1).casefold() == bot_name.casefold()
