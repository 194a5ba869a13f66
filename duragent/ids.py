"""Identifiers: time-sortable ULIDs with a readable prefix (`s_01J…`, `msg_01J…`), and name checks."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable

from duragent.errors import InvalidName

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_last = [0, 0]
#: Two characters per 10 bits: 13 lookups per id instead of 26 (ids are made for every event).
_CROCKFORD_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
_PAIR_SHIFTS = tuple(range(120, -10, -10))
#: Random bytes drawn from the OS in bulk: `os.urandom` lets go of the GIL for its system call, and
#: the event loop thread then waits for whichever thread took it (a snapshot being written, a
#: commit being prepared) before it can go on; one draw serves 64 ids.
_ENTROPY_DRAW = 640
_entropy = bytearray()


def _forget_inherited_randomness() -> None:
    """In a forked child: neither the parent's undrawn bytes nor its last id's entropy are reused."""
    _entropy.clear()
    _last[0] = 0


os.register_at_fork(after_in_child=_forget_inherited_randomness)


def _random_80_bits() -> int:
    if not _entropy:
        _entropy.extend(os.urandom(_ENTROPY_DRAW))
    drawn = _entropy[-10:]
    del _entropy[-10:]
    return int.from_bytes(drawn, "big")


def ulid() -> str:
    """A 26-character ULID; monotonic within one process even inside the same millisecond."""
    now = time.time_ns() // 1_000_000
    if now == _last[0]:
        _last[1] += 1
        entropy = _last[1]
    else:
        entropy = _random_80_bits() >> 1
        _last[0], _last[1] = now, entropy
    value = (now << 80) | (entropy & ((1 << 80) - 1))
    return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def new_id(prefix: str) -> str:
    """`<prefix>_<ULID>`, e.g. `s_01JD…` for sessions or `msg_01JD…` for messages."""
    return f"{prefix}_{ulid()}"


def check_name(value: str, what: str = "name") -> str:
    """Return `value` if it is a safe single path component (`[A-Za-z0-9_-]{1,64}`), else raise."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value):
        raise InvalidName(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '-' or '_' (no '/', '.' or spaces)"
        )
    return value


def resolve_prefix(text: str, known: Iterable[str], what: str = "session") -> str:
    """The one id in `known` that is `text` or starts with it (`s_01M8VR` for `s_01M8VR…`), like git.

    `text` itself when none does (the lookup that follows says it is not found, in its own words);
    UsageError listing the candidates when several do. InvalidName for text no id could be.
    """
    from duragent.errors import UsageError

    check_name(text, f"{what} id")
    candidates = sorted({item for item in known if item.startswith(text)})
    if text in candidates:
        return text
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return text
    shown = ", ".join(candidates[:5]) + (", …" if len(candidates) > 5 else "")
    raise UsageError(f"{text!r} is the start of {len(candidates)} {what} ids ({shown}); give more of it")


def resolve_session(text: str, sessions: Iterable[tuple[str, str | None]]) -> str:
    """The session `text` names: its whole id, its name (`session fork --name`), or a unique start
    of its id, in that order. UsageError when a name is shared or a prefix is ambiguous."""
    from duragent.errors import UsageError

    listed = list(sessions)
    ids = [session_id for session_id, _ in listed]
    if text in ids:
        return text
    named = sorted(session_id for session_id, name in listed if name == text)
    if len(named) == 1:
        return named[0]
    if named:
        raise UsageError(f"{len(named)} sessions are named {text!r} ({', '.join(named)}); give the id")
    return resolve_prefix(text, ids)
