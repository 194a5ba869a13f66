"""The C allocator of a long-running server: memory freed by a turn is reused, then given back.

glibc's malloc serves a block of 128 KiB or more with a mapping of its own and unmaps it when
it is freed, but after the first such free it raises that threshold to the freed block's size
(up to 32 MiB): later large blocks come from the heap. A session's request bodies and rendered
state grow with every turn, so each turn's large buffers no longer fit the holes the last ones
left, and the heap (and the server's resident size) grows with the conversation. Every thread
that allocates also gets an arena of its own (up to 8 per core), whose free pages stay resident.

`return_freed_memory()` fixes the threshold at 1 MiB, keeps up to 2 MiB free at the heap's top
and uses one arena: Python's threads take turns under the GIL, so they gain little from arenas
of their own. A turn's request body is the largest block it makes (~120 KB at turn 1,000 of a
session, ~360 KB at turn 3,000; a 128k-token context ~500 KB): below the threshold it comes
from the heap, and the pages the last turn's body freed are still there for the next one. With
glibc's 128 KiB for both, each such body was a fresh mapping, or was trimmed off the heap when
freed, and every page of it was faulted in again on the next turn (180 page faults a turn at
turn 3,000, ~2 us each on a virtual machine; the resident size 0.9 MiB smaller). Blocks of
1 MiB or more (a long session's state.yaml) still get a mapping of their own, given back when
freed.

A setting the environment already gives glibc (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) is left as it is. Other C libraries (musl, macOS)
are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Blocks this large or larger get a mapping of their own (unmapped when freed)...
MMAP_THRESHOLD = 1024 * 1024
#: ...and free memory at the top of the heap beyond this much goes back to the system.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
ARENA_MAX = 1

_SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
    (M_ARENA_MAX, ARENA_MAX, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
)


def return_freed_memory(env: Mapping[str, str] = os.environ) -> list[str]:
    """Set glibc's malloc to reuse a turn's freed blocks, give larger ones back and use one arena;
    the settings made."""
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
