"""What `duragent init --telegram/--discord/--slack` writes: plugin entries, a route, an owner allowlist.

Each platform's setup names the variables holding its tokens (never their values: duragent.yaml
gets `${VAR}`) and the owner's id on that platform. The agent is written to answer direct
messages from its owners only and no group chat until the user lists one, so a bot on a home
server never answers strangers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from duragent.errors import UsageError

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ChatSetup:
    """One chat platform's choices: the owner's id there and the variable holding the bot token."""

    owner_id: str
    token_variable: str

    #: The gateway's name in duragent.yaml and routes (also the plugin's `duragent-gateway-<name>`).
    platform: ClassVar[str] = ""
    title: ClassVar[str] = ""
    owner_pattern: ClassVar[str] = ""
    #: How the owner finds their id, for errors and prompts.
    owner_hint: ClassVar[str] = ""
    #: An example group allowlist entry, for the comment in agent.yaml.
    group_example: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for variable in self.variables():
            if not _VARIABLE.fullmatch(variable):
                raise UsageError(f"{variable!r} is not an environment variable name")
        if not re.fullmatch(self.owner_pattern, self.owner_id):
            raise UsageError(f"{self.owner_id!r} is not a {self.title} user id ({self.owner_hint})")

    def variables(self) -> list[str]:
        """The environment variables the plugin's config reads."""
        return [self.token_variable]

    def config_lines(self) -> list[str]:
        """The entry's `config:` lines (indented under the entry)."""
        return [f"bot_token: ${{{self.token_variable}}}"]

    def entry(self) -> str:
        """This platform's `gateways.external[]` entry."""
        config = "".join(f"        {line}\n" for line in self.config_lines())
        return (
            f"    - name: {self.platform}\n"
            f"      command: duragent-gateway-{self.platform}\n"
            "      restart: always\n"
            f"      config:\n{config}"
        )

    def config_block(self, agent: str) -> str:
        """The duragent.yaml lines for this platform alone."""
        return gateways_config_block([self], agent)

    def access_block(self) -> str:
        """The agent.yaml lines for this platform alone."""
        return access_block([self])


@dataclass(frozen=True)
class TelegramSetup(ChatSetup):
    """`init --telegram`."""

    token_variable: str = "TELEGRAM_BOT_TOKEN"
    platform: ClassVar[str] = "telegram"
    title: ClassVar[str] = "Telegram"
    owner_pattern: ClassVar[str] = r"[0-9]{1,20}"
    owner_hint: ClassVar[str] = "digits; @userinfobot tells you yours"
    group_example: ClassVar[str] = '"telegram:-1001234567890"'


@dataclass(frozen=True)
class DiscordSetup(ChatSetup):
    """`init --discord`."""

    token_variable: str = "DISCORD_BOT_TOKEN"
    platform: ClassVar[str] = "discord"
    title: ClassVar[str] = "Discord"
    owner_pattern: ClassVar[str] = r"[0-9]{15,21}"
    owner_hint: ClassVar[str] = (
        "digits; turn on Developer Mode, then right-click your name and choose Copy User ID"
    )
    group_example: ClassVar[str] = '"discord:<channel id>"'


@dataclass(frozen=True)
class SlackSetup(ChatSetup):
    """`init --slack`: Socket Mode needs the app-level token too."""

    token_variable: str = "SLACK_BOT_TOKEN"
    app_token_variable: str = "SLACK_APP_TOKEN"
    platform: ClassVar[str] = "slack"
    title: ClassVar[str] = "Slack"
    owner_pattern: ClassVar[str] = r"[UW][A-Z0-9]{2,20}"
    owner_hint: ClassVar[str] = "like U0123ABCD; your profile's ⋮ menu has Copy member ID"
    group_example: ClassVar[str] = '"slack:C0123ABCD"'

    def variables(self) -> list[str]:
        """The bot token's variable and the app-level token's."""
        return [self.token_variable, self.app_token_variable]

    def config_lines(self) -> list[str]:
        """Both tokens; Socket Mode is the default, so no public URL is needed."""
        return [f"bot_token: ${{{self.token_variable}}}", f"app_token: ${{{self.app_token_variable}}}"]


def gateways_config_block(setups: Sequence[ChatSetup], agent: str) -> str:
    """The duragent.yaml lines: every platform's plugin, and routes sending their chats to `agent`."""
    flags = " ".join(f"--{setup.platform}" for setup in setups)
    entries = "".join(setup.entry() for setup in setups)
    routes = "".join(f"  - match:\n      gateway: {setup.platform}\n    agent: {agent}\n" for setup in setups)
    return (
        f"\n# Chat gateways (duragent init {flags}); docs/gateways.md walks through the set-up.\n"
        f"gateways:\n  external:\n{entries}"
        "\n# Which agent answers which chats; the first matching route wins.\n"
        f"routes:\n{routes}"
    )


def access_block(setups: Sequence[ChatSetup]) -> str:
    """The agent.yaml lines: only the owners may talk to the bot, in DMs, until you allow more."""
    owners = ", ".join(f'"{setup.owner_id}"' for setup in setups)
    examples = " or ".join(setup.group_example for setup in setups)
    flags = " ".join(f"--{setup.platform}" for setup in setups)
    return (
        f"\n  # Who may talk to this agent through chat gateways (duragent init {flags}).\n"
        "  # A bot on a home server must not answer strangers: only listed ids get a reply.\n"
        "  access:\n"
        "    dm:\n"
        "      policy: allowlist\n"
        f"      allowlist: [{owners}]\n"
        "    groups:\n"
        "      policy: allowlist\n"
        f"      allowlist: []   # e.g. {examples} to join a group chat\n"
        "      activation: mention\n"
    )
