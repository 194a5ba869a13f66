"""The C allocator of a long-running server: memory freed by a turn goes back to the system.

glibc's malloc serves a block of 128 KiB or more with a mapping of its own and unmaps it when
it is freed, but after the first such free it raises that threshold to the freed block's size
(up to 32 MiB): later large blocks come from the heap. A session's request bodies and rendered
state grow with every turn, so each turn's large buffers no longer fit the holes the last ones
left, and the heap (and the server's resident size) grows with the conversation. Every thread
that allocates also gets an arena of its own (up to 8 per core), whose free pages stay resident.

`return_freed_memory()` keeps the threshold where it starts and one arena: Python's threads
take turns under the GIL, so they gain little from arenas of their own. A setting the
environment already gives glibc (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
`GLIBC_TUNABLES`) is left as it is. Other C libraries (musl, macOS) are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: mallopt(3) parameters (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: glibc's initial threshold: blocks this large or larger get a mapping of their own.
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 1

_SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    (M_ARENA_MAX, ARENA_MAX, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
)


def return_freed_memory(env: Mapping[str, str] = os.environ) -> list[str]:
    """Set glibc's malloc to give large freed blocks back and use one arena; the settings made."""
    if not _glibc():
        return []
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    made = []
    tunables = env.get("GLIBC_TUNABLES", "")
    for parameter, value, variable, tunable in _SETTINGS:
        if variable in env or tunable in tunables:
            continue
        if mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1:
            made.append(variable)
    return made


def _glibc() -> bool:
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return False  # not glibc: no such configuration string
    return version is not None and version.startswith("glibc ")
