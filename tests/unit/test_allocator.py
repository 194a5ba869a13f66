"""`duragent serve` keeps glibc's malloc reusing a turn's freed blocks and returning larger ones,
in one arena."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from duragent.server.allocator import return_freed_memory

PROBE = """
import ctypes, resource, sys, threading
from duragent.server.allocator import return_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
if sys.argv[1] == "tuned":
    return_freed_memory({})
# A 4 MiB block is mapped; freeing it raises glibc's threshold unless it is fixed.
libc.free(libc.malloc(4 << 20))
mapped = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - mapped)
libc.free(block)
# A turn's request body: written, freed, made again the next turn (other blocks in between).
faults = 0
for turn in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    body = libc.malloc(512 << 10)
    ctypes.memset(body, 1, 512 << 10)
    kept = libc.malloc(2000)
    libc.free(body)
    if turn:
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
together = threading.Barrier(4)

def allocate():
    block = libc.malloc(1000)
    together.wait()  # all four hold a block at once: none can take over another's arena
    libc.free(block)

threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
"""


def probe(mode: str) -> tuple[int, int, int]:
    """(large blocks mapped after a larger one was freed, page faults of nine turns' 512 KiB
    bodies, arenas after 4 threads allocated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    mapped, faults = (int(word) for word in done.stdout.split())
    return mapped, faults, done.stderr.count("Arena ")


needs_glibc = pytest.mark.skipif(
    not (
        os.confstr_names.get("CS_GNU_LIBC_VERSION")
        and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    ),
    reason="glibc's malloc only",
)


@needs_glibc
def test_large_blocks_freed_are_given_back_and_threads_share_one_arena() -> None:
    mapped, _, arenas = probe("default")
    assert (mapped, arenas) == (0, 5)  # glibc's own: heap reuse, an arena per thread
    mapped, _, arenas = probe("tuned")
    assert (mapped, arenas) == (1, 1)


@needs_glibc
def test_a_turns_body_reuses_the_pages_the_last_one_freed() -> None:
    _, faults, _ = probe("tuned")
    assert faults < 10  # glibc's 128 KiB threshold: ~128 page faults for every body


@needs_glibc
def test_settings_given_in_the_environment_are_kept() -> None:
    made = return_freed_memory(
        {
            "MALLOC_ARENA_MAX": "4",
            "MALLOC_TRIM_THRESHOLD_": "131072",
            "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536",
        }
    )
    assert made == []
