"""Binding the server's port, and a clear message (who holds it, what to change) when it is taken."""

from __future__ import annotations

import errno

from duragent.errors import DuragentError


class PortTaken(DuragentError):
    """The port asked for is in use by another process."""

    exit_code = 2

    def __init__(self, host: str, port: int, holder: str | None, setting: str):
        who = holder or "another program"
        super().__init__(f"port {port} on {host} is already in use by {who}; {setting}, or stop that program")
        self.host = host
        self.port = port
        self.holder = holder


def is_address_in_use(error: OSError) -> bool:
    """Whether a bind failed because the address is taken."""
    return error.errno == errno.EADDRINUSE


def port_holder(port: int) -> str | None:
    """`pid 123 (python3 -m http.server)`: the process listening on TCP `port`, when it can be seen."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for connection in connections:
        if connection.status != psutil.CONN_LISTEN or not connection.laddr:
            continue
        if connection.laddr.port != port or connection.pid is None:
            continue
        try:
            process = psutil.Process(connection.pid)
            command = " ".join(" ".join(process.cmdline()).split()) or process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return f"pid {connection.pid}"
        if len(command) > 80:
            command = command[:79] + "…"
        return f"pid {connection.pid} ({command})"
    return None
