"""`<data_dir>/run/serve.json`: how terminal clients find the workspace's running server.

A server writes the file once it listens (so its appearance means "ready"), and removes it when
it stops. It holds the pid, the URL, whether a terminal client started the server, and a
fingerprint of the environment the server resolved providers with: a keyed hash of the values,
never the values, so a client can tell that its shell now has another API key without sending
or storing the key anywhere.

Only the standard library is used here: the fast paths of `send`/`chat` read this file before
anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

RUN_FOLDER = "run"
RUN_FILENAME = "serve.json"
#: Environment variables every provider may read besides those agents name (`api_key_env`).
PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENROUTER_API_KEY",
    "OLLAMA_HOST",
)


class EnvFingerprint(NamedTuple):
    """A keyed hash of some environment variables' values (absent ones count as absent), whole
    and one per variable."""

    names: tuple[str, ...]
    salt: str
    digest: str
    #: Per name (in `names`' order): the keyed hash of its value, None where it was not set;
    #: empty in a run file written before they were kept.
    each: tuple[str | None, ...] = ()

    @classmethod
    def of(cls, names: Iterable[str], env: Mapping[str, str], salt: str | None = None) -> EnvFingerprint:
        """The fingerprint of `names` in `env`, with a new random salt unless one is given."""
        ordered = tuple(sorted(set(names)))
        if salt is None:
            import secrets  # only the server makes a fingerprint; clients compare with one

            salt = secrets.token_hex(16)
        each = tuple(_value_digest(name, env.get(name), salt) for name in ordered)
        return cls(ordered, salt, _digest(ordered, env, salt), each)

    def matches(self, env: Mapping[str, str]) -> bool:
        """Whether `env` holds the same values for the same names."""
        return hmac.compare_digest(self.digest, _digest(self.names, env, self.salt))

    def changed_in(self, env: Mapping[str, str]) -> tuple[str, ...]:
        """The names `env` sets to another value than this fingerprint's (set where it was not,
        or to something else). One `env` leaves unset is no change: a shell without a key is no
        reason to restart a server that has it, which would then lose it."""
        if len(self.each) != len(self.names):  # (an older run file: only the whole is known)
            return () if self.matches(env) else self.names
        changed = []
        for name, kept in zip(self.names, self.each, strict=True):
            value = env.get(name)
            if not value:
                continue
            if kept is None or not hmac.compare_digest(kept, str(_value_digest(name, value, self.salt))):
                changed.append(name)
        return tuple(changed)

    def unset_in(self, env: Mapping[str, str]) -> tuple[str, ...]:
        """The names this fingerprint had a value for that `env` does not set (a server started
        from `env` would not have them); none known from an older run file."""
        if len(self.each) != len(self.names):
            return ()
        return tuple(
            name for name, kept in zip(self.names, self.each, strict=True) if kept and not env.get(name)
        )

    def as_json(self) -> dict[str, Any]:
        """The record kept in serve.json."""
        return {"names": list(self.names), "salt": self.salt, "digest": self.digest, "each": list(self.each)}


def _digest(names: tuple[str, ...], env: Mapping[str, str], salt: str) -> str:
    mac = hmac.new(salt.encode(), digestmod=hashlib.sha256)
    for name in names:
        value = env.get(name)
        mac.update(name.encode() + (b"\x01" + value.encode() if value else b"\x00") + b"\x02")
    return mac.hexdigest()


def _value_digest(name: str, value: str | None, salt: str) -> str | None:
    """The keyed hash of one variable's value; None when it is unset or empty."""
    if not value:
        return None
    return hmac.new(salt.encode(), name.encode() + b"\x01" + value.encode(), hashlib.sha256).hexdigest()


class RunInfo(NamedTuple):
    """What a running `duragent serve` wrote to `<data_dir>/run/serve.json`."""

    pid: int
    url: str
    host: str = ""
    port: int = 0
    started_at: str = ""
    workspace_hash: str = ""
    #: True when a terminal client started the server (it may restart it when idle).
    auto_started: bool = False
    env: EnvFingerprint | None = None
    #: sha256 of duragent.yaml as the server read it ("" without one).
    config_digest: str = ""


def config_digest(path: Path | None) -> str:
    """sha256 of a configuration file's bytes ("" when there is none)."""
    if path is None:
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def run_file(data_path: Path) -> Path:
    """`<data_dir>/run/serve.json`."""
    return data_path / RUN_FOLDER / RUN_FILENAME


def read_run_info(data_path: Path) -> RunInfo | None:
    """The run file's contents, or None when there is none, it is unreadable, or its process is gone."""
    try:
        data: Any = json.loads(run_file(data_path).read_text(encoding="utf-8"))
        env = data.get("env")
        info = RunInfo(
            pid=int(data["pid"]),
            url=str(data["url"]),
            host=str(data.get("host", "")),
            port=int(data.get("port", 0)),
            started_at=str(data.get("started_at", "")),
            workspace_hash=str(data.get("workspace_hash", "")),
            auto_started=bool(data.get("auto_started", False)),
            config_digest=str(data.get("config_digest", "")),
            env=(
                EnvFingerprint(
                    tuple(env["names"]),
                    str(env["salt"]),
                    str(env["digest"]),
                    tuple(None if d is None else str(d) for d in env.get("each") or ()),
                )
                if isinstance(env, dict)
                else None
            ),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return info if pid_alive(info.pid) else None


def write_run_info(data_path: Path, record: Mapping[str, Any]) -> Path:
    """Write the run file atomically (readers never see half of it); returns its path.

    A write the disk refuses (full, read-only) raises StorageUnavailable naming the run file and
    what to do, and leaves no temp file behind.
    """
    path = run_file(data_path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = (json.dumps(dict(record), indent=2) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        from duragent.stores.base import storage_error  # only a server writes the run file

        raise storage_error(error, path) from error
    return path


#: The port the workspace's last auto-started server listened on (`run/port`): the next one asks
#: for it first, so a dashboard tab left open reconnects when a client starts the server again.
LAST_PORT_FILENAME = "port"


def last_auto_port(data_path: Path) -> int | None:
    """The port a server a terminal client started last listened on, if one did."""
    try:
        port = int((data_path / RUN_FOLDER / LAST_PORT_FILENAME).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def remember_auto_port(data_path: Path, port: int) -> None:
    """Keep `port` for the next auto-started server (best effort: it is only a preference)."""
    path = data_path / RUN_FOLDER / LAST_PORT_FILENAME
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{port}\n", encoding="ascii")


def remove_run_info(data_path: Path, pid: int) -> None:
    """Remove the run file if it is still this process's (a newer server may have replaced it)."""
    path = run_file(data_path)
    try:
        if int(json.loads(path.read_text(encoding="utf-8")).get("pid", 0)) != pid:
            return
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
