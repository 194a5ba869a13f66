"""Interactive background processes in tmux: a session per process on the data directory's own socket.

tmux owns the process, so it outlives a server restart and is adopted again. The command is
wrapped so its exit code lands in `<handle>.exit` when it ends (the tmux session then closes);
its screen is copied to `<handle>.log` with `pipe-pane`. The environment is built explicitly
(`env -i`), never inherited from whichever process happened to start the tmux server, and read
from a file only the server's user can read, never passed on a command line.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from duragent.errors import DuragentError

#: Run by `env -i bash` in the new session: takes the environment from the file named by $1
#: (removed before the command starts; `rm` found on the PATH just read), then becomes
#: `bash -c $2`. The values never appear on a command line, where `ps` shows them to every user
#: of the machine for as long as it runs.
_FROM_ENV_FILE = '. "$1" || exit 126; rm -f -- "$1"; exec bash -c "$2"'
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TmuxError(DuragentError):
    """tmux is missing or refused a command."""


def tmux_available() -> bool:
    """True when a `tmux` program is on PATH."""
    return shutil.which("tmux") is not None


def socket_name(data_dir: Path) -> str:
    """The tmux socket of one data directory (`tmux -L <name>`), so servers never share sessions."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return f"duragent-{digest}"


class Tmux:
    """tmux commands on one socket."""

    def __init__(self, socket: str):
        self.socket = socket

    async def run(self, *args: str) -> tuple[int, str]:
        """Run `tmux -L socket args...`; returns the exit code and the output (stdout and stderr)."""
        try:
            process = await asyncio.create_subprocess_exec(
                "tmux",
                "-L",
                self.socket,
                "-f",
                "/dev/null",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "TERM": "xterm-256color"},
                start_new_session=True,
            )
        except OSError as exc:
            raise TmuxError(f"cannot run tmux: {exc.strerror or exc}") from None
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode("utf-8", errors="replace")

    async def start(
        self, name: str, command: str, *, cwd: Path, env: Mapping[str, str], log: Path, exit_file: Path
    ) -> int:
        """Start `command` in a new tmux session `name`; returns the pid of its shell."""
        env_file = await asyncio.to_thread(_write_env_file, env)
        shell = ["bash", "--noprofile", "--norc", "-c", _FROM_ENV_FILE, "bash", str(env_file), command]
        inner = shlex.join(["env", "-i", *shell])
        wrapped = f"{inner}; echo $? > {shlex.quote(str(exit_file))}"
        try:
            code, output = await self.run(
                "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "-c", str(cwd), wrapped,
                ";", "pipe-pane", "-t", name, f"cat >> {shlex.quote(str(log))}",
            )  # fmt: skip
        except BaseException:
            env_file.unlink(missing_ok=True)
            raise
        if code != 0:
            env_file.unlink(missing_ok=True)
            raise TmuxError(f"tmux could not start the process: {output.strip()}")
        pid = await self.pane_pid(name)
        if pid is None:
            # It already ended (a command that fails at once): the exit file says how.
            return 0
        return pid

    async def alive(self, name: str) -> bool:
        """True while the tmux session exists (the command has not ended)."""
        code, _ = await self.run("has-session", "-t", f"={name}")
        return code == 0

    async def pane_pid(self, name: str) -> int | None:
        """The pid of the session's shell, or None when it is gone."""
        code, output = await self.run("display-message", "-p", "-t", f"={name}:", "#{pane_pid}")
        text = output.strip()
        return int(text) if code == 0 and text.isdigit() else None

    async def capture(self, name: str, lines: int) -> str:
        """The visible screen and up to `lines` of scrollback."""
        code, output = await self.run("capture-pane", "-p", "-t", f"={name}:", "-S", f"-{lines}")
        if code != 0:
            raise TmuxError(f"cannot capture the screen: {output.strip() or 'the session is gone'}")
        return output

    async def send_keys(self, name: str, keys: str, *, enter: bool) -> None:
        """Type `keys` (literally) into the session, then Enter when asked."""
        code, output = await self.run("send-keys", "-t", f"={name}:", "-l", keys)
        if code != 0:
            raise TmuxError(f"cannot send keys: {output.strip() or 'the session is gone'}")
        if enter:
            await self.press(name, "Enter")

    async def press(self, name: str, key: str) -> None:
        """Press one key by its tmux name (`Enter`, `C-d`)."""
        code, output = await self.run("send-keys", "-t", f"={name}:", key)
        if code != 0:
            raise TmuxError(f"cannot send keys: {output.strip() or 'the session is gone'}")

    async def kill(self, name: str) -> None:
        """Close the session (its processes get SIGHUP); nothing happens when it is already gone."""
        await self.run("kill-session", "-t", f"={name}")

    async def kill_server(self) -> None:
        """Stop this socket's tmux server and every session on it."""
        await self.run("kill-server")


def _write_env_file(env: Mapping[str, str]) -> Path:
    """`env` as `export` lines in a new file only this user may read (names a shell cannot set are
    left out)."""
    fd, name = tempfile.mkstemp(prefix="duragent-env-")
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if _ENV_NAME.fullmatch(k))
    return Path(name)
