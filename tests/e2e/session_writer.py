"""A real process that writes sessions, for the crash and lock tests (run as a script, not imported).

    session_writer.py append-loop ROOT SESSION FSYNC   append forever, print each acknowledged seq
    session_writer.py fork-server ROOT SESSION FSYNC   per "spawn ACKS_FILE" line on stdin, fork an
        append-loop child whose stdout is ACKS_FILE; print its pid, then "exit" once it has died
    session_writer.py hold-session ROOT SESSION        append one event, print "held", wait for stdin EOF
    session_writer.py hold-datadir DATA_DIR OWNER      take the data-dir lock, print "held", wait for EOF

The fork server exists because importing asyncio costs ~0.3 s on small VMs: forking a warm
process keeps 50 kill/restart rounds within a few seconds while each writer is still a real,
separately killed process.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from duragent.ids import new_id
from duragent.stores.base import SessionEvent
from duragent.stores.filesystem.locks import DataDirLock
from duragent.stores.filesystem.sessions import FilesystemSessionStore, FsyncMode


def _event(seq: int, rng: random.Random) -> SessionEvent:
    # Payload sizes vary so a kill can land in the middle of lines of any length.
    content = "x" * rng.choice([10, 200, 3000, 20000])
    return SessionEvent(
        seq, new_id("evt"), datetime.now(UTC), "user_message", {"content": content, "turn": seq}
    )


async def append_loop(root: Path, session_id: str, fsync: FsyncMode) -> None:
    """Append batches of 1-3 events forever; print every seq of a batch once append has returned."""
    store = FilesystemSessionStore(root, fsync=fsync)
    rng = random.Random()
    seq = await store.last_seq(session_id) + 1
    while True:
        batch = [_event(seq + offset, rng) for offset in range(rng.randint(1, 3))]
        await store.append(session_id, batch)
        print("\n".join(str(event.seq) for event in batch), flush=True)
        seq += len(batch)


def fork_server(root: Path, session_id: str, fsync: FsyncMode) -> None:
    """Fork a fresh append-loop process for every `spawn ACKS_FILE` line read from stdin."""
    for line in sys.stdin:
        command, _, acks_file = line.strip().partition(" ")
        if command != "spawn":
            continue
        pid = os.fork()
        if pid == 0:
            acks = os.open(acks_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(acks, 1)
            sys.stdout = os.fdopen(1, "w")
            try:
                asyncio.run(append_loop(root, session_id, fsync))
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("exit", flush=True)


async def hold_session(root: Path, session_id: str) -> None:
    """Become the session's writer, say so, and keep the lock until stdin closes."""
    store = FilesystemSessionStore(root, fsync="never")
    seq = await store.last_seq(session_id) + 1
    await store.append(session_id, _event(seq, random.Random()))
    print("held", flush=True)
    sys.stdin.read()
    await store.close()


def hold_datadir(data_dir: Path, owner: str) -> None:
    """Take the data-directory lock, say so, and keep it until stdin closes."""
    with DataDirLock(data_dir, owner):
        print("held", flush=True)
        sys.stdin.read()


def main(argv: list[str]) -> None:
    """Dispatch on the first argument (see the module docstring)."""
    mode, *args = argv
    if mode == "append-loop":
        asyncio.run(append_loop(Path(args[0]), args[1], cast(FsyncMode, args[2])))
    elif mode == "fork-server":
        fork_server(Path(args[0]), args[1], cast(FsyncMode, args[2]))
    elif mode == "hold-session":
        asyncio.run(hold_session(Path(args[0]), args[1]))
    elif mode == "hold-datadir":
        hold_datadir(Path(args[0]), args[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
