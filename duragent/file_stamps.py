"""Whether a file or folder changed since it was read: one `os.stat`, compared with the last one.

What a turn reads from files people edit (policy.yaml, memory, skill and tool folders) is kept
between turns with the stamp of each file it came from: (mode, inode, size, mtime_ns, ctime_ns). A file
replaced (an atomic write, an editor's save-by-rename, `git checkout`) gets a new inode; one
rewritten in place a new mtime and ctime; a folder gains or loses an entry: new mtime and ctime.

A timestamp only moves once per filesystem tick (a few ms; 1-2 s on some filesystems), so a
same-size rewrite within the tick of an earlier read would keep its stamp. A stamp younger than
`SETTLE_NS` is therefore never trusted (git's "racily clean" rule): what was read from a file
changed in the last few seconds is read again next time.
"""

from __future__ import annotations

import os
import time
from typing import Final

#: (st_mode, st_ino, st_size, st_mtime_ns, st_ctime_ns)
Stamp = tuple[int, int, int, int, int]
#: The stamp of a path that does not exist (creating it changes the stamp whatever the tick).
ABSENT: Final[Stamp] = (0, 0, -1, 0, 0)
#: How old a change must be before its stamp is trusted to show the next one (> any tick).
SETTLE_NS: Final = 3_000_000_000


def stamp(path: str) -> Stamp:
    """The stamp of `path` (following symlinks), or ABSENT."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT
    return (status.st_mode, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def settled(stamps: tuple[Stamp, ...]) -> bool:
    """Whether what was read after taking `stamps` may be kept: no change in the last SETTLE_NS."""
    recent = time.time_ns() - SETTLE_NS
    return all(max(s[3], s[4]) < recent for s in stamps)
