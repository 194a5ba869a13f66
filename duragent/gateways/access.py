"""Who handles a gateway message and whether they may: route matching and per-agent access."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from duragent.agents.spec import AccessSpec
from duragent.config import RouteConfig
from duragent.gateways.protocol import Admission, AdmissionRule, Routing, matches_entry

GROUP_CHAT_TYPES = frozenset({"group", "supergroup", "channel"})
DM_CHAT_TYPES = frozenset({"dm", "private"})


def is_group(chat_type: str) -> bool:
    """True for group-like chats (group, supergroup, channel)."""
    return chat_type.lower() in GROUP_CHAT_TYPES


def match_route(routes: Sequence[RouteConfig], gateway: str, routing: Routing) -> str | None:
    """The agent of the first route whose every given condition matches, or None."""
    for route in routes:
        rule = route.match
        if rule.gateway is not None and rule.gateway.lower() != gateway.lower():
            continue
        if rule.chat_type is not None and rule.chat_type.lower() != routing.chat_type.lower():
            continue
        if rule.chat_id is not None and rule.chat_id not in (routing.chat_id, _parent_of(routing)):
            continue  # (a thread or forum topic goes where its channel or group goes)
        if rule.sender_id is not None and rule.sender_id != routing.sender_id:
            continue
        return route.agent
    return None


def _parent_of(routing: Routing) -> str | None:
    """The channel or group a thread (or Telegram forum topic) is in, when the plugin says."""
    parent = (routing.model_extra or {}).get("parent_id")
    return parent if isinstance(parent, str) and parent else None


def routed_agents(routes: Sequence[RouteConfig], gateway: str) -> list[str]:
    """The agents some route may give a message of `gateway` to."""
    names = [r.agent for r in routes if r.match.gateway is None or r.match.gateway.lower() == gateway.lower()]
    return list(dict.fromkeys(names))


def admission_of(gateway: str, specs: Iterable[AccessSpec]) -> Admission:
    """Whose messages on `gateway` any of these agents' `access` rules could let through."""
    dm, groups = AdmissionRule(), AdmissionRule()
    for spec in specs:
        for rule, section in ((dm, spec.dm), (groups, spec.groups)):
            if section.policy == "open":
                rule.open = True
            elif section.policy == "allowlist":
                rule.allowlist = [*rule.allowlist, *(e for e in section.allowlist if e not in rule.allowlist)]
    return Admission(gateway=gateway, dm=dm, groups=groups)


@dataclass(frozen=True)
class AccessDecision:
    """Whether a message may reach the agent, and why not (for the log line)."""

    allowed: bool
    reason: str = ""


def check_access(access: AccessSpec, gateway: str, routing: Routing) -> AccessDecision:
    """Apply the agent's `access` rules to one incoming message."""
    chat_type = routing.chat_type.lower()
    if chat_type in DM_CHAT_TYPES:
        policy, allowlist = access.dm.policy, access.dm.allowlist
        candidates = [routing.sender_id]
        what, section = f"sender {routing.sender_id}", "dm"
    elif chat_type in GROUP_CHAT_TYPES:
        policy, allowlist = access.groups.policy, access.groups.allowlist
        # Both our bare chat ids and the Rust form `<channel>:<chat_id>` are accepted.
        # A thread (Discord thread, Slack thread) is allowed where its parent channel is.
        chats = [routing.chat_id]
        parent = _parent_of(routing)
        if parent is not None:
            chats.append(parent)
        candidates = [
            value for chat in chats for value in (chat, f"{gateway}:{chat}", f"{routing.channel}:{chat}")
        ]
        what, section = f"chat {routing.chat_id}", "groups"
    else:
        # A chat type we cannot place (a plugin's own word for a thread, a DM...) is neither
        # list's to allow: answering it would let anyone past both allowlists.
        known = ", ".join(sorted(DM_CHAT_TYPES | GROUP_CHAT_TYPES))
        return AccessDecision(
            False, f"chat type {routing.chat_type!r} of chat {routing.chat_id} is not one of {known}"
        )
    if policy == "open":
        return AccessDecision(True)
    if policy == "disabled":
        return AccessDecision(False, f"{chat_type} messages are disabled (spec.access.{section}.policy)")
    if any(matches_entry(value, entry) for value in candidates for entry in allowlist):
        return AccessDecision(True)
    return AccessDecision(False, f"{what} is not on spec.access.{section}.allowlist")
