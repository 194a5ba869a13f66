"""Children that end with the server even when it is killed with SIGKILL (Linux).

A `kill -9` of `duragent serve` runs none of its shutdown: a gateway plugin or an MCP server
that does not exit when its stdin ends would run on, an orphan nobody stops. `tied_to_this_process`
turns a command line into one that asks Linux to SIGKILL the child when this process dies
(`PR_SET_PDEATHSIG`) and then becomes the command.

Why a small exec step of this Python rather than a `preexec_fn`: a `preexec_fn` runs in the child
between fork and exec, which is unsafe in a process with threads (the committer's, asyncio's
workers; Python's subprocess docs warn so), and the SDKs that start MCP servers (`mcp`'s
`stdio_client`, over anyio's `open_process`) take none anyway. The request survives `exec`,
so it holds for the command itself; what the command starts in turn is not covered (a process
group cannot be asked to die with a parent). Elsewhere the command runs as given: a child sees
its stdin end when the server dies, and should exit.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

#: Run by the server's own Python in the child, before the command. SIGKILL, not SIGTERM: a
#: child may ignore SIGTERM, and after the server is gone nobody is left to follow up. The
#: signal comes when the *thread* that started the child ends; the server starts its children
#: from its event loop's thread, which lives as long as the server.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)\n"  # 1: PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)  # the server died before prctl: nobody would ever stop us\n"
    "os.execv(sys.argv[2], sys.argv[3:])\n"
)


def tied_to_this_process(executable: str, argv: Sequence[str]) -> tuple[str, list[str]]:
    """The program and arguments that run `executable` (a path, already looked up) with `argv`
    (its own name first, as `ps` shows it), killed when this process dies, on Linux; elsewhere
    just `executable` and the rest of `argv`."""
    if sys.platform != "linux":
        return executable, list(argv[1:])
    return sys.executable, ["-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), executable, *argv]


def executable(command: str, search_path: str, cwd: Path | None = None) -> str:
    """The file `command` runs, looked up here as exec would in a child started in `cwd` with PATH
    `search_path`: a name in its folders (a relative folder, `node_modules/.bin`, from `cwd`; None:
    this process's folder), a path as it is. FileNotFoundError naming it when there is none: the
    exec step below could only say so once the child runs."""
    if cwd is not None:
        search_path = os.pathsep.join(str(cwd / folder) for folder in search_path.split(os.pathsep))
    found = shutil.which(command, path=search_path)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "no such executable file", command)
    return found
