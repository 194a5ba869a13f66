"""The data directory is its owner's alone: every conversation, memory, log and the git history
of them lie below it, which other users of the machine cannot read over the API without tokens.

Every code path that may create it (`duragent init`, a server's first start, the data repository
opened for the first time) creates it here, mode 0700. An existing one keeps the mode its owner
gave it (a group may share it on purpose); `duragent doctor` says when others can read it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: The mode a new data directory gets.
PRIVATE_MODE = 0o700
#: The mode bits that let users other than the owner into it.
SHARED_BITS = 0o077


def make_data_dir(path: Path) -> bool:
    """Create the data directory `path` (0700; missing parents as the umask has them) unless it
    exists; whether it was created here."""
    if path.is_dir():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_MODE)
    except FileExistsError:
        return False  # made meanwhile (another process starting): as its maker left it
    # (mkdir's mode passes through the umask: a umask that takes the owner's bits away is undone)
    os.chmod(path, PRIVATE_MODE)
    return True


def shared_bits(path: Path) -> int:
    """The group and other permission bits of `path` (0: private to its owner)."""
    return stat.S_IMODE(path.stat().st_mode) & SHARED_BITS
