"""What one terminal remembers between runs: its last session per agent, and what it has seen.

Kept in `<data_dir>/clients/<client-id>.json` (git-ignored). The client id is
`$DURAGENT_CLIENT_ID`, or a hash of the terminal's device name and the user, so two terminals
each resume their own conversation and `attach` replays only what *this* terminal missed.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

CLIENT_ID_ENV = "DURAGENT_CLIENT_ID"


def client_id() -> str:
    """`$DURAGENT_CLIENT_ID`, else a stable hash of this terminal's tty name and the user."""
    explicit = os.environ.get(CLIENT_ID_ENV, "").strip()
    if explicit:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in explicit)[:80]
    tty = "notty"
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            tty = os.ttyname(stream.fileno())
            break
        except (OSError, ValueError, AttributeError):
            continue
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return "tty-" + hashlib.sha256(f"{tty}\0{user}".encode()).hexdigest()[:16]


def position_seq(position: str | None) -> int:
    """The stored seq of a position (`"12.3"` -> 12; None -> 0)."""
    if not position:
        return 0
    try:
        return int(position.split(".", 1)[0])
    except ValueError:
        return 0


def position_key(position: str) -> tuple[int, int]:
    """A position as a sortable pair (`"12.3"` -> (12, 3))."""
    seq, _, delta = position.partition(".")
    try:
        return int(seq), int(delta or 0)
    except ValueError:
        return 0, 0


class ClientState:
    """Last session per agent and last seen event position per session, for one terminal.

    (A plain class, not a dataclass: this module is imported on the way to `chat`'s prompt, where
    building a dataclass costs ~3M instructions, ~1 ms.)
    """

    def __init__(
        self,
        path: Path,
        last_session: dict[str, str] | None = None,
        seen: dict[str, str] | None = None,
        last_attached: str | None = None,
    ):
        self.path = path
        self.last_session: dict[str, str] = {} if last_session is None else last_session
        self.seen: dict[str, str] = {} if seen is None else seen
        self.last_attached = last_attached

    def __repr__(self) -> str:
        return f"ClientState({self.path!r}, last_attached={self.last_attached!r})"

    @classmethod
    def load(cls, data_path: Path, identity: str | None = None) -> ClientState:
        """This terminal's state in the data directory (empty when it has none yet)."""
        path = data_path / "clients" / f"{identity or client_id()}.json"
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict):
            return cls(path)
        return cls(
            path,
            last_session={str(k): str(v) for k, v in dict(data.get("last_session") or {}).items()},
            seen={str(k): str(v) for k, v in dict(data.get("seen") or {}).items()},
            last_attached=data.get("last_attached"),
        )

    def save(self) -> None:
        """Write the state (atomically: a crash never leaves half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"last_session": self.last_session, "seen": self.seen, "last_attached": self.last_attached}
        # One temporary file per process: the terminals and scripts of one client (every cron
        # `send` is the same one) save whenever they like, and must not rename each other's.
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.path)

    def attached(self, agent: str, session_id: str) -> None:
        """Remember `session_id` as this terminal's session with `agent`."""
        self.last_session[agent] = session_id
        self.last_attached = session_id

    def saw(self, session_id: str, position: str | None) -> None:
        """Record that this terminal has shown everything up to `position` (never moves backwards)."""
        if not position:
            return
        current = self.seen.get(session_id)
        if current is None or position_key(position) > position_key(current):
            self.seen[session_id] = position

    def unseen(self, session_id: str, last_seq: int) -> int:
        """Stored events of the session this terminal has not shown yet."""
        return max(0, last_seq - position_seq(self.seen.get(session_id)))

    def forget(self, session_id: str) -> None:
        """Drop a session that no longer exists."""
        self.seen.pop(session_id, None)
        self.last_session = {a: s for a, s in self.last_session.items() if s != session_id}
        if self.last_attached == session_id:
            self.last_attached = None
